"""``clipsearch demo`` / ``make demo``: model + dataset + feed + serve, offline, one command.

Without ``--manifest`` the demo dataset (procedurally drawn scenes in eight categories, see
``clipsearch.datasets.scenes``) is generated into ``<data_dir>/demo/dataset``; without
``--model`` a small CLIP is trained from scratch on it into ``<data_dir>/demo/model``
(``clipsearch demo-model``, a few minutes on 2 cores). Both are reused on the next run.
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


def demo_dataset(root: Path) -> Path:
    """The demo dataset (procedural scenes, several captions each), generated on first use."""
    from clipsearch.datasets.scenes import make_demo_dataset

    out = root / "dataset"
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        log.info("generating the demo dataset into %s (first run only)", out)
        make_demo_dataset(out)
    return manifest


def demo_model(root: Path) -> Path:
    """The demo CLIP, trained from scratch on the demo dataset on first use (a few minutes)."""
    from clipsearch.training.demo_model import build_demo_model

    out = root / "model"
    log.info("demo model: %s", out)
    return build_demo_model(out, dataset_dir=root / "dataset")


def run_demo(opts: DemoOptions) -> int:
    base = Settings()
    root = base.data_dir / "demo"
    root.mkdir(parents=True, exist_ok=True)
    manifest = Path(opts.manifest) if opts.manifest else demo_dataset(root)
    model = opts.model or str(demo_model(root))
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
