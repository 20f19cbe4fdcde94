"""The frozen teacher: a complete CLIP (both towers), its tokenizer, processor and space.

A folder without an image tower (a text-only model, or a CLIP whose vision weights are missing
and would silently be drawn at random by ``from_pretrained``) is refused: there is nothing to
distil from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    CLIPModel,
    PreTrainedTokenizerBase,
)

from clipsearch.models.identity import model_folder, model_identity
from clipsearch.models.loading import ModelLoadError
from clipsearch.models.preprocess import PreprocessSpec

VISION_PREFIXES = ("vision_model.", "visual_projection.")


class NoVisionTower(ModelLoadError):
    reason = "no_vision_tower"


@dataclass
class Teacher:
    name: str
    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    processor: Any  # an image processor (saved with the student)
    spec: PreprocessSpec
    space: str  # the embedding space the student will declare


def load_teacher(name: str, *, cache_dir: Path | None = None) -> Teacher:
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"teacher {name!r} could not be loaded: {exc}") from exc
    if getattr(config, "model_type", None) != "clip" or getattr(config, "vision_config",
                                                                None) is None:
        raise NoVisionTower(
            f"teacher {name!r} has no image tower (a {getattr(config, 'model_type', '?')!r} "
            "model): distillation needs a complete CLIP checkpoint (text and vision towers)")
    try:
        loaded: Any = CLIPModel.from_pretrained(name, output_loading_info=True)
        model, info = cast(tuple[CLIPModel, dict[str, list[str]]], loaded)
        tokenizer = AutoTokenizer.from_pretrained(name)
        processor = AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"teacher {name!r} could not be loaded: {exc}") from exc
    missing = [k for k in info.get("missing_keys", []) if k.startswith(VISION_PREFIXES)]
    if missing:
        raise NoVisionTower(
            f"teacher {name!r} has no trained image tower: {len(missing)} vision weights are "
            f"missing from its files (e.g. {missing[0]}); distillation needs a complete CLIP "
            "checkpoint (text and vision towers)")
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    ident = model_identity(model, folder=model_folder(name), cache_dir=cache_dir)
    spec = PreprocessSpec.from_processor_config(processor.to_dict())
    return Teacher(name=name, model=model, tokenizer=tokenizer, processor=processor,
                   spec=spec, space=ident.space)
