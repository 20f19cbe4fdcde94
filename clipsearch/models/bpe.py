"""The real CLIP BPE vocabulary, read offline, turned into a transformers ``CLIPTokenizer``.

OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` ships inside the open-clip-torch wheel, which the
Makefile downloads (never installs). The vocabulary is rebuilt exactly as CLIP builds it: 256
byte symbols, the same with ``</w>``, one token per merge, then the two special tokens (49408).
"""

from __future__ import annotations

import gzip
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BPE_ENV = "CLIPSEARCH_CLIP_BPE"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
WHEEL_GLOB = "open_clip_torch-*.whl"
DOWNLOAD_HINT = "pip download --no-deps open-clip-torch==3.3.0 -d .cache/wheels"
N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
VOCAB_SIZE = 49408


class BpeNotFound(FileNotFoundError):
    """The CLIP BPE vocabulary is not on this machine."""


def _search_roots() -> list[Path]:
    here = Path(__file__).resolve().parents[2]  # the repository root
    roots = [Path.cwd(), here]
    return list(dict.fromkeys(r.resolve() for r in roots))


def find_clip_bpe(extra_roots: Iterable[Path] = ()) -> Path:
    """Where the BPE file is: ``$CLIPSEARCH_CLIP_BPE`` (a .txt.gz or a wheel), else
    ``.cache/wheels/open_clip_torch-*.whl`` under the cwd or the repository root."""
    env = os.environ.get(BPE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise BpeNotFound(f"{BPE_ENV}={env} does not name a file")
        return path
    for root in [*extra_roots, *_search_roots()]:
        wheels = sorted((root / ".cache" / "wheels").glob(WHEEL_GLOB))
        if wheels:
            return wheels[-1]
    raise BpeNotFound(
        "the CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found: run "
        f"`{DOWNLOAD_HINT}` in the repository root, or set {BPE_ENV} to the .txt.gz or wheel"
    )


def read_bpe_lines(path: Path) -> list[str]:
    """The decompressed lines of the BPE file, from a .txt.gz or straight out of a wheel."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                raw = zf.read(BPE_MEMBER)
        else:
            raw = path.read_bytes()
        return gzip.decompress(raw).decode("utf-8").split("\n")
    except (KeyError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise BpeNotFound(f"{path} holds no readable {BPE_MEMBER}: {exc}") from exc


def clip_vocab_and_merges(
    lines: list[str],
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's token -> id map and merge list, built as the original CLIP tokenizer does."""
    pairs = [line.split() for line in lines[1 : N_MERGES + 1]]
    merges = [(p[0], p[1]) for p in pairs if len(p) == 2]
    if len(merges) != N_MERGES:
        raise BpeNotFound(f"BPE file has {len(merges)} merges, expected {N_MERGES}")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += [a + b for a, b in merges]
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_clip_tokenizer(bpe_path: Path | None = None, *, max_length: int = 77) -> CLIPTokenizer:
    """A real CLIP tokenizer (same ids as ``openai/clip-vit-base-patch32``), made offline."""
    vocab, merges = clip_vocab_and_merges(read_bpe_lines(bpe_path or find_clip_bpe()))
    # The tokenizers backend takes merges as pairs; transformers' annotation is narrower.
    return CLIPTokenizer(vocab=vocab, merges=merges,  # type: ignore[arg-type]
                         model_max_length=max_length)
