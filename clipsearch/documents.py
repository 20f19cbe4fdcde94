"""The document stored in the index: one image, its captions, labels and CLIP embedding."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ids end up in URLs (/images/{id}) and in Vespa document ids (id:<ns>:image::<id>).
DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+~\-]{0,255}$"
# Label values (dataset, category, split) are used in filters: keep them simple and safe.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-+/]{0,127}$"

DocId = Annotated[str, Field(pattern=DOC_ID_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]

_WS = re.compile(r"\s+")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._@+\-]")


def make_doc_id(dataset: str, source_id: str) -> str:
    """Stable id from a dataset name and the id the source gives the image.

    Characters outside the id alphabet are replaced by ``_``; when that happens a short hash
    of the original id is appended so that two different source ids never collide.
    """
    safe = _UNSAFE_ID_CHARS.sub("_", source_id.strip()) or "_"
    if safe != source_id:
        digest = hashlib.sha1(source_id.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:200]}~{digest}"
    return f"{_UNSAFE_ID_CHARS.sub('_', dataset) or '_'}:{safe}"


class DocumentFields(BaseModel):
    """Everything stored about an image except its vector."""

    model_config = ConfigDict(extra="forbid")

    id: DocId
    captions: list[str] = Field(default_factory=list)
    dataset: Label
    category: Label | None = None
    split: Label | None = None
    image_uri: str = Field("", description="Where the image file lives (path or URL)")
    model_id: str = ""

    @field_validator("captions")
    @classmethod
    def _clean_captions(cls, v: list[str]) -> list[str]:
        cleaned = [_WS.sub(" ", c).strip() for c in v]
        return [c for c in cleaned if c]

    @property
    def caption_text(self) -> str:
        """All captions joined: the text BM25 ranks."""
        return "\n".join(self.captions)


class ImageDocument(DocumentFields):
    """A document as written to the index: fields plus a unit-length embedding."""

    embedding: list[float]

    @field_validator("embedding")
    @classmethod
    def _unit_length(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("embedding is empty")
        if not all(math.isfinite(x) for x in v):
            raise ValueError("embedding has NaN or infinite values")
        norm = math.sqrt(sum(x * x for x in v))
        if norm < 1e-6:
            raise ValueError("embedding is the zero vector")
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"embedding is not unit length (norm {norm:.4f})")
        return v
