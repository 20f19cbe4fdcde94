"""Query words read from a generated set's records, so tests never hard-code the generator's
vocabulary (``clipsearch.datasets.sample`` / ``scenes`` may change their templates freely)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Protocol


class Captioned(Protocol):
    @property
    def captions(self) -> list[str]: ...

    @property
    def category(self) -> str: ...

    @property
    def split(self) -> str: ...


def _tokens(caption: str) -> list[str]:
    return caption.lower().split()


def category_words(records: Sequence[Captioned], n: int = 3) -> dict[str, str]:
    """``n`` categories, each with a caption word that only that category's captions use (in at
    least two of its records, so it is the category's word, not a passing mention).

    The word is safe to check by substring (``word in caption`` holds exactly when it is one of
    the caption's words) and shares its first four letters with no other word of the set, so an
    English stemmer cannot merge it with another (``fields``/``field``, ``woods``/``woodland``).
    Among the candidates of a category the most frequent wins, then the alphabetically first.
    """
    vocabulary = {t for r in records for c in r.captions for t in _tokens(c)}
    categories_of: dict[str, set[str]] = defaultdict(set)
    counts: Counter[str] = Counter()  # records whose captions use the word
    for r in records:
        words = {t for c in r.captions for t in _tokens(c)}
        counts.update(words)
        for t in words:
            categories_of[t].add(r.category)

    def usable(word: str) -> bool:
        if len(word) < 4 or not word.isalpha() or counts[word] < 2:
            return False
        if any(t != word and t[:4] == word[:4] for t in vocabulary):
            return False
        return all((word in c.lower()) == (word in _tokens(c)) for r in records
                   for c in r.captions)

    found: dict[str, str] = {}
    for category in sorted({r.category for r in records}):
        candidates = sorted((w for w, cats in categories_of.items() if cats == {category}
                             and usable(w)), key=lambda w: (-counts[w], w))
        if candidates:
            found[category] = candidates[0]
        if len(found) == n:
            return found
    raise AssertionError(f"only {len(found)} categories of the generated set have a caption "
                         f"word of their own ({found}); {n} are needed")


def split_word(records: Sequence[Captioned], split: str) -> str:
    """The longest caption word (then alphabetically first) of the first ``split`` record."""
    record = next((r for r in records if r.split == split), None)
    assert record is not None, f"the generated set has no {split!r} record"
    words = {t for c in record.captions for t in _tokens(c) if t.isalpha()}
    return min(words, key=lambda w: (-len(w), w))


def a_caption(records: Sequence[Captioned], index: int = 0) -> str:
    """A whole caption of a record, as a multi-word query."""
    return max(records[index].captions, key=len)
