"""Load a CLIP checkpoint (hub id or local folder): model, tokenizer, preprocessing spec."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, PreTrainedTokenizerBase

from clipsearch.errors import ClipsearchError
from clipsearch.models.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


class ModelLoadError(ClipsearchError):
    """The model could not be loaded (missing, offline, or not a CLIP checkpoint)."""

    reason = "model_unavailable"


@dataclass(frozen=True)
class ClipParts:
    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    spec: PreprocessSpec
    name: str


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _explain(model: str, exc: Exception) -> str:
    path = Path(model).expanduser()
    if path.is_dir():
        return f"{model!r} is a folder but not a loadable CLIP checkpoint: {exc}"
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return f"model folder {model!r} does not exist"
    hint = (" HF_HUB_OFFLINE=1 forbids downloading; put the model in the Hugging Face cache "
            "or point CLIPSEARCH_MODEL at a local folder") if _offline() else ""
    return f"model {model!r} could not be loaded from the hub or the local cache.{hint} ({exc})"


def load_clip_parts(model: str, *, revision: str | None = None) -> ClipParts:
    """CLIPModel (fp32, eval), its tokenizer and its preprocessing spec.

    Respects ``HF_HUB_OFFLINE``; anything missing raises ``ModelLoadError`` with a reason.
    """
    if not model.strip():
        raise ModelLoadError("no model given (set CLIPSEARCH_MODEL)")
    try:
        rev = revision or "main"
        clip = CLIPModel.from_pretrained(model, revision=rev)
        tokenizer = AutoTokenizer.from_pretrained(model, revision=rev)
        processor = AutoImageProcessor.from_pretrained(model, revision=rev)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(_explain(model, exc)) from exc
    spec = PreprocessSpec.from_processor_config(processor.to_dict())
    name = model or str(getattr(clip.config, "_name_or_path", "") or "clip")
    return ClipParts(model=clip.eval(), tokenizer=tokenizer, spec=spec, name=name)
