"""Embedding space identity: a fingerprint of what a CLIP model computes, not of its name.

Two models embed into the same space when their vectors may be compared: the same weights
(wherever they are stored, under whatever name), or a model that declares it was trained to
embed into another's space (a distilled student). An index records the space of each
generation; the gateway and the feeder refuse to mix spaces.

* **fingerprint**: ``sha256`` over (1) the parts of the model config that shape the
  computation (``FINGERPRINT_CONFIG_KEYS``, canonical JSON) and (2) every tensor of the
  model's ``state_dict`` except ``logit_scale`` (it scales similarities, not embeddings), in
  name order, each as its name, dtype, shape and little-endian bytes. The result does not
  depend on the file format (safetensors or pickle), the folder or the hub id. Measured:
  ~1 GB/s with SHA-NI, so ~0.6 s for ViT-B/32's 600 MB of float32; the result is cached.
* **cache**: ``<model folder>/clipsearch_fingerprint.json`` (a hub model's snapshot folder
  too), keyed by the names, sizes and mtimes of the folder's weight files; where the folder
  is not writable, ``<cache_dir>/<sha of the folder path>.json``.
* **declared space** (``SPACE_FILE = clipsearch_space.json`` in the model folder)::

      {"embeds_into": "<fingerprint of the teacher>", "teacher": "<teacher id, for people>"}

  The model then embeds into ``embeds_into`` (its ``space``) while its ``fingerprint`` stays
  its own. Written by distillation; read here. A malformed file is an error, not ignored.
* A space id is ``"clip-" + 16 hex digits`` of the fingerprint (``short_space``), for
  messages; comparisons use the full fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SPACE_FILE = "clipsearch_space.json"
CACHE_FILE = "clipsearch_fingerprint.json"
FINGERPRINT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
IGNORED_TENSORS = frozenset({"logit_scale"})
FINGERPRINT_CONFIG_KEYS = ("projection_dim",)
TOWER_CONFIG_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "hidden_act", "layer_norm_eps", "max_position_embeddings", "vocab_size", "image_size",
    "patch_size", "num_channels", "eos_token_id",
)
_HEX = r"^[0-9a-f]{64}$"


class InvalidSpaceDeclaration(ClipsearchError):
    reason = "invalid_space_declaration"


class SpaceDeclaration(BaseModel):
    """The content of ``clipsearch_space.json``."""

    model_config = ConfigDict(extra="forbid")

    embeds_into: str = Field(pattern=_HEX, description="fingerprint of the space's model")
    teacher: str | None = Field(None, description="the teacher's id, for people")


class ModelIdentity(BaseModel):
    """What a loaded model computes (``fingerprint``) and where its vectors live (``space``)."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str = Field(pattern=_HEX)
    space: str = Field(pattern=_HEX)
    declared_by: str | None = Field(None, description="teacher named by clipsearch_space.json")

    @property
    def short(self) -> str:
        return short_space(self.space)


def short_space(space: str | None) -> str:
    return f"clip-{space[:16]}" if space else "unknown"


def config_part(config: Any) -> dict[str, Any]:
    """The config values that shape the embeddings (a CLIPConfig or anything with the keys)."""
    out: dict[str, Any] = {k: getattr(config, k, None) for k in FINGERPRINT_CONFIG_KEYS}
    for tower in ("text_config", "vision_config"):
        sub = getattr(config, tower, None)
        out[tower] = {k: getattr(sub, k, None) for k in TOWER_CONFIG_KEYS} if sub else None
    return out


def fingerprint_model(model: torch.nn.Module, config: Any | None = None) -> str:
    """sha256 of the config part and every tensor (see the module docstring)."""
    import torch
    h = hashlib.sha256()
    h.update(f"clipsearch-fingerprint-v{FINGERPRINT_VERSION}\n".encode())
    cfg = config if config is not None else getattr(model, "config", None)
    h.update(json.dumps(config_part(cfg), sort_keys=True, default=str).encode())
    state = model.state_dict()
    for name in sorted(state):
        if name.rsplit(".", 1)[-1] in IGNORED_TENSORS:
            continue
        tensor = state[name].detach().to("cpu").contiguous()
        h.update(f"\n{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its raw 16-bit words
            tensor = tensor.view(torch.int16)
        array = tensor.numpy()
        h.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def files_signature(folder: Path) -> list[list[Any]]:
    """(name, size, mtime_ns) of the folder's weight and config files: the cache key."""
    rows: list[list[Any]] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name == "config.json"):
            st = path.stat()  # follows the hub cache's symlinks to the blobs
            rows.append([path.name, st.st_size, st.st_mtime_ns])
    return rows


