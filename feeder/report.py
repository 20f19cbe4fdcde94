"""The feed's outcome: counts that add up (read = indexed + already_indexed + skipped)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class FeedReport(BaseModel):
    source: str
    model_id: str = ""
    runtime: str = Field("", description="the encoder runtime that encoded (e.g. onnx)")
    read: int = 0
    indexed: int = Field(0, description="documents written to the index by this run")
    already_indexed: int = Field(0, description="unchanged documents the index already had")
    skipped: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    repaired_by_reason: dict[str, int] = Field(default_factory=dict)
    encoded: int = Field(0, description="images encoded by this run")
    reused_embeddings: int = Field(0, description="embeddings taken from existing shards")
    seconds: float = 0.0
    aborted: str | None = Field(None, description="why the run stopped early, if it did")
    flushed_pending: bool = Field(False, description="this run completed the flush a "
                                  "previous run left owed")
    dead_letter: Path | None = None
    embeddings_dir: Path | None = None

    @property
    def consistent(self) -> bool:
        return self.read == self.indexed + self.already_indexed + self.skipped

    @property
    def images_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    @property
    def docs_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        rows: list[tuple[str, str]] = [
            ("source", self.source),
            ("model", self.model_id or "-"),
            ("runtime", self.runtime or "-"),
            ("read", str(self.read)),
            ("indexed", str(self.indexed)),
            ("already indexed", str(self.already_indexed)),
            ("skipped", str(self.skipped)),
        ]
        rows += [(f"  skipped: {k}", str(v)) for k, v in sorted(self.skipped_by_reason.items())]
        rows += [(f"  repaired: {k}", str(v))
                 for k, v in sorted(self.repaired_by_reason.items())]
        rows += [
            ("encoded", str(self.encoded)),
            ("reused embeddings", str(self.reused_embeddings)),
            ("time", f"{self.seconds:.1f} s"),
            ("images/s (encoded)", f"{self.images_per_s:.1f}"),
            ("documents/s (indexed)", f"{self.docs_per_s:.1f}"),
        ]
        if self.dead_letter is not None and (self.skipped or self.repaired_by_reason):
            rows.append(("dead-letter report", str(self.dead_letter)))
        if self.flushed_pending:
            rows.append(("flush", "completed the flush an earlier run left owed"))
        if self.aborted:
            rows.append(("ABORTED", self.aborted))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
