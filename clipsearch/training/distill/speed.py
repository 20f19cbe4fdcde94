"""Images/s of a student against its teacher on the same runtime, measured in one run.

Rounds alternate between the two models (teacher, student, teacher, ...) and the best round
of each is kept, so a busy neighbour slows both alike and the ratio holds on a shared machine.
"""

from __future__ import annotations

import time

import numpy as np
from transformers import CLIPModel

from clipsearch.models.runtimes.base import Runtime
from clipsearch.models.runtimes.select import RuntimeOptions, build_runtime
from clipsearch.training.distill.config import Speed


def paired_rates(teacher: Runtime, student: Runtime, pixels: np.ndarray,
                 rounds: int = 3) -> tuple[float, float]:
    """(teacher, student) images/s on ``pixels``, best of ``rounds`` interleaved rounds."""
    best = [float("inf"), float("inf")]
    teacher.image(pixels[:1])  # warm-up: first-call allocations are not speed
    student.image(pixels[:1])
    for _ in range(rounds):
        for i, rt in enumerate((teacher, student)):
            start = time.perf_counter()
            rt.image(pixels)
            best[i] = min(best[i], time.perf_counter() - start)
    return len(pixels) / best[0], len(pixels) / best[1]


def measure_speed(teacher: CLIPModel, student: CLIPModel, pixels: np.ndarray, *,
                  runtime: str = "torch", device: str = "cpu", threads: int = 1,
                  rounds: int = 3) -> Speed:
    """Both models on runtime ``runtime`` (a model-library runtime name, not ``auto``)."""
    opts = RuntimeOptions(device=device, threads=threads, image_size=int(pixels.shape[-1]))
    t_rate, s_rate = paired_rates(build_runtime(runtime, teacher, opts),
                                  build_runtime(runtime, student, opts), pixels, rounds)
    return Speed(runtime=runtime, batch=len(pixels), teacher_images_per_s=t_rate,
                 student_images_per_s=s_rate)
