"""The run's checkpoint, written atomically after every epoch, so a killed run resumes.

``<out>.partial/checkpoint.pt`` holds one ``torch.save`` dict of tensors (the student's
trainable weights, the best epoch's, the optimizer, torch's RNG) and ``meta``: a JSON string
with the recipe, the data's signature, the epoch, the early-stopping state, the history and
the numpy and Python RNG states. It is loaded with ``weights_only=True`` (no pickled code).
A checkpoint made with another recipe or other data is refused (``--restart`` replaces it);
``threads``, ``device`` and the progress bar may change between runs. Removed once the
student is saved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import LabelledImage
from clipsearch.training.distill.config import EpochRecord

FILE = "checkpoint.pt"


class CheckpointMismatch(InvalidRequest):
    reason = "checkpoint_mismatch"


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".partial")


def data_signature(train: Sequence[LabelledImage], held: Sequence[LabelledImage]) -> str:
    h = hashlib.sha256()
    for part in (train, held):
        for it in part:
            h.update(f"{it.dataset}\x00{it.id}\x00{it.path}\n".encode())
        h.update(b"--\n")
    return h.hexdigest()


@dataclass
class RunState:
    """Everything a resumed run needs besides the models."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    best_epoch: int = 0
    best_cosine: float = float("-inf")
    stale: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    numpy_rng: dict[str, Any] | None = None
    python_rng: list[Any] | None = None
    # inside an unfinished epoch: its sample order, the steps done and the loss sums so far
    epoch_order: list[int] | None = None
    epoch_step: int = 0
    epoch_sums: list[float] | None = None


def save(folder: Path, *, recipe: dict[str, object], data: str, state: RunState,
         student: dict[str, torch.Tensor], best: dict[str, torch.Tensor],
         optimizer: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"recipe": recipe, "data": data, "epoch": state.epoch, "step": state.step,
            "best_epoch": state.best_epoch, "best_cosine": state.best_cosine,
            "stale": state.stale, "history": [h.model_dump() for h in state.history],
            "numpy_rng": state.numpy_rng, "python_rng": state.python_rng,
            "epoch_order": state.epoch_order, "epoch_step": state.epoch_step,
            "epoch_sums": state.epoch_sums}
    path = folder / FILE
    tmp = folder / f".{FILE}.{os.getpid()}.tmp"
    torch.save({"meta": json.dumps(meta), "student": student, "best": best,
                "optimizer": optimizer, "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)
    return path


@dataclass
class Loaded:
    state: RunState
    student: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def load(folder: Path, *, recipe: dict[str, object], data: str) -> Loaded | None:
    """The checkpoint in ``folder`` if there is one; refused when made for another run."""
    path = folder / FILE
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(raw["meta"])
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointMismatch(f"the checkpoint {path} cannot be read ({exc}); remove "
                                 f"{folder} or pass --restart") from exc
    saved_recipe = json.loads(json.dumps(meta["recipe"]))
    now = json.loads(json.dumps(recipe))
    diffs = _differences(saved_recipe, now)
    if meta["data"] != data:
        diffs.append("the data")
    if diffs:
        raise CheckpointMismatch(
            f"the checkpoint in {folder} was made for another distillation (differs in: "
            f"{', '.join(diffs)}); resume with the same settings, or pass --restart to "
            "start over")
    state = RunState(epoch=meta["epoch"], step=meta["step"], best_epoch=meta["best_epoch"],
                     best_cosine=meta["best_cosine"], stale=meta["stale"],
                     history=[EpochRecord.model_validate(h) for h in meta["history"]],
                     numpy_rng=meta["numpy_rng"], python_rng=meta["python_rng"],
                     epoch_order=meta.get("epoch_order"), epoch_step=meta.get("epoch_step", 0),
                     epoch_sums=meta.get("epoch_sums"))
    return Loaded(state=state, student=raw["student"], best=raw["best"],
                  optimizer=raw["optimizer"], torch_rng=raw["torch_rng"])
