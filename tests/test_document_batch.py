"""``DocumentBatch``: what it accepts, what it refuses, and how writers slice it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from clipsearch.documents import (
    NORM_TOLERANCE,
    DocumentBatch,
    DocumentFields,
    ImageDocument,
    invalid_vector_rows,
)
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest, VectorDimensionError

DIM = 8


def fields(i: int, **kw: object) -> DocumentFields:
    values: dict[str, object] = dict(id=f"t:{i}", captions=[f"caption {i}"], dataset="t",
                                     category="c", split="train", image_uri=f"/i/{i}.jpg",
                                     model_id="m")
    values.update(kw)
    return DocumentFields.model_validate(values)


def vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, dim)))


def batch(n: int, dim: int = DIM) -> DocumentBatch:
    return DocumentBatch([fields(i) for i in range(n)], vectors(n, dim))


# --- what it accepts --------------------------------------------------------------------------

def test_holds_a_read_only_float32_copy() -> None:
    source = vectors(3).astype(np.float64)
    b = DocumentBatch([fields(i) for i in range(3)], source)
    assert len(b) == 3 and b.dim == DIM and b.ids == ["t:0", "t:1", "t:2"]
    assert b.vectors.dtype == np.float32 and b.vectors.flags.c_contiguous
    with pytest.raises(ValueError):
        b.vectors[0, 0] = 1.0
    source[0] = 0.0  # the caller's array is not the batch's
    assert np.allclose(np.linalg.norm(b.vectors, axis=1), 1.0, atol=1e-6)
    assert b[1:].vectors.flags.writeable is False


def test_accepts_lists_and_the_norm_tolerance_of_image_document() -> None:
    v = vectors(1)[0].astype(np.float64)
    almost = (v * (1 + NORM_TOLERANCE / 2)).tolist()
    b = DocumentBatch([fields(0)], [almost])
    assert b.vectors.shape == (1, DIM)
    ImageDocument(**fields(0).model_dump(), embedding=almost)  # the same rule, one by one


def test_empty_batch() -> None:
    b = DocumentBatch([], np.zeros((0, DIM), np.float32))
    assert len(b) == 0 and b.dim == DIM and b.ids == [] and b.documents() == []


def test_documents_roundtrip() -> None:
    docs = [ImageDocument(**fields(i).model_dump(), embedding=v.tolist())
            for i, v in enumerate(vectors(3))]
    b = DocumentBatch.from_documents(docs, dim=DIM)
    back = b.documents()
    assert [d.model_dump(exclude={"embedding"}) for d in back] == [
        d.model_dump(exclude={"embedding"}) for d in docs]
    assert np.allclose([d.embedding for d in back], [d.embedding for d in docs], atol=1e-7)
    assert [f for f, _ in b.rows()] == docs


# --- what it refuses --------------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["nan", "inf", "zero", "long", "short"])
def test_refuses_a_vector_that_is_not_a_finite_unit_vector(broken: str) -> None:
    v = vectors(3)
    v[1] = {"nan": np.nan, "inf": np.inf, "zero": 0.0}.get(broken, v[1])
    if broken in ("long", "short"):
        v[1] *= 2.0 if broken == "long" else 0.5
    with pytest.raises(InvalidRequest, match=r"'t:1'.*not a finite unit vector") as err:
        DocumentBatch([fields(i) for i in range(3)], v)
    assert err.value.reason == "invalid_vector"
    assert invalid_vector_rows(v).tolist() == [False, True, False]


def test_a_single_nan_component_is_enough() -> None:
    v = vectors(2)
    v[0, 3] = np.nan
    with pytest.raises(InvalidRequest, match="'t:0'"):
        DocumentBatch([fields(0), fields(1)], v)


@pytest.mark.parametrize("shape", [(2, DIM), (3,), (3, DIM, 1), (3, 0)])
def test_refuses_a_matrix_that_does_not_fit_the_documents(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidRequest, match="matrix") as err:
        DocumentBatch([fields(i) for i in range(3)], np.ones(shape, np.float32))
    assert err.value.reason == "invalid_vector"


def test_refuses_ragged_or_non_numeric_vectors() -> None:
    with pytest.raises(InvalidRequest, match="matrix"):
        DocumentBatch([fields(0), fields(1)], [[1.0, 0.0], [1.0]])
    with pytest.raises(InvalidRequest, match="matrix"):
        DocumentBatch([fields(0)], [["a", "b"]])


def test_wrong_dimension() -> None:
    b = batch(2)
    b.check_dim(DIM)
    with pytest.raises(VectorDimensionError, match=f"{DIM}-d embeddings but the index stores "
                                                   f"{DIM * 2}-d"):
        b.check_dim(DIM * 2)
    good = ImageDocument(**fields(0).model_dump(), embedding=vectors(1)[0].tolist())
    bad = ImageDocument(**fields(1).model_dump(), embedding=vectors(1, DIM * 2)[0].tolist())
    with pytest.raises(VectorDimensionError, match=f"'t:1' has a {DIM * 2}-d embedding"):
        DocumentBatch.from_documents([good, bad], dim=DIM)
    with pytest.raises(VectorDimensionError):
        DocumentBatch.concat([b, batch(1, DIM * 2)])


@pytest.mark.parametrize("bad", [
    {"id": "t:bad id"}, {"id": ""}, {"id": "-t:1"}, {"id": "t:1\n"}, {"id": "x" * 300},
    {"dataset": "no;way"}, {"dataset": None}, {"category": "o'neil) OR (1=1"},
    {"split": "train\n"}, {"split": ""},
])
def test_refuses_ids_and_labels_outside_their_patterns(bad: dict[str, object]) -> None:
    """Fields made with ``model_construct`` skip pydantic; the batch checks them again."""
    values = {**fields(1).model_dump(), **bad}
    unchecked = DocumentFields.model_construct(**values)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="invalid") as err:
        DocumentBatch([fields(0), unchecked], vectors(2))
    assert err.value.reason == "invalid_document"
    with pytest.raises(InvalidRequest):  # usable() reports vectors, never fields
        DocumentBatch.usable([fields(0), unchecked], vectors(2))


def test_the_batch_patterns_are_the_pydantic_ones() -> None:
    for values in [{"id": "a" * 256}, {"id": "a:b.c_d@e+f~g-h"}, {"category": None},
                   {"split": "a b/c+d.e-f_g"}]:
        f = fields(0, **values)
        assert DocumentBatch([f], vectors(1)).fields == (f,)
    with pytest.raises(ValueError):
        fields(0, id="a" * 257)
    with pytest.raises(InvalidRequest):
        DocumentBatch([DocumentFields.model_construct(**{**fields(0).model_dump(),
                                                         "id": "a" * 257})], vectors(1))


def test_refuses_objects_that_are_not_fields() -> None:
    with pytest.raises(InvalidRequest, match="expected DocumentFields"):
        DocumentBatch([fields(0).model_dump()], vectors(1))  # type: ignore[list-item]


# --- duplicates, slices, joins ----------------------------------------------------------------

def test_duplicate_ids_keep_the_last_row() -> None:
    v = vectors(5)
    rows = [fields(1, captions=["first"]), fields(2), fields(1, captions=["second"]),
            fields(3), fields(2, captions=["two again"])]
    b = DocumentBatch(rows, v)
    assert len(b) == 5  # a batch keeps what it was given; writers dedupe
    unique = b.dedupe_last()
    assert unique.ids == ["t:1", "t:3", "t:2"]  # ordered by each id's last row
    assert [f.captions for f in unique.fields] == [["second"], ["caption 3"], ["two again"]]
    assert np.array_equal(unique.vectors, v[[2, 3, 4]].astype(np.float32))
    plain = batch(3)
    assert plain.dedupe_last() is plain


def test_usable_keeps_the_good_rows_and_names_the_others() -> None:
    v = vectors(4)
    v[1] = np.nan
    v[3] *= 3
    good, rejected = DocumentBatch.usable([fields(i) for i in range(4)], v)
    assert rejected == [1, 3]
    assert good.ids == ["t:0", "t:2"]
    assert np.array_equal(good.vectors, v[[0, 2]])
    everything, none = DocumentBatch.usable([fields(0)], vectors(1))
    assert none == [] and everything.ids == ["t:0"]


def test_slices_and_concat() -> None:
    b = batch(5)
    assert b[1:3].ids == ["t:1", "t:2"]
    assert np.array_equal(b[1:3].vectors, b.vectors[1:3])
    joined = DocumentBatch.concat([b[:2], b[2:2], b[2:]])
    assert joined.ids == b.ids and np.array_equal(joined.vectors, b.vectors)
    assert DocumentBatch.concat([b]) is b
    with pytest.raises(TypeError):
        b[0]  # type: ignore[index]
    with pytest.raises(ValueError):
        DocumentBatch.concat([])
    assert "5 documents" in repr(b)


# --- caption cleaning (DocumentFields) --------------------------------------------------------

def test_caption_cleaning_equals_the_regex_definition() -> None:
    """Runs of whitespace become one space, ends are trimmed, empty captions dropped: the
    fast ``str.split`` form must agree with ``\\s+`` for every whitespace character."""
    spaces = [chr(c) for c in range(0x110000) if re.fullmatch(r"\s", chr(c))]
    ws = "".join(spaces)
    raw = [f"{ws}a{ws}{ws}b {ws}", ws, f"x{ws}y", "plain words"]
    raw += [f"{s}p{s}{s}q{s}" for s in spaces] + [f"p{s}q" for s in spaces] + spaces
    got = fields(0, captions=raw).captions
    expected = [c for c in (re.sub(r"\s+", " ", r).strip() for r in raw) if c]
    assert got == expected
    assert got[:3] == ["a b", "x y", "plain words"] and len(got) == 3 + 2 * len(spaces)
