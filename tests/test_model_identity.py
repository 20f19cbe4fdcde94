"""Embedding space identity: fingerprints of what a model computes, cached; declared spaces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel

from clipsearch.models.identity import (
    CACHE_FILE,
    InvalidSpaceDeclaration,
    fingerprint_model,
    model_identity,
    space_of,
    write_declaration,
)
from clipsearch.models.model import ClipEncoder


@pytest.fixture(scope="module")
def tiny(tiny_clip_dir: Path) -> CLIPModel:
    return CLIPModel.from_pretrained(tiny_clip_dir).eval()


def test_fingerprint_ignores_name_format_and_logit_scale(tiny: CLIPModel,
                                                         tmp_path: Path) -> None:
    fp = fingerprint_model(tiny)
    assert len(fp) == 64 and fp == fingerprint_model(tiny)
    tiny.save_pretrained(tmp_path / "copy", safe_serialization=False)  # pickle, another folder
    assert fingerprint_model(CLIPModel.from_pretrained(tmp_path / "copy")) == fp
    other = CLIPModel.from_pretrained(tmp_path / "copy")
    with torch.no_grad():
        other.logit_scale.add_(1.0)
    assert fingerprint_model(other) == fp
    with torch.no_grad():
        other.visual_projection.weight[0, 0] += 1e-6  # one weight, barely
    assert fingerprint_model(other) != fp


def test_identity_is_cached_next_to_the_model_and_invalidated(tiny: CLIPModel,
                                                              tiny_clip_dir: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, folder)
    first = model_identity(tiny, folder=folder)
    assert first.space == first.fingerprint and first.declared_by is None
    cache = json.loads((folder / CACHE_FILE).read_text())
    assert cache["fingerprint"] == first.fingerprint
    cache["fingerprint"] = "f" * 64  # a cached value is trusted while the files are unchanged
    (folder / CACHE_FILE).write_text(json.dumps(cache))
    assert model_identity(tiny, folder=folder).fingerprint == "f" * 64
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # new mtime: recomputed
    assert model_identity(tiny, folder=folder).fingerprint == first.fingerprint


def test_declared_space_and_bad_declarations(tiny: CLIPModel, tmp_path: Path) -> None:
    write_declaration(tmp_path, "a" * 64, teacher="openai/clip-vit-base-patch32")
    ident = model_identity(tiny, folder=tmp_path)
    assert ident.space == "a" * 64 and ident.fingerprint != ident.space
    assert ident.declared_by == "openai/clip-vit-base-patch32"
    (tmp_path / "clipsearch_space.json").write_text('{"embeds_into": "not-a-fingerprint"}')
    with pytest.raises(InvalidSpaceDeclaration, match="embeds_into"):
        model_identity(tiny, folder=tmp_path)


def test_encoder_exposes_its_space(tiny_clip_dir: Path) -> None:
    enc = ClipEncoder.load(str(tiny_clip_dir), runtime="torch")
    assert enc.identity is not None and space_of(enc) == enc.identity.space
    assert space_of(object()) is None
