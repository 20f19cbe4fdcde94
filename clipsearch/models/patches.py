"""Find a feature inside an image: an overlapping patch grid at a few scales, and its scores.

The geometry and the scoring are pure (numpy + PIL) so they can be tested without a model;
``clipsearch.models.patch_encoding`` turns the patches into embeddings with a real encoder.

Grid: for each ``scale`` s the window is a square of side ``min(W, H) / s`` pixels, moved with
a stride of about half a window (so neighbouring windows overlap by about half): the starts
are spread evenly from the image's first to its last pixel, so every pixel is covered. A
256x256 image with scales (2, 3, 4) gives 3x3 + 5x5 + 7x7 = 83 patches. Each patch is
resized to the model's input size on its own, so a small window shows its content at full
model resolution.

Scores: the cosine of each patch embedding with the text embedding, and a softmax over the
patches of each scale (``temperature`` times cosine, CLIP's logit scale is 100). The best box
is the patch with the highest cosine over all scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from clipsearch.errors import InvalidRequest

DEFAULT_SCALES = (2, 3, 4)
MAX_SCALE = 8
MIN_WINDOW_PX = 8
MAX_PATCHES = 256
HEATMAP_CELLS = 64  # the heatmap's long side, in cells


@dataclass(frozen=True)
class ScaleGrid:
    """The windows of one scale: left edges ``xs`` and top edges ``ys`` (row-major order)."""

    scale: int
    window: int
    stride: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.ys)

    @property
    def cols(self) -> int:
        return len(self.xs)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) per window, x1/y1 exclusive, row by row."""
        w = self.window
        return [(x, y, x + w, y + w) for y in self.ys for x in self.xs]


def _positions(length: int, window: int, stride: int) -> tuple[int, ...]:
    """Window starts from 0 to ``length - window``, evenly spread, about ``stride`` apart."""
    last = length - window
    steps = round(last / stride)
    if steps == 0:
        return (0,) if last == 0 else (0, last)
    return tuple(round(i * last / steps) for i in range(steps + 1))


def plan_grid(width: int, height: int, scales: Sequence[int] = DEFAULT_SCALES, *,
              max_patches: int = MAX_PATCHES) -> list[ScaleGrid]:
    """The windows for an image of ``width`` x ``height``; a bad request raises InvalidRequest
    (unknown scale, windows smaller than ``MIN_WINDOW_PX``, more than ``max_patches``)."""
    if not scales:
        raise InvalidRequest("give at least one scale", reason="invalid_scales")
    if len(set(scales)) != len(scales) or any(not 1 <= s <= MAX_SCALE for s in scales):
        raise InvalidRequest(f"scales must be distinct integers in [1, {MAX_SCALE}], got "
                             f"{list(scales)}", reason="invalid_scales")
    short = min(width, height)
    grids = []
    for s in sorted(scales):
        window = short // s
        if window < MIN_WINDOW_PX:
            raise InvalidRequest(
                f"image is {width}x{height}: scale {s} gives {window}-px windows, below the "
                f"minimum of {MIN_WINDOW_PX} px; use smaller scales or a larger image",
                reason="image_too_small")
        stride = max(1, window // 2)
        grids.append(ScaleGrid(scale=s, window=window, stride=stride,
                               xs=_positions(width, window, stride),
                               ys=_positions(height, window, stride)))
    total = sum(g.count for g in grids)
    if total > max_patches:
        raise InvalidRequest(
            f"image is {width}x{height}: scales {sorted(scales)} make {total} patches, more "
            f"than the limit of {max_patches} (very elongated images make many windows); use "
            "fewer or smaller scales", reason="too_many_patches")
    return grids


def crop_patches(img: Image.Image, grids: Sequence[ScaleGrid],
                 size: int | None = None) -> list[Image.Image]:
    """The window crops of every grid, in grid order then row-major.

    With ``size``: when even the smallest window is larger than ``size`` px, the image is
    first shrunk once so that window becomes ``size`` px, and the crops come from the shrunk
    copy (box corners rounded to its pixels). The encoder would shrink every crop to its input
    size anyway; one resize of the whole image is much cheaper than 83 resizes of large crops.
    """
    smallest = min(g.window for g in grids)
    if size is None or smallest <= size:
        return [img.crop(box) for g in grids for box in g.boxes()]
    f = size / smallest
    work = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))),
                      Image.Resampling.BICUBIC, reducing_gap=3.0)
    return [work.crop((round(x0 * f), round(y0 * f), round(x1 * f), round(y1 * f)))
            for g in grids for x0, y0, x1, y1 in g.boxes()]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - float(np.max(logits))
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


