"""Keep a long feed's heap from fragmenting: a fixed glibc mmap threshold.

A feed allocates and frees large buffers all the time: a decoded image's pixels (600 KB at
224 px), a batch of them (32 x 600 KB), the model's outputs, Arrow tables for the shards and
the index. glibc serves a block above ``M_MMAP_THRESHOLD`` (128 KiB) with its own mapping,
returned on free, but raises the threshold to the size of every such block that is freed (up
to 32 MiB): after the first batch, every buffer comes from the heap arenas, and freed holes
that later, longer-lived allocations pin grow the heap with the images fed. Measured
(bench/feed.py --long 20000 --model tiny --workers 0, onnx, 2 cores, README "Feeding
memory"): RSS grew 8.0-9.8 KiB per image after warm-up in three runs, the heap's free but
kept memory 5.7-6.2 KiB per image of it, while the memory in use stayed nearly flat; with the
threshold fixed at 256 KiB (``mallopt``, which also turns the adjustment off) 1.8 and 4.2
KiB per image in two runs and a lower RSS throughout. Not all of it: ~1 KiB per image is
LanceDB's (its session cache of table versions), the rest is noisy from run to run. The price
is a fresh mapping per large buffer: ~0.2 ms per image (estimated, page faults of a 224 px
image's pixels and its share of the batch), nothing next to ViT-B/32's ~50 ms; the tiny test
model feeds visibly fewer images per second with it. Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # glibc malloc.h


def fix_mmap_threshold(nbytes: int) -> bool:
    """Serve blocks of ``nbytes`` and more with their own mapping from now on, in this process
    (``nbytes`` 0: leave glibc's dynamic threshold). Whether the setting took."""
    if nbytes <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    if not ok:
        log.warning("could not set the malloc mmap threshold to %d bytes", nbytes)
    return ok
