"""Peak RSS of the gateway under the hostile image set of issue 16.

Starts ``clipsearch serve``'s app (in-process encoder: a tiny CLIP built here unless
``--model`` is given) in a child process, sends ``--concurrent`` simultaneous ``POST /search``
requests of ``--parts`` base64 PNGs of ``--size`` x ``--size`` pixels each, and one small
image search while they run, then reads the child's peak RSS (VmHWM) from /proc.

    .venv/bin/python bench/hostile_memory.py                      # default limits
    .venv/bin/python bench/hostile_memory.py --max-request-pixels 1000000000
        # a budget that admits all ten parts: shows the decode path itself stays bounded

Target: peak RSS <= 1.5 GB. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from clipsearch.machine import cpu_flags, process_kib  # noqa: E402


def proc_kib(pid: int, field: str) -> int:
    value = process_kib(pid, field)
    if value is None:
        raise KeyError(field)
    return value


def hostile_png(size: int) -> bytes:
    """A size x size RGB PNG that compresses well (small on the wire, huge decoded)."""
    img = Image.new("RGB", (size, size), (40, 120, 200))
    img.paste((200, 60, 40), (size // 4, size // 4, size // 2, size // 2))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def serve(args: argparse.Namespace) -> None:
    """The child: the gateway with an in-process encoder on 127.0.0.1:port."""
    import uvicorn

    from clipsearch.settings import Settings
    from services.api.app import create_app

    settings = Settings(data_dir=Path(args.data_dir), model=args.model, runtime="torch",
                        embedding_dim=512, encoder_url="",
                        max_request_pixels=args.max_request_pixels)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning")


async def attack(url: str, parts: list[str], concurrent: int) -> tuple[list[int], float, int]:
    body = {"parts": [{"image": p} for p in parts], "mode": "vector", "limit": 5}
    small = base64.b64encode(small_png()).decode()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        big = [asyncio.create_task(client.post("/search", json=body)) for _ in range(concurrent)]
        await asyncio.sleep(0.5)  # let the large decodes start before the small request
        t0 = time.perf_counter()
        r_small = await client.post("/search", json={"parts": [{"image": small}],
                                                      "mode": "vector", "limit": 5})
        small_s = time.perf_counter() - t0
        statuses = [(await t).status_code for t in big]
    return statuses, small_s, r_small.status_code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model dir (default: build a tiny CLIP)")
    p.add_argument("--parts", type=int, default=10)
    p.add_argument("--size", type=int, default=8000)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--max-request-pixels", type=int, default=None,
                   help="CLIPSEARCH_MAX_REQUEST_PIXELS for the server (default: the setting's)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
        return 0

    from clipsearch.loopback import free_port, wait_until_up
    from clipsearch.settings import Settings

    budget = args.max_request_pixels or Settings().max_request_pixels
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from clipsearch.models.tiny import build_tiny_clip

            model = str(build_tiny_clip(Path(tmp) / "tiny-clip"))
        png = hostile_png(args.size)
        parts = [base64.b64encode(png).decode()] * args.parts
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(port), "--data-dir",
             str(Path(tmp) / "data"), "--model", model, "--max-request-pixels", str(budget)],
            cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(f"{url}/health", 600, proc=child)  # shared CPUs: slow start
            before = proc_kib(child.pid, "VmRSS")
            statuses, small_s, small_status = asyncio.run(attack(url, parts, args.concurrent))
            peak = proc_kib(child.pid, "VmHWM")
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=30)
    body_mb = len(parts[0]) * args.parts / 1e6
    print(f"cpu flags: {cpu_flags()}; cores: {os.cpu_count()}")
    print(f"hostile set: {args.concurrent} concurrent POST /search x {args.parts} base64 PNG "
          f"parts of {args.size}x{args.size} ({len(png) / 1e3:.0f} kB each, "
          f"{body_mb:.1f} MB of base64 per request); max_request_pixels={budget}")
    print(f"big requests answered: {statuses}; small image search meanwhile: "
          f"{small_status} in {small_s:.2f} s")
    print(f"gateway RSS before: {before / 1024:.0f} MiB; peak (VmHWM): {peak / 1024:.0f} MiB "
          f"(target <= 1536 MiB)")
    return 0 if peak <= 1536 * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