@dataclass(frozen=True)
class GridScores:
    grid: ScaleGrid
    cosine: np.ndarray  # (rows, cols) float32
    softmax: np.ndarray  # (rows, cols) float32, sums to 1

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.cosine))

    def box(self, index: int) -> tuple[int, int, int, int]:
        return self.grid.boxes()[index]


@dataclass(frozen=True)
class BestPatch:
    scale: int
    row: int
    col: int
    box: tuple[int, int, int, int]
    cosine: float
    softmax: float


@dataclass(frozen=True)
class PatchScores:
    width: int
    height: int
    grids: list[GridScores]
    best: BestPatch
    temperature: float


def score_patches(patch_vectors: np.ndarray, text_vector: np.ndarray,
                  grids: Sequence[ScaleGrid], *, width: int, height: int,
                  temperature: float = 100.0) -> PatchScores:
    """Cosine and per-scale softmax of unit patch vectors (n, d) against a unit text vector."""
    total = sum(g.count for g in grids)
    if patch_vectors.shape[0] != total:
        raise ValueError(f"{patch_vectors.shape[0]} patch vectors for {total} windows")
    cos = (patch_vectors.astype(np.float32) @ text_vector.astype(np.float32).reshape(-1))
    out: list[GridScores] = []
    start = 0
    for g in grids:
        c = cos[start:start + g.count]
        start += g.count
        out.append(GridScores(grid=g, cosine=c.reshape(g.rows, g.cols),
                              softmax=softmax(c * temperature).reshape(g.rows, g.cols)))
    top = max(out, key=lambda gs: float(gs.cosine.max()))
    i = top.best_index
    row, col = divmod(i, top.grid.cols)
    best = BestPatch(scale=top.grid.scale, row=row, col=col, box=top.box(i),
                     cosine=float(top.cosine[row, col]), softmax=float(top.softmax[row, col]))
    return PatchScores(width=width, height=height, grids=out, best=best,
                       temperature=temperature)


def heatmap(scores: PatchScores, cells: int = HEATMAP_CELLS) -> np.ndarray:
    """A (h, w) map in [0, 1] over the image: each cell is the mean, over scales, of the
    softmax (scaled so each scale's best patch is 1) of the windows that cover it."""
    step = max(scores.width, scores.height) / cells
    w = max(1, round(scores.width / step))
    h = max(1, round(scores.height / step))
    total = np.zeros((h, w), dtype=np.float64)
    for gs in scores.grids:
        acc = np.zeros((h, w), dtype=np.float64)
        hits = np.zeros((h, w), dtype=np.float64)
        probs = gs.softmax / max(float(gs.softmax.max()), 1e-12)
        for (x0, y0, x1, y1), p in zip(gs.grid.boxes(), probs.reshape(-1), strict=True):
            cx0, cy0 = int(x0 / step), int(y0 / step)
            cx1, cy1 = max(cx0 + 1, round(x1 / step)), max(cy0 + 1, round(y1 / step))
            acc[cy0:cy1, cx0:cx1] += p
            hits[cy0:cy1, cx0:cx1] += 1
        total += acc / np.maximum(hits, 1)
    total /= max(len(scores.grids), 1)
    peak = float(total.max())
    return (total / peak if peak > 0 else total).astype(np.float32)


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
