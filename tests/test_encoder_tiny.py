"""The tiny CLIP and the offline CLIP tokenizer load through the users' code path."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from clipsearch.models import bpe
from clipsearch.models.bpe import BpeNotFound, build_clip_tokenizer, find_clip_bpe
from clipsearch.models.tiny import build_tiny_clip, is_complete

BOS, EOS = 49406, 49407


def test_tokenizes_like_clip(tiny_clip_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_clip_dir)
    ids = tok("a photo of a cat")["input_ids"]
    # The ids of openai/clip-vit-base-patch32 for this sentence.
    assert ids == [BOS, 320, 1125, 539, 320, 2368, EOS]
    assert tok("A PHOTO Of a Cat")["input_ids"] == ids  # lower-cased
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok.pad_token_id == EOS
    long = tok("airport " * 200, truncation=True)["input_ids"]
    assert len(long) == 77 and long[0] == BOS and long[-1] == EOS


def test_loads_like_a_hub_checkpoint(tiny_clip_dir: Path) -> None:
    model = CLIPModel.from_pretrained(tiny_clip_dir)
    assert model.config.projection_dim == 512
    assert getattr(model.config.text_config, "eos_token_id", None) == EOS
    proc = AutoImageProcessor.from_pretrained(tiny_clip_dir)
    assert proc.crop_size["height"] == 224
    assert is_complete(tiny_clip_dir)


def test_build_is_cached_and_deterministic(tmp_path: Path, tiny_clip_dir: Path) -> None:
    out = tmp_path / "m"
    assert build_tiny_clip(out, seed=0) == out
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    build_tiny_clip(out, seed=0)
    assert weights.stat().st_mtime_ns == stamp  # second call is a no-op
    assert weights.read_bytes() == (tiny_clip_dir / "model.safetensors").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_empty_target_dir_is_filled(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    build_tiny_clip(out, projection_dim=64, image_size=64)
    assert CLIPModel.from_pretrained(out).config.projection_dim == 64


def test_bpe_from_env_gz_or_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = find_clip_bpe()
    with zipfile.ZipFile(wheel) as zf:
        gz = tmp_path / "bpe.txt.gz"
        gz.write_bytes(zf.read(bpe.BPE_MEMBER))
    monkeypatch.setenv(bpe.BPE_ENV, str(gz))
    assert find_clip_bpe() == gz
    assert build_clip_tokenizer()("a cat")["input_ids"] == [BOS, 320, 2368, EOS]
    monkeypatch.setenv(bpe.BPE_ENV, str(wheel))
    assert build_clip_tokenizer()("a cat")["input_ids"] == [BOS, 320, 2368, EOS]


def test_missing_bpe_names_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bpe.BPE_ENV, raising=False)
    monkeypatch.setattr(bpe, "_search_roots", lambda: [tmp_path])
    with pytest.raises(BpeNotFound, match="pip download --no-deps open-clip-torch"):
        find_clip_bpe()
    monkeypatch.setenv(bpe.BPE_ENV, str(tmp_path / "nope.gz"))
    with pytest.raises(BpeNotFound, match="does not name a file"):
        find_clip_bpe()


def test_broken_bpe_file_is_reported(tmp_path: Path) -> None:
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress(b"#version\na b\n"))
    with pytest.raises(BpeNotFound, match="merges"):
        build_clip_tokenizer(short)
    junk = tmp_path / "junk.txt.gz"
    junk.write_bytes(b"not gzip")
    with pytest.raises(BpeNotFound, match="no readable"):
        build_clip_tokenizer(junk)
