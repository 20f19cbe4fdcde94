"""Which caption words match the query: character spans, analysed like the index.

The embedded engine's full-text index (``clipsearch.index.embedded.fts_config``: tantivy's
``simple`` tokenizer, lower-casing, ASCII folding, tokens over 40 characters dropped, the
English Snowball stemmer, stop words kept) decides what a lexical match is; this module
applies the same analysis to the query and to every caption, so a highlighted word is a word
that contributed to BM25. The Snowball stemmer is the ``snowballstemmer`` package (the same
algorithm tantivy's ``rust-stemmers`` implements). Vespa stems with its own English stemmer,
so highlights are computed here, from the hit's captions, for both engines alike: they
cannot disagree between engines (they can, for a few words, disagree with what Vespa
matched; see ``clipsearch.index.vespa.package``, "Linguistics").

Spans are ``[start, end)`` offsets into the caption string (Python ``str`` indices, i.e.
code points), in caption order, never overlapping.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import snowballstemmer
from pydantic import BaseModel, Field

MAX_TOKEN_CHARS = 40  # tantivy's RemoveLongFilter in LanceDB's FTS
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)  # runs of alphanumerics (tantivy "simple")


class CaptionHighlight(BaseModel):
    caption: int = Field(description="Index into the hit's captions")
    spans: list[tuple[int, int]] = Field(description="[start, end) character offsets")


class Analyzer:
    """Lower-case, ASCII-fold, stem (English Snowball); one per thread of use."""

    def __init__(self) -> None:
        self._stemmer = snowballstemmer.stemmer("english")

    @staticmethod
    def fold(word: str) -> str:
        decomposed = unicodedata.normalize("NFKD", word.lower())
        folded = "".join(c for c in decomposed if not unicodedata.combining(c))
        return folded

    @lru_cache(maxsize=4096)  # noqa: B019 - bounded, per analyzer instance
    def term(self, word: str) -> str | None:
        if len(word) > MAX_TOKEN_CHARS:
            return None
        return str(self._stemmer.stemWord(self.fold(word)))

    def tokens(self, text: str) -> list[tuple[str, int, int]]:
        """(term, start, end) of every indexed token of ``text``."""
        out = []
        for m in _TOKEN.finditer(text):
            term = self.term(m.group(0))
            if term:
                out.append((term, m.start(), m.end()))
        return out

    def terms(self, text: str) -> set[str]:
        return {t for t, _, _ in self.tokens(text)}


def highlight(analyzer: Analyzer, query: str | None, captions: list[str]
              ) -> list[CaptionHighlight]:
    """The spans of every caption word whose term is a query term (captions without a match
    are left out)."""
    wanted = analyzer.terms(query or "")
    if not wanted:
        return []
    out = []
    for i, caption in enumerate(captions):
        spans = [(s, e) for t, s, e in analyzer.tokens(caption) if t in wanted]
        if spans:
            out.append(CaptionHighlight(caption=i, spans=spans))
    return out
