"""``clipsearch demo`` / ``make demo``: model + dataset + feed + serve, offline, one command.

Without ``--model`` the demo model is built into ``<data_dir>/demo/model`` (the trained demo CLIP
when the training extra is available, else a tiny random-weight CLIP with the real tokenizer);
without ``--manifest`` the demo dataset is generated into ``<data_dir>/demo/dataset``. Both are
reused on the next run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import BaseModel

from clipsearch.settings import Backend, Settings

log = logging.getLogger(__name__)


class DemoOptions(BaseModel):
    model: str | None = None
    manifest: str | None = None
    port: int | None = None
    serve: bool = True
    fresh: bool = False


def demo_model(root: Path) -> Path:
    """The demo model directory, built on first use."""
    out = root / "model"
    if (out / "config.json").is_file():
        return out
    try:
        from clipsearch.training.demo_model import build_demo_model
    except ImportError:  # pragma: no cover - training extra missing
        from services.encoder.tiny import build_tiny_clip

        log.info("building a tiny random-weight CLIP into %s", out)
        return build_tiny_clip(out)
    log.info("building the demo model into %s (first run only)", out)
    return build_demo_model(out, dataset_dir=root / "train-data")


def demo_dataset(root: Path) -> Path:
    from feeder.sample import make_sample_dataset

    out = root / "dataset"
    manifest = out / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    log.info("generating the demo dataset into %s", out)
    return make_sample_dataset(out, dataset="demo").manifest


def run_demo(opts: DemoOptions) -> int:
    base = Settings()
    root = base.data_dir / "demo"
    root.mkdir(parents=True, exist_ok=True)
    model = opts.model or str(demo_model(root))
    manifest = Path(opts.manifest) if opts.manifest else demo_dataset(root)
    index_root = root / "data"
    if opts.fresh and index_root.exists():
        shutil.rmtree(index_root)
    settings = base.model_copy(update={
        "backend": Backend.embedded, "model": model, "data_dir": index_root, "encoder_url": "",
        **({"api_port": opts.port} if opts.port else {}),
    })

    from feeder.commands import FeedRequest, run_feed

    report = run_feed(settings, FeedRequest(source=manifest, format="generic"))
    print(report.summary())
    if not opts.serve:
        return 0 if report.indexed + report.already_indexed > 0 else 1
    url = f"http://{settings.host}:{settings.api_port}"
    print(f"\nclipsearch demo is serving {url}/  (API docs: {url}/docs)")
    print(f"try:  curl '{url}/search?q=runway&mode=hybrid&limit=5'\n")
    from services.api.server import serve

    serve(settings)
    return 0
