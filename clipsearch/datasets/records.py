"""What a dataset reader yields: a typed source record, or a rejected row with its reason."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SourceRecord(BaseModel):
    """One image as the source describes it (before decoding and encoding).

    ``source_id`` is the id the dataset gives the image; the document id is
    ``make_doc_id(dataset, source_id)``, so it is stable across runs.
    """

    model_config = ConfigDict(frozen=True)

    source_id: str = Field(min_length=1)
    file: Path
    captions: list[str] = Field(default_factory=list)
    dataset: str
    category: str | None = None
    split: str | None = None


class Reason(StrEnum):
    """Why a row was skipped (or repaired). Stable codes: they appear in reports."""

    missing_file = "missing_file"
    invalid_image = "invalid_image"
    image_too_large = "image_too_large"
    duplicate_id = "duplicate_id"
    invalid_row = "invalid_row"
    empty_caption = "empty_caption"
    label_repaired = "label_repaired"
    non_utf8 = "non_utf8"
    index_error = "index_error"
    encoder_error = "encoder_error"
    not_attempted = "not_attempted"


class Action(StrEnum):
    skipped = "skipped"
    repaired = "repaired"


class Rejection(BaseModel):
    """A row the feeder could not index as given: one dead-letter line."""

    id: str = ""
    file: str = ""
    reason: Reason
    action: Action = Action.skipped
    detail: str = ""


ReadItem = SourceRecord | Rejection