def read_declaration(folder: Path | None) -> SpaceDeclaration | None:
    if folder is None:
        return None
    path = folder / SPACE_FILE
    if not path.is_file():
        return None
    try:
        return SpaceDeclaration.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise InvalidSpaceDeclaration(
            f"{path} is not a valid space declaration ({exc}); expected "
            '{"embeds_into": "<64 hex digits>", "teacher": "..."}') from exc


def _cache_paths(folder: Path, cache_dir: Path | None) -> list[Path]:
    paths = [folder / CACHE_FILE]
    if cache_dir is not None:
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
        paths.append(cache_dir / f"{key}.json")
    return paths


def _read_cache(paths: list[Path], signature: list[list[Any]]) -> str | None:
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (data.get("version") == FINGERPRINT_VERSION and data.get("files") == signature
                and isinstance(data.get("fingerprint"), str)):
            return str(data["fingerprint"])
    return None


def _write_cache(paths: list[Path], signature: list[list[Any]], fingerprint: str) -> None:
    body = json.dumps({"version": FINGERPRINT_VERSION, "fingerprint": fingerprint,
                       "files": signature}, indent=1)
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, path)
            return
        except OSError:
            continue
    log.info("fingerprint not cached: none of %s is writable", [str(p) for p in paths])


def model_folder(model: str, revision: str | None = None) -> Path | None:
    """The folder a model was loaded from: itself, or its hub snapshot (None if unknown)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except (ImportError, ValueError, OSError):
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_identity(model: torch.nn.Module, *, folder: Path | None,
                   cache_dir: Path | None = None) -> ModelIdentity:
    """The identity of a loaded model; ``folder`` (where its files are) enables the cache
    and the space declaration."""
    fingerprint = None
    signature: list[list[Any]] = []
    paths: list[Path] = []
    if folder is not None and folder.is_dir():
        signature = files_signature(folder)
        paths = _cache_paths(folder, cache_dir)
        fingerprint = _read_cache(paths, signature) if signature else None
    if fingerprint is None:
        fingerprint = fingerprint_model(model)
        if signature:
            _write_cache(paths, signature, fingerprint)
    declared = read_declaration(folder)
    if declared is None:
        return ModelIdentity(fingerprint=fingerprint, space=fingerprint)
    return ModelIdentity(fingerprint=fingerprint, space=declared.embeds_into,
                         declared_by=declared.teacher or "clipsearch_space.json")


def write_declaration(folder: Path, embeds_into: str, teacher: str | None = None) -> Path:
    """Write ``clipsearch_space.json`` (for distillation and tests); atomic."""
    decl = SpaceDeclaration(embeds_into=embeds_into, teacher=teacher)
    path = folder / SPACE_FILE
    tmp = path.with_name(f".{SPACE_FILE}.tmp")
    tmp.write_text(decl.model_dump_json(indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def space_of(embedder: object) -> str | None:
    """The space an encoder (ClipEncoder, LocalEmbedder, RemoteEmbedder, feed encoders)
    embeds into, or None when it does not say (test fakes, old encoder services)."""
    value = getattr(embedder, "space_id", None)
    return value if isinstance(value, str) and value else None


def identify(model: str, *, revision: str | None = None,
             cache_dir: Path | None = None) -> tuple[ModelIdentity, int, str]:
    """(identity, embedding dimension, model id) of a model by name or folder, without
    building a runtime (cheap when the fingerprint is cached: the weights are still read)."""
    from clipsearch.models.loading import load_clip_parts

    parts = load_clip_parts(model, revision=revision)
    dim = int(getattr(parts.model.config, "projection_dim", 512))
    ident = model_identity(parts.model, folder=model_folder(model, revision),
                           cache_dir=cache_dir)
    return ident, dim, parts.name
