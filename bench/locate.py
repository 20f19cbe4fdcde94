"""``POST /locate`` benchmark: latency at 256 and 1024 px, and how often the box is right.

Runs the gateway in-process (ASGI, no network) with a local demo model. Latency is the whole
request (multipart upload, decode, crops, encode, scores) and its stages; the baseline is one
whole-image embedding of the same picture (what a search by image costs), so the ratio shows
what the patch grid costs. Quality: composites of demo scenes (a 96-px tile of one category on
another, ``clipsearch.datasets.composites``): share of images where the best box is on the tile.
The gateway has its real (empty, temporary) embedded index: ``/locate`` reads only the upload.

    .venv/bin/python bench/locate.py --model /tmp/eval-demo-model   # a built demo model
    .venv/bin/python bench/locate.py --build-demo data/demo-model    # build it first (~3 min)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from clipsearch.datasets.composites import composite
from clipsearch.datasets.scenes import CATEGORY_NAMES
from clipsearch.models.local import LocalEmbedder
from clipsearch.models.model import ClipEncoder
from clipsearch.models.patches import box_iou
from clipsearch.settings import Backend, Settings
from services.api.app import create_app


def _png(size: int) -> bytes:
    scene = composite("airport", "forest", size=size, tile=size * 3 // 8,
                      at=(size // 2, size // 4))
    if size == 256:
        return scene.png
    img = Image.open(io.BytesIO(scene.png))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _latency(c: TestClient, emb: LocalEmbedder, size: int, reps: int, scales: str) -> None:
    data = _png(size)
    totals, stages = [], []
    for _ in range(reps):
        t = time.perf_counter()
        r = c.post("/locate", files={"image": ("x", data, "image/jpeg")},
                   data={"text": "runway", "scales": scales})
        totals.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        stages.append(r.json()["timings_ms"])
    base = []
    for _ in range(reps):
        t = time.perf_counter()
        asyncio.run(emb.embed_images([data]))
        base.append((time.perf_counter() - t) * 1000)
    med = statistics.median(totals)
    p90 = sorted(totals)[math.ceil(0.9 * len(totals)) - 1]
    st = {k: statistics.median(s[k] for s in stages) for k in ("decode", "encode", "score")}
    print(f"{size:>5} px  scales {scales:<6} patches {r.json()['patches']:>3}  "
          f"request median {med:7.1f} ms  p90 {p90:7.1f} ms  (decode+crop {st['decode']:.1f}, "
          f"encode {st['encode']:.1f}, score {st['score']:.1f})  whole-image embed "
          f"{statistics.median(base):.1f} ms  ratio {med / statistics.median(base):.1f}x")


def _quality(c: TestClient, scales: str) -> None:
    hits, n = 0, 0
    for i, cat in enumerate(CATEGORY_NAMES):
        for at in [(16, 16), (144, 80), (40, 150)]:
            s = composite(cat, CATEGORY_NAMES[(i + 3) % len(CATEGORY_NAMES)], at=at)
            b = c.post("/locate", files={"image": ("s.png", s.png, "image/png")},
                       data={"text": cat, "scales": scales}).json()["best"]
            got = (b["x0"], b["y0"], b["x1"], b["y1"])
            cx, cy = (s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2
            hits += box_iou(got, s.box) >= 0.25 or (got[0] <= cx < got[2]
                                                    and got[1] <= cy < got[3])
            n += 1
    print(f"scales {scales:<6} best box on the object: {hits}/{n} = {hits / n:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a built demo model (or any CLIP folder)")
    ap.add_argument("--build-demo", type=Path, help="build the demo model here first")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--runtime", default="torch",
                    help="encoder runtime (torch = fp32 reference; auto|onnx-int8|torch-bf16...)")
    args = ap.parse_args()
    model = args.model
    if model is None:
        if args.build_demo is None:
            ap.error("give --model or --build-demo")
        from clipsearch.training.demo_model import build_demo_model
        model = build_demo_model(args.build_demo / "model", dataset_dir=args.build_demo / "data")
    data_dir = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data_dir, model=str(model), runtime=args.runtime,
                        backend=Backend.embedded)
    emb = LocalEmbedder(ClipEncoder.load(str(model), runtime=args.runtime, threads=1,
                                         cache_dir=data_dir / "onnx"), settings)
    app = create_app(settings, embedder=emb)
    print(f"model {model} (runtime {emb.encoder.runtime.name}, 1 thread)")
    with TestClient(app) as c:
        for size in (256, 1024):
            for scales in ("2,3,4", "2,3"):
                _latency(c, emb, size, args.reps, scales)
        for scales in ("2,3,4", "2,3"):
            _quality(c, scales)


if __name__ == "__main__":
    main()
