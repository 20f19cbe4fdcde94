"""Runtimes agree with the torch fp32 reference; auto picks one within cos >= 0.999."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipsearch.models.model import ClipEncoder
from clipsearch.models.runtimes.select import MIN_COSINE, select_runtime
from clipsearch.models.text_cache import TextCache
from tests import encoder_images as zoo

TEXTS = ["a photo of a cat", "x", "an aerial view of a large airport with many planes parked",
         " ".join(f"w{i}" for i in range(120))]  # the last one is truncated at 77 tokens
LIMITS = {"max_bytes": 1 << 20, "max_pixels": 10**7}


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir), runtime="torch", text_cache_size=0)


def _images() -> list[bytes]:
    return [zoo.png(64, 40, seed=1), zoo.jpeg(100, 120, seed=2), zoo.png(224, 224, seed=3)]


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def test_onnx_matches_torch_and_is_cached(tiny_clip_dir: Path, reference: ClipEncoder,
                                          onnx_cache: Path) -> None:
    onnx = ClipEncoder.load(str(tiny_clip_dir), runtime="onnx", cache_dir=onnx_cache)
    assert onnx.runtime.name == "onnx" and onnx.runtime.dtype == "float32"
    for batch in (TEXTS, TEXTS[:1], TEXTS[1:3]):  # several batch sizes and lengths
        assert _min_cos(onnx.embed_texts(batch).vectors,
                        reference.embed_texts(batch).vectors) > 0.99999
    assert _min_cos(onnx.embed_images(_images(), **LIMITS).vectors,
                    reference.embed_images(_images(), **LIMITS).vectors) > 0.99999
    files = sorted(onnx_cache.rglob("*.onnx"))
    assert [f.name for f in files] == ["text.onnx", "vision.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]
    ClipEncoder.load(str(tiny_clip_dir), runtime="onnx", cache_dir=onnx_cache)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not re-exported


def test_onnx_int8_is_opt_in_and_close(tiny_clip_dir: Path, reference: ClipEncoder,
                                       onnx_cache: Path) -> None:
    int8 = ClipEncoder.load(str(tiny_clip_dir), runtime="onnx-int8", cache_dir=onnx_cache)
    assert int8.runtime.name == "onnx-int8" and int8.runtime.dtype == "int8"
    vec = int8.embed_texts(TEXTS).vectors
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    # Random tiny weights quantise badly; real checks of int8 need real weights (bench).
    assert _min_cos(vec, reference.embed_texts(TEXTS).vectors) > 0.9
    # Matrix products are int8; the patch-embedding Conv stays fp32 (ConvInteger is slow).
    import onnx

    vision = next(onnx_cache.rglob("vision.int8.onnx"))
    ops = {node.op_type for node in onnx.load(str(vision)).graph.node}
    assert "Conv" in ops and "ConvInteger" not in ops
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def test_torch_bf16_close_to_fp32(tiny_clip_dir: Path, reference: ClipEncoder) -> None:
    bf16 = ClipEncoder.load(str(tiny_clip_dir), runtime="torch-bf16")
    assert bf16.runtime.name == "torch-bf16" and bf16.runtime.dtype == "bfloat16"
    assert _min_cos(bf16.embed_texts(TEXTS).vectors, reference.embed_texts(TEXTS).vectors) > 0.99
    assert bf16.embed_texts(TEXTS).vectors.dtype == np.float32
    # the reference model was not cast by building a bf16 copy
    model = reference.runtime.model  # type: ignore[attr-defined]
    assert next(model.parameters()).dtype == torch.float32


def test_auto_picks_a_runtime_within_tolerance(tiny_clip_dir: Path, reference: ClipEncoder,
                                               onnx_cache: Path) -> None:
    auto = ClipEncoder.load(str(tiny_clip_dir), runtime="auto", cache_dir=onnx_cache)
    assert auto.runtime.name in ("torch", "torch-bf16", "onnx")
    assert _min_cos(auto.embed_texts(TEXTS).vectors,
                    reference.embed_texts(TEXTS).vectors) >= MIN_COSINE


def test_auto_skips_broken_and_inaccurate_candidates(tiny_clip_dir: Path,
                                                     onnx_cache: Path) -> None:
    from clipsearch.models.loading import load_clip_parts
    from clipsearch.models.runtimes.select import RuntimeOptions

    parts = load_clip_parts(str(tiny_clip_dir))
    opts = RuntimeOptions(model_id=str(tiny_clip_dir), cache_dir=onnx_cache)
    chosen, trials = select_runtime(parts.model, opts, ["torch", "torch-fp16", "onnx-int8"])
    names = {t.name for t in trials}
    assert "torch-fp16" not in names  # needs CUDA: skipped, not fatal
    int8 = next(t for t in trials if t.name == "onnx-int8")
    if int8.min_cosine < MIN_COSINE:
        assert chosen.name == "torch"


def test_bad_runtime_names(tiny_clip_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        ClipEncoder.load(str(tiny_clip_dir), runtime="tensorrt")
    with pytest.raises(ValueError, match="CUDA"):
        ClipEncoder.load(str(tiny_clip_dir), runtime="torch-fp16")


def test_text_cache_lru() -> None:
    cache = TextCache(2)
    a, b, c = (np.full(3, v, dtype=np.float32) for v in (1, 2, 3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    a[:] = 9  # the cache keeps its own copy
    hit = cache.get("a")
    assert hit is not None and hit[0] == 1 and not hit.flags.writeable
    assert cache.hits == 3 and cache.misses == 1
    off = TextCache(0)
    off.put("a", a)
    assert off.get("a") is None


def test_encoder_uses_text_cache(tiny_clip_dir: Path) -> None:
    enc = ClipEncoder.load(str(tiny_clip_dir), text_cache_size=8)
    first = enc.embed_texts(["river", "lake", "river"]).vectors
    assert np.array_equal(first[0], first[2])
    assert enc.text_cache.hits == 0 and len(enc.text_cache) == 2
    again = enc.embed_texts(["lake", "river"]).vectors
    assert enc.text_cache.hits == 2
    assert np.array_equal(again, first[[1, 0]])
    again[:] = 0  # callers own their arrays
    assert np.linalg.norm(enc.embed_texts(["lake"]).vectors) == pytest.approx(1.0)
