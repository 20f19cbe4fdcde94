"""Embedding shards: Parquet files of (id, content hash, model id, embedding, fields).

Every encoded batch is written here BEFORE it is fed, so a rerun reuses what was encoded with
the same model from the same bytes, and ``--from-embeddings`` can feed a machine without a
model. A shard is written to a temporary name and renamed: a killed feeder leaves whole shards
or none. Later shards win over earlier ones for the same id.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from clipsearch.documents import DocumentFields

SHARD_GLOB = "shard-*.parquet"
_FIELDS_LIST = TypeAdapter(list[DocumentFields])
KEY_COLUMNS = ["id", "content_hash", "model_id"]


@dataclass(frozen=True)
class StoredEntry:
    content_hash: str
    model_id: str
    shard: Path
    row: int
    space: str | None = None  # embedding-space fingerprint; None in shards written before it

    def reusable_for(self, content_hash: str, model_id: str, space: str | None) -> bool:
        """Same bytes, same model name and (where both sides know it) the same embedding
        space: a model retrained in place keeps its name but not its fingerprint."""
        if self.content_hash != content_hash or self.model_id != model_id:
            return False
        return self.space is None or space is None or self.space == space


@dataclass(frozen=True)
class StoredRow:
    fields: DocumentFields
    content_hash: str
    vector: np.ndarray


def _schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("id", pa.string()), ("content_hash", pa.string()), ("model_id", pa.string()),
        ("embedding", pa.list_(pa.float32(), dim)), ("captions", pa.list_(pa.string())),
        ("dataset", pa.string()), ("category", pa.string()), ("split", pa.string()),
        ("image_uri", pa.string()), ("space", pa.string()),
    ])


class EmbeddingStore:
    def __init__(self, root: Path, *, space: str | None = None) -> None:
        self.root = Path(root)
        self.space = space  # written with every row: the space the vectors live in

    def shards(self) -> list[Path]:
        """Shard files, oldest first (names start with a zero-padded time)."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob(SHARD_GLOB))

    def write(self, fields: Sequence[DocumentFields], hashes: Sequence[str],
              vectors: np.ndarray) -> Path:
        """One new shard; returns its path. ``vectors`` is (n, dim) float32, unit rows."""
        if not (len(fields) == len(hashes) == len(vectors)) or not len(fields):
            raise ValueError("a shard needs as many fields, hashes and vectors, at least one")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.table({
            "id": [f.id for f in fields],
            "content_hash": list(hashes),
            "model_id": [f.model_id for f in fields],
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            "captions": [f.captions for f in fields],
            "dataset": [f.dataset for f in fields],
            "category": [f.category for f in fields],
            "split": [f.split for f in fields],
            "image_uri": [f.image_uri for f in fields],
            "space": [self.space] * len(fields),
        }, schema=_schema(dim))
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def catalog(self) -> dict[str, StoredEntry]:
        """id -> newest entry (without vectors): what a rerun can reuse."""
        entries: dict[str, StoredEntry] = {}
        for shard in self.shards():
            has_space = "space" in pq.read_schema(shard).names
            cols = pq.read_table(shard, columns=KEY_COLUMNS + ["space"] * has_space).to_pydict()
            spaces = cols["space"] if has_space else [None] * len(cols["id"])
            for row, (doc_id, chash, model, space) in enumerate(
                    zip(cols["id"], cols["content_hash"], cols["model_id"], spaces,
                        strict=True)):
                entries[doc_id] = StoredEntry(chash, model, shard, row, space)
        return entries

    def vectors(self, wanted: dict[str, StoredEntry]) -> dict[str, np.ndarray]:
        """Vectors for the given catalog entries, one shard read per shard."""
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for doc_id, entry in wanted.items():
            by_shard.setdefault(entry.shard, []).append((doc_id, entry.row))
        out: dict[str, np.ndarray] = {}
        for shard, rows in by_shard.items():
            matrix = _embedding_matrix(pq.read_table(shard, columns=["embedding"]))
            for doc_id, row in rows:
                out[doc_id] = matrix[row]
        return out

    def rows(self, catalog: dict[str, StoredEntry] | None = None) -> Iterator[StoredRow]:
        """Every stored document, newest entry per id, in shard order."""
        catalog = self.catalog() if catalog is None else catalog
        for shard in self.shards():
            table = pq.read_table(shard)
            matrix = _embedding_matrix(table)
            extra = [c for c in ("embedding", "space") if c in table.column_names]
            cols = table.drop_columns(extra).to_pylist()
            keep = [row for row, values in enumerate(cols)
                    if (e := catalog.get(values["id"])) and e.shard == shard and e.row == row]
            hashes = [cols[row].pop("content_hash") for row in keep]
            fields = _FIELDS_LIST.validate_python([cols[row] for row in keep])
            for row, chash, f in zip(keep, hashes, fields, strict=True):
                yield StoredRow(f, chash, matrix[row])


def _embedding_matrix(table: pa.Table) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)
