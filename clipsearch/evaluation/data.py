"""Labelled images for evaluation and fine-tuning, read through the feeder's readers.

Evaluation and training need what the index stores (id, captions, category, split) plus the
image file; ``load_labelled`` turns any dataset the feeder reads into that list (rows the
reader rejects are left out, as the feeder leaves them out of the index).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from clipsearch.documents import make_doc_id
from clipsearch.errors import InvalidRequest


class LabelledImage(BaseModel):
    id: str = Field(description="the source id, as the dataset gives it")
    path: Path
    captions: list[str] = Field(default_factory=list)
    dataset: str = ""
    category: str | None = None
    split: str | None = None

    @property
    def doc_id(self) -> str:
        """The id the feeder gives this image's document in the index."""
        return make_doc_id(self.dataset, self.id)


def load_labelled(source: Path, *, fmt: str = "auto", dataset: str | None = None,
                  splits: Sequence[str] | None = None) -> list[LabelledImage]:
    """Every readable labelled image of a dataset, optionally only the given splits."""
    from clipsearch.datasets.readers import SourceFormat, read_source
    from clipsearch.datasets.records import SourceRecord

    try:
        rows = list(read_source(Path(source), SourceFormat(fmt), dataset=dataset))
    except (FileNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"cannot read dataset {source}: {exc}") from exc
    items = [LabelledImage(id=r.source_id, path=r.file, captions=list(r.captions),
                           dataset=r.dataset, category=r.category, split=r.split)
             for r in rows if isinstance(r, SourceRecord)]
    if splits:
        wanted = set(splits)
        items = [it for it in items if it.split in wanted]
    return items
