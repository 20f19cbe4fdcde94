"""The feeder's own encoder starts lazily and loads the image tower only: a feed with nothing
to encode starts no worker and loads no model; the workers' runtimes hold no text tower; the
opt-in int8 candidate of ``auto`` is held to the same cosine bar, checked on images only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.datasets.sample import make_sample_dataset
from clipsearch.models.model import ClipEncoder
from clipsearch.models.runtimes.select import MIN_COSINE, RuntimeOptions, select_runtime
from clipsearch.settings import Settings
from feeder import encode_pool
from feeder.commands import FeedRequest, run_feed_async
from tests.feeder_fixtures import MAX_PIXELS


async def test_feeding_an_indexed_source_starts_no_worker_and_loads_no_model(
        tmp_path: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_sample_dataset(tmp_path / "src", n_per_category=1, dataset="lz")
    n = len(ds.records)
    fp32 = Settings(data_dir=tmp_path / "data", model=str(tiny_clip_dir), runtime="torch")
    first = await run_feed_async(fp32, FeedRequest(
        source=ds.manifest, progress=False, workers=0, dead_letter=tmp_path / "d1.jsonl"))
    assert (first.indexed, first.runtime) == (n, "torch")
    settings = fp32.model_copy(update={"runtime": "auto"})

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded although nothing needs encoding")

    monkeypatch.setattr(encode_pool.PoolEncoder, "start", forbidden)
    monkeypatch.setattr(encode_pool, "resolve_in_subprocess", forbidden)
    monkeypatch.setattr(encode_pool.ClipEncoder, "from_settings", forbidden)
    again = await run_feed_async(settings, FeedRequest(  # the in-process path is the same
        source=ds.manifest, progress=False, workers=2, dead_letter=tmp_path / "d2.jsonl"))
    assert (again.indexed, again.encoded, again.already_indexed) == (0, 0, n)
    assert again.runtime == "auto (not loaded: nothing to encode)"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir (and so one ONNX export of the tiny model) for the tests below."""
    return tmp_path_factory.mktemp("lazy-vision")


def test_workers_load_the_image_tower_only(data_dir: Path, tiny_clip_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, model=str(tiny_clip_dir),
                        max_image_pixels=MAX_PIXELS)
    full = ClipEncoder.load(str(tiny_clip_dir), runtime="torch", threads=1)
    pixels = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
    want = full.embed_pixels(pixels).vectors
    for runtime in ("torch", "onnx"):
        spec = encode_pool.WorkerSpec(settings.model_dump_json(), runtime=runtime, threads=1)
        worker = encode_pool._worker_model(spec)  # what a worker process loads
        assert worker.runtime.name == runtime
        assert worker.runtime.towers == "vision"  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match="vision tower only"):
            worker.embed_texts(["a text tower was loaded after all"])
        got = worker.embed_pixels(pixels).vectors
        assert float(np.min(np.sum(got * want, axis=1))) > 0.99999
    assert full.runtime.towers == "both"  # type: ignore[attr-defined]
    if hasattr(worker.runtime, "_text"):  # ONNX: no text session was created at all
        assert worker.runtime._text is None
    encode_pool._worker_model.cache_clear()


def test_auto_int8_is_opt_in_and_held_to_the_cosine_bar_on_images(
        data_dir: Path, tiny_clip_dir: Path) -> None:
    from clipsearch.models.loading import load_clip_parts
    from clipsearch.models.model import onnx_cache_dir

    parts = load_clip_parts(str(tiny_clip_dir))
    cache = onnx_cache_dir(Settings(data_dir=data_dir))
    base = RuntimeOptions(model_id=str(tiny_clip_dir), cache_dir=cache, towers="vision")
    _, trials = select_runtime(parts.model, base, rounds=1)
    assert "onnx-int8" not in {t.name for t in trials}  # not without the opt-in
    opted = RuntimeOptions(**{**base.__dict__, "allow_int8": True})
    chosen, trials = select_runtime(parts.model, opted, rounds=1)
    int8 = next(t for t in trials if t.name == "onnx-int8")
    usable = {t.name for t in trials if t.min_cosine >= MIN_COSINE}
    assert chosen.name in usable
    if int8.min_cosine < MIN_COSINE:
        assert chosen.name != "onnx-int8"
    assert chosen.towers == "vision"  # type: ignore[attr-defined]
    assert Settings(auto_int8=True).auto_int8 and not Settings().auto_int8


def test_feed_auto_checks_its_candidates_on_the_feeds_own_images(
        tmp_path: Path, tiny_clip_dir: Path) -> None:
    """The feeder's auto tries onnx-int8 only with real images to check it on (the feed's
    first images), and every candidate must clear the bar on them; a candidate that is far
    off on real images is refused even if the synthetic batch passed."""
    from clipsearch.models.loading import load_clip_parts

    ds = make_sample_dataset(tmp_path / "src", n_per_category=1, dataset="ck")
    paths = [str(ds.root / r.file) for r in ds.records] + [str(tmp_path / "missing.jpg")]
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_clip_dir),
                        max_image_pixels=MAX_PIXELS)
    parts = load_clip_parts(str(tiny_clip_dir))
    pixels = encode_pool.check_pixels(paths, settings, parts.spec)
    assert pixels.shape == (min(len(ds.records), encode_pool.CHECK_IMAGES), 3, 224, 224)

    _, why = encode_pool.resolve_runtime(settings.model_dump_json(), 1, paths)
    assert "also checked on up to 8 of the feed's first images" in why and "onnx-int8" in why
    _, plain = encode_pool.resolve_runtime(settings.model_dump_json(), 1)
    assert "onnx-int8" not in plain  # no images to check it on: fp32 runtimes only
    off = settings.model_copy(update={"feed_auto_int8": False}).model_dump_json()
    assert "onnx-int8" not in encode_pool.resolve_runtime(off, 1, paths)[1]

    base = RuntimeOptions(model_id=str(tiny_clip_dir), towers="vision",
                          cache_dir=tmp_path / "data" / "cache" / "onnx", allow_int8=True,
                          check_pixels=np.full_like(pixels, 1e3))  # far off the synthetic batch
    chosen, trials = select_runtime(parts.model, base, rounds=1)
    assert chosen.name in {t.name for t in trials if t.min_cosine >= MIN_COSINE}
