"""Fault injection (issue 16), hostile images: huge images decoded straight to about the
model's input size, a per-request pixel budget, the decompression-bomb message quoting the
configured limit, and large decodes bounded by a pixel budget without starving small ones.
(``bench/hostile_memory.py`` measures the gateway's peak RSS under the full hostile set.)"""

from __future__ import annotations

import asyncio
import io
import struct
import subprocess
import sys
import threading
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from clipsearch.errors import ImageTooLarge
from clipsearch.models.decode_lanes import DecodeLanes, PixelBudget
from clipsearch.models.images import decode_image, request_pixels
from clipsearch.models.preprocess import PreprocessSpec, preprocess, resize_size

SPEC = PreprocessSpec()
TARGET = partial(resize_size, spec=SPEC)
NO_LIMIT = {"max_bytes": 10**9, "max_pixels": 10**9}
REPO = Path(__file__).resolve().parents[1]


def photo(width: int, height: int, fmt: str, *, exif: Image.Exif | None = None) -> bytes:
    """A smooth image with shapes (compresses like a photo, unlike noise), drawn small and
    scaled up (fast even at 8000 px)."""
    w, h = max(8, width // 8), max(8, height // 8)
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    arr = np.stack([255 * x * np.ones_like(y), 255 * y * np.ones_like(x),
                    128 + 100 * np.sin(12 * x + 8 * y)], -1).astype(np.uint8)
    small = Image.fromarray(arr)
    draw = ImageDraw.Draw(small)
    for i in range(12):
        draw.ellipse((i * w // 15, i * h // 18, i * w // 15 + w // 10, i * h // 18 + h // 8),
                     fill=(i * 20, 200 - i * 12, 90))
    img = small.resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    kw: dict[str, object] = {"quality": 90} if fmt == "JPEG" else {"compress_level": 1}
    if exif is not None:
        kw["exif"] = exif
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("size", "fmt"), [((640, 480), "JPEG"), ((1000, 900), "PNG")])
def test_ordinary_images_decode_exactly_as_before(size: tuple[int, int], fmt: str) -> None:
    data = photo(*size, fmt)
    plain = decode_image(data, **NO_LIMIT)
    fitted = decode_image(data, **NO_LIMIT, target_for=TARGET)
    assert fitted.size == plain.size and np.array_equal(np.asarray(fitted), np.asarray(plain))


@pytest.mark.parametrize(("size", "fmt"), [((2000, 1400), "JPEG"), ((2000, 1400), "PNG"),
                                            ((4800, 3200), "JPEG")])
def test_large_images_decode_small_and_preprocess_the_same(size: tuple[int, int],
                                                           fmt: str) -> None:
    data = photo(*size, fmt)
    plain = decode_image(data, **NO_LIMIT)
    fitted = decode_image(data, **NO_LIMIT, target_for=TARGET)
    tw, th = TARGET(*size)
    assert fitted.width * fitted.height * 4 <= plain.width * plain.height
    assert min(fitted.size) >= 2 * min(tw, th)
    diff = np.abs(preprocess(fitted, SPEC) - preprocess(plain, SPEC))
    assert diff.max() < 0.05 and diff.mean() < 0.002  # normalised units (~2/255 at most)


def test_large_jpeg_keeps_its_exif_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90 degrees clockwise
    data = photo(2000, 1400, "JPEG", exif=exif)
    plain = decode_image(data, **NO_LIMIT)
    fitted = decode_image(data, **NO_LIMIT, target_for=TARGET)
    assert plain.size == (1400, 2000) and fitted.height > fitted.width
    assert fitted.width < plain.width
    diff = np.abs(preprocess(fitted, SPEC) - preprocess(plain, SPEC))
    assert diff.mean() < 0.002


PEAK = """
import sys
from functools import partial
from clipsearch.models.images import decode_image
from clipsearch.models.preprocess import PreprocessSpec, resize_size

def hwm():
    status = open("/proc/self/status").read().splitlines()
    return next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:"))

data = open(sys.argv[1], "rb").read()
fit = partial(resize_size, spec=PreprocessSpec()) if sys.argv[2] == "fit" else None
before = hwm()
img = decode_image(data, max_bytes=10**9, max_pixels=10**9, target_for=fit)
print(hwm() - before, img.size)
"""


def test_a_huge_jpeg_never_exists_at_full_size(tmp_path: Path) -> None:
    """Peak RSS of decoding a 6000x4000 JPEG (72 MB as RGB) in a fresh process."""
    path = tmp_path / "huge.jpg"
    path.write_bytes(photo(6000, 4000, "JPEG"))
    growth = {}
    for how in ("fit", "full"):
        out = subprocess.run([sys.executable, "-c", PEAK, str(path), how], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=True)
        growth[how] = int(out.stdout.split()[0]) / 1024  # MiB
    assert growth["full"] > 60, growth  # the plain decode holds the full bitmap ...
    assert growth["fit"] < 20, growth  # ... the fitted one about 1/16 of it


def test_bomb_413_quotes_the_configured_limit() -> None:
    bomb = png_header_only(20_000, 20_000)  # past PIL's own bomb guard
    for check in (partial(decode_image, bomb, max_bytes=10**6, max_pixels=1_000_000),
                  partial(request_pixels, [bomb], max_bytes=10**6, max_pixels=1_000_000,
                          budget=10**9)):
        with pytest.raises(ImageTooLarge) as info:
            check()
        assert "1000000" in info.value.message
        assert str(Image.MAX_IMAGE_PIXELS) not in info.value.message
        assert str(2 * Image.MAX_IMAGE_PIXELS) not in info.value.message


def test_request_pixel_budget_is_checked_from_headers() -> None:
    parts = [png_header_only(8000, 8000)] * 10  # 640 megapixels, 10 tiny files
    with pytest.raises(ImageTooLarge) as info:
        request_pixels(parts, max_bytes=10**6, max_pixels=64_000_000, budget=256_000_000)
    assert "256000000" in info.value.message and "640000000" in info.value.message
    assert request_pixels(parts[:4], max_bytes=10**6, max_pixels=64_000_000,
                          budget=256_000_000) == [64_000_000] * 4
    with pytest.raises(ImageTooLarge, match="image 2"):
        request_pixels([parts[0], parts[0], png_header_only(9000, 9000)], max_bytes=10**6,
                       max_pixels=64_000_000, budget=10**9)


async def test_pixel_budget_bounds_large_decodes_in_arrival_order() -> None:
    budget = PixelBudget(100)
    order: list[str] = []
    peak = 0

    async def job(name: str, units: int, release: asyncio.Event) -> None:
        nonlocal peak
        async with budget.hold(units):
            order.append(name)
            peak = max(peak, budget.in_use)
            await release.wait()

    events = {n: asyncio.Event() for n in "abcd"}
    tasks = [asyncio.create_task(job("a", 60, events["a"])),
             asyncio.create_task(job("b", 60, events["b"])),  # waits: 120 > 100
             asyncio.create_task(job("c", 10, events["c"])),  # waits behind b (FIFO)
             asyncio.create_task(job("d", 500, events["d"]))]  # larger than all: runs alone
    await asyncio.sleep(0)
    assert order == ["a"]
    events["a"].set()
    while len(order) < 3:
        await asyncio.sleep(0)
    assert order == ["a", "b", "c"]
    events["b"].set()
    events["c"].set()
    events["d"].set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order[-1] == "d" and peak <= 100 and budget.in_use == 0


async def test_small_images_do_not_wait_for_large_decodes() -> None:
    lanes = DecodeLanes(small_pixels=1000, pixel_budget=10_000, small_threads=1,
                        large_threads=1)
    gate = threading.Event()
    try:
        large = [asyncio.create_task(lanes.run(9_000, partial(gate.wait, 30)))
                 for _ in range(3)]
        small = await asyncio.wait_for(lanes.run(500, lambda: "small done"), 5)
        assert small == "small done"  # while three large decodes wait or run
        assert not all(t.done() for t in large)
        gate.set()
        assert all(await asyncio.wait_for(asyncio.gather(*large), 30))
    finally:
        gate.set()
        lanes.shutdown()
