"""``ClipEncoder``: text and images in, float32 unit-length CLIP embeddings out (synchronous).

Used in-process by the gateway (through ``LocalEmbedder``), by the encoder service and by the
feeder. Not thread-safe: callers run one call at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.errors import InvalidImage
from clipsearch.models.identity import ModelIdentity, model_folder, model_identity
from clipsearch.models.loading import load_clip_parts
from clipsearch.models.preprocess import PreprocessSpec, image_pixels
from clipsearch.models.runtimes.base import Runtime
from clipsearch.models.runtimes.onnx_runtime import default_cache_dir
from clipsearch.models.runtimes.select import (
    RuntimeOptions,
    auto_reason,
    build_runtime,
    machine_summary,
    select_runtime,
)
from clipsearch.models.text_cache import TextCache
from clipsearch.settings import Settings

log = logging.getLogger(__name__)

TEXT_BATCH = 64
MAX_TEXT_CHARS = 16_384
IMAGE_BATCH = 16


def onnx_cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "onnx"


def announce_runtime(runtime: str, model: str, device: str, threads: int, why: str) -> None:
    """The one log line saying which runtime encodes and why (callers that load copies, such
    as the feeder's worker processes, load quietly and announce once through here)."""
    log.info("runtime %s for %s on %s, %d thread(s) per process [%s]: %s", runtime, model,
             device, threads, machine_summary(), why)


def batch_threads(settings: Settings) -> int:
    """Intra-op threads for a batch job in one process (evaluation, probe training, a feed
    without worker processes): every core, or ``torch_threads`` if set higher. Serving keeps
    ``torch_threads`` (1: latency-bound, DESIGN)."""
    return max(os.cpu_count() or 1, settings.torch_threads)


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # int64 (n, L), L = longest in the batch
    attention_mask: np.ndarray


class ClipEncoder:
    def __init__(self, *, model_id: str, tokenizer: PreTrainedTokenizerBase,
                 spec: PreprocessSpec, runtime: Runtime, dim: int, max_text_tokens: int,
                 text_batch: int = TEXT_BATCH, image_batch: int = IMAGE_BATCH,
                 text_cache_size: int = 4096, identity: ModelIdentity | None = None,
                 runtime_reason: str = "") -> None:
        self._model_id = model_id
        self._runtime_reason = runtime_reason
        self._identity = identity
        self._tokenizer = tokenizer
        self._spec = spec
        self._runtime = runtime
        self._dim = dim
        self._max_text_tokens = max_text_tokens
        self._text_batch = text_batch
        self._image_batch = image_batch
        self._text_cache = TextCache(text_cache_size)

    @classmethod
    def load(cls, model: str, *, revision: str | None = None, device: str = "cpu",
             threads: int | None = None, runtime: str = "torch",
             cache_dir: Path | None = None, text_cache_size: int = 4096,
             announce: bool = True, towers: str = "both",
             allow_int8: bool = False,
             check_images: Callable[[PreprocessSpec], np.ndarray] | None = None,
             ) -> ClipEncoder:
        """Load from a hub id or a local folder (``HF_HUB_OFFLINE`` is respected).

        ``runtime``: torch (fp32 reference), torch-bf16, torch-fp16 (CUDA), onnx, onnx-int8,
        or auto (the fastest within cos >= 0.999 of fp32, measured now). ``threads`` sets
        torch's intra-op threads for the process and ONNX Runtime's (DESIGN: 1; scale with
        processes). ``cache_dir`` holds ONNX exports. The runtime chosen and why is logged
        once, at INFO (``announce=False``: not at all, for copies loaded by worker processes).
        ``towers="vision"``: the image side only (``embed_texts`` then raises; ``auto``
        checks the image tower only). ``allow_int8``: ``auto`` may pick onnx-int8 when it
        clears the same cosine bar; ``check_images`` (given the preprocessing) returns real
        images that every ``auto`` candidate must also match within that bar. Raises
        ``ModelLoadError`` when the model is missing, ``ValueError`` for an unusable runtime.
        """
        if threads is not None:
            torch.set_num_threads(threads)
        parts = load_clip_parts(model, revision=revision)
        opts = RuntimeOptions(device=device, threads=threads or torch.get_num_threads(),
                              model_id=parts.name,
                              # the resolved hub commit, so an updated model is re-exported
                              revision=revision or getattr(parts.model.config,
                                                           "_commit_hash", None),
                              cache_dir=cache_dir or default_cache_dir(),
                              image_size=parts.spec.output_size[0], towers=towers,
                              allow_int8=allow_int8,
                              check_pixels=(check_images(parts.spec)
                                            if check_images is not None and runtime == "auto"
                                            else None))
        if runtime == "auto":
            chosen, trials = select_runtime(parts.model, opts)
            why = auto_reason(trials)
        else:
            chosen = build_runtime(runtime, parts.model, opts)
            why = "configured (CLIPSEARCH_RUNTIME or runtime=)"
        if announce:
            announce_runtime(chosen.name, parts.name, device, opts.threads, why)
        cfg = parts.model.config
        positions = int(getattr(cfg.text_config, "max_position_embeddings", 77))
        max_tokens = min(int(parts.tokenizer.model_max_length), positions)
        dim = int(getattr(cfg, "projection_dim", 512))
        identity = model_identity(parts.model, folder=model_folder(model, revision),
                                  cache_dir=(cache_dir or default_cache_dir()).parent
                                  / "fingerprints")
        return cls(model_id=parts.name, tokenizer=parts.tokenizer, spec=parts.spec,
                   runtime=chosen, dim=dim, max_text_tokens=max_tokens,
                   text_cache_size=text_cache_size, identity=identity, runtime_reason=why)

    @classmethod
    def from_settings(cls, settings: Settings, *, model: str | None = None,
                      threads: int | None = None, runtime: str | None = None,
                      announce: bool = True, towers: str = "both",
                      allow_int8: bool | None = None,
                      check_images: Callable[[PreprocessSpec], np.ndarray] | None = None,
                      ) -> ClipEncoder:
        """``load`` with the model, revision, device, runtime and threads from settings (each
        of the first three may be overridden, e.g. more threads for a batch job); ONNX exports
        are cached under ``<data_dir>/cache/onnx``. Every in-process user of the model library
        loads through here, so ``CLIPSEARCH_RUNTIME`` reaches all of them."""
        return cls.load(model or settings.model, revision=settings.model_revision,
                        device=settings.device, threads=threads or settings.torch_threads,
                        runtime=runtime or settings.runtime,
                        cache_dir=onnx_cache_dir(settings), announce=announce,
                        towers=towers,
                        allow_int8=settings.auto_int8 if allow_int8 is None else allow_int8,
                        check_images=check_images)

    # --- properties -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> ModelIdentity | None:
        """Fingerprint and embedding space (None when built without one, e.g. in tests)."""
        return self._identity

    @property
    def space_id(self) -> str | None:
        return self._identity.space if self._identity else None

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self._spec

    @property
    def max_text_tokens(self) -> int:
        return self._max_text_tokens

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def runtime_reason(self) -> str:
        """Why this runtime (``auto``'s measurements, or "configured")."""
        return self._runtime_reason

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    # --- text -------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text with begin/end tokens, truncated to the model's maximum.

        Texts are first cut at ``MAX_TEXT_CHARS`` characters: the tokenizer reads a whole
        text before truncating (a 1 MB text costs ~0.5 s), and 77 tokens never reach that far
        unless a single "word" is thousands of characters long.
        """
        enc = self._tokenizer([t[:MAX_TEXT_CHARS] for t in texts], truncation=True,
                              max_length=self._max_text_tokens, padding=False)
        return [list(ids) for ids in enc["input_ids"]]

    def pad(self, ids: Sequence[Sequence[int]], length: int | None = None) -> TokenBatch:
        """Pad to the batch's longest sequence (or ``length``) with the pad token."""
        longest = length or max(len(x) for x in ids)
        pad_id = self._tokenizer.pad_token_id
        input_ids = np.full((len(ids), longest), pad_id if pad_id is not None else 0,
                            dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return TokenBatch(input_ids=input_ids, attention_mask=mask)

    def embed_token_batch(self, batch: TokenBatch) -> np.ndarray:
        return self._runtime.text(batch.input_ids, batch.attention_mask)

    @property
    def text_cache(self) -> TextCache:
        return self._text_cache

    def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        """Unit-length embeddings, one row per text, in order.

        Repeated texts come from an LRU cache; the rest are grouped by length so each batch
        pads only to its own longest text.
        """
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            hit = self._text_cache.get(text)
            if hit is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = hit
        if missing:
            unique = list(missing)
            vectors = self._embed_uncached(unique)
            for text, vec in zip(unique, vectors, strict=True):
                out[missing[text]] = vec
                self._text_cache.put(text, vec)
        return Embeddings(model_id=self._model_id, vectors=out)

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenize(texts)
        raw = np.empty((len(texts), self._dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self._text_batch):
            chunk = order[start : start + self._text_batch]
            raw[chunk] = self.embed_token_batch(self.pad([ids[i] for i in chunk]))
        return l2_normalize(raw)

    # --- images -----------------------------------------------------------------------------
    def embed_pixels(self, batch: np.ndarray) -> Embeddings:
        """Unit-length embeddings of preprocessed pixels, float32 (n, 3, H, W)."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"pixels must have shape (n, 3, H, W), got {batch.shape}")
        out = np.empty((batch.shape[0], self._dim), dtype=np.float32)
        for start in range(0, batch.shape[0], self._image_batch):
            out[start : start + self._image_batch] = self._runtime.image(
                batch[start : start + self._image_batch])
        if batch.shape[0] == 0:
            return Embeddings(model_id=self._model_id, vectors=out)
        return Embeddings(model_id=self._model_id, vectors=l2_normalize(out))

    def preprocess_images(self, images: Sequence[bytes], *, max_bytes: int,
                          max_pixels: int) -> np.ndarray:
        """Decode and preprocess; a bad image raises its error, naming its position. One
        image at a time, each decoded no larger than twice the model's input (issue 16), so
        a request of many large images never holds more than one full-size bitmap."""
        h, w = self._spec.output_size
        out = np.empty((len(images), 3, h, w), dtype=np.float32)
        for i, data in enumerate(images):
            try:
                out[i] = image_pixels(data, self._spec, max_bytes=max_bytes,
                                      max_pixels=max_pixels)
            except InvalidImage as exc:
                raise type(exc)(f"image {i}: {exc.message}", reason=exc.reason) from exc
        return out

    def embed_images(self, images: Sequence[bytes], *, max_bytes: int,
                     max_pixels: int) -> Embeddings:
        return self.embed_pixels(
            self.preprocess_images(images, max_bytes=max_bytes, max_pixels=max_pixels))
