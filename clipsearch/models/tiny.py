"""A tiny random-weight CLIP with the real CLIP tokenizer, for tests and the offline demo.

It is saved with ``save_pretrained`` so it loads through exactly the code path users take with
``openai/clip-vit-base-patch32``: ``CLIPModel.from_pretrained(dir)``, the tokenizer and the
image processor. Embeddings are 512-d like the real model by default.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip import CLIPImageProcessorPil

from clipsearch.models.bpe import BOS, EOS, VOCAB_SIZE, build_clip_tokenizer

# Files whose presence means a previous build finished (the build renames atomically, so a
# directory holding them is complete).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json",
                  "preprocessor_config.json")


def is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in REQUIRED_FILES)


def tiny_clip_config(*, projection_dim: int = 512, image_size: int = 224,
                     patch_size: int = 32, hidden: int = 64, layers: int = 2) -> CLIPConfig:
    text = {
        "vocab_size": VOCAB_SIZE, "hidden_size": hidden, "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": 2, "max_position_embeddings": 77,
        # CLIP pools the text at the first end-of-text token; it must be the real id.
        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
    }
    vision = {
        "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
        "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def _write(tmp: Path, *, seed: int, projection_dim: int, image_size: int) -> None:
    config = tiny_clip_config(projection_dim=projection_dim, image_size=image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(tmp)
    tokenizer = build_clip_tokenizer()
    assert tokenizer.bos_token == BOS and tokenizer.eos_token == EOS
    tokenizer.save_pretrained(tmp)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor.save_pretrained(tmp)


def build_tiny_clip(out_dir: Path, *, seed: int = 0, projection_dim: int = 512,
                    image_size: int = 224) -> Path:
    """Build the tiny CLIP into ``out_dir`` (atomically) and return it; a no-op if it is there.

    Takes about a second. Raises ``BpeNotFound`` (naming the download command) when the CLIP
    BPE vocabulary is missing.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        _write(tmp, seed=seed, projection_dim=projection_dim, image_size=image_size)
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty directory (e.g. made by mktemp) is replaced
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not is_complete(out_dir):  # not a concurrent builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
