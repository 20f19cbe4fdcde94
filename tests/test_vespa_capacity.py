"""``clipsearch vespa capacity`` (issue 17 item 11): the estimate follows the documented sizing
formulas (checked by hand here), scales linearly, halves the vectors with bfloat16, and the
node counts respect the feed-block limit with one node down."""

from __future__ import annotations

import argparse
import math

import pytest
from pydantic import ValidationError

from clipsearch.index.vespa.capacity import (
    FEED_BLOCK,
    GIB,
    CapacityInput,
    CellType,
    estimate,
    hnsw_bytes,
    report,
    searchable_copies,
)
from clipsearch.index.vespa.commands import register


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_per_document_figures_by_hand() -> None:
    est = estimate(CapacityInput(docs=1_000_000))
    assert est.vector_bytes == 512 * 4
    # HNSW: (2 * 16 level-0 links + 16/15 above) * 4 B * 6/5
    assert hnsw_bytes(16) == pytest.approx((32 + 16 / 15) * 4 * 1.2)
    # id fast-search string (24 chars): (EIW + (1 + 24 + 4 + EIW + PIW) + PW) * ROF = 54 B,
    # 3 labels (EIW + PW) * ROF = 28.8 B, model_id EIW * ROF = 4.8 B
    assert est.attribute_bytes == pytest.approx(54 + 28.8 + 4.8)
    assert est.memory_per_doc_copy == pytest.approx(2048 + 158.7 + 87.6 + 30, abs=0.2)
    assert est.searchable_copies == 2
    assert est.memory_total_gb == pytest.approx(2 * 1e6 * est.memory_per_doc_copy / GIB,
                                                abs=0.01)


def test_scaling_and_cell_types() -> None:
    small = estimate(CapacityInput(docs=1_000_000))
    big = estimate(CapacityInput(docs=10_000_000))
    assert big.memory_total_gb == pytest.approx(10 * small.memory_total_gb, rel=1e-3)
    half = estimate(CapacityInput(docs=1_000_000, cell_type=CellType.BFLOAT16))
    assert half.vector_bytes == small.vector_bytes / 2
    assert estimate(CapacityInput(docs=1, cell_type=CellType.BINARY)).vector_bytes == 64
    assert estimate(CapacityInput(docs=1, cell_type=CellType.INT8, dim=768)).vector_bytes == 768


def test_copies() -> None:
    assert searchable_copies(1, 1) == 1
    assert searchable_copies(3, 1) == 2  # the third copy keeps only the meta store in memory
    assert searchable_copies(3, 3) == 3
    one = estimate(CapacityInput(docs=1_000_000, redundancy=1))
    three = estimate(CapacityInput(docs=1_000_000, redundancy=3))
    assert three.memory_total_gb == pytest.approx(
        2 * one.memory_total_gb + 1e6 * 30 / GIB, abs=0.02)
    assert three.disk_total_gb == pytest.approx(3 * one.disk_total_gb, abs=0.2)
    with pytest.raises(ValidationError, match="multiple of groups"):
        CapacityInput(docs=1, redundancy=3, groups=2)


@pytest.mark.parametrize("docs", [200_000, 10_000_000, 100_000_000])
def test_node_counts_leave_room_for_a_failed_node(docs: int) -> None:
    inp = CapacityInput(docs=docs, groups=2)
    est = estimate(inp)
    total = est.memory_total_gb
    for size in est.nodes:
        usable = size.memory_gb * FEED_BLOCK - inp.node_overhead_gb
        assert size.nodes % 2 == 0 and size.nodes >= inp.redundancy
        assert total / (size.nodes - 1) <= usable + 1e-9  # still below the limit, one down
    bigger = [s.nodes for s in est.nodes]
    assert bigger == sorted(bigger, reverse=True)  # bigger nodes, fewer of them


def test_encoder_hours_and_qps(capsys: pytest.CaptureFixture[str]) -> None:
    est = estimate(CapacityInput(docs=100_000_000, qps=500, group_qps=120))
    assert est.encoder_gpu_hours_3080 == pytest.approx(1e8 / 1500 / 3600, abs=0.01)
    assert est.groups_for_qps == math.ceil(500 / 120)
    assert run_cli("vespa", "capacity", "--docs", "10000000", "--cell-type", "bfloat16",
                   "--qps", "300") == 0
    out = capsys.readouterr().out
    assert "10,000,000 images, 512-d bfloat16" in out and "pass --group-qps" in out
    assert "RTX 3080" in out and "not a measurement" in out
    with pytest.raises(SystemExit, match="multiple of groups"):
        run_cli("vespa", "capacity", "--docs", "5", "--redundancy", "3", "--groups", "2")


def test_binarised_mode_counts_the_full_vectors_it_reranks_with() -> None:
    """Bits (64 B at 512-d) and HNSW in memory; the full vectors paged to disk (and in the
    document store), or in memory with --in-memory."""
    floats = estimate(CapacityInput(docs=1_000_000))
    paged = estimate(CapacityInput(docs=1_000_000, cell_type=CellType.BINARY))
    assert (paged.vector_bytes, paged.paged_vector_bytes) == (64, 2048)
    assert paged.memory_per_doc_copy == pytest.approx(
        floats.memory_per_doc_copy - 2048 + 64, abs=0.2)
    assert paged.disk_per_doc_copy > floats.disk_per_doc_copy  # bits + paged full vectors
    in_memory = estimate(CapacityInput(docs=1_000_000, cell_type=CellType.BINARY, paged=False))
    assert in_memory.vector_bytes == 64 + 2048 and in_memory.paged_vector_bytes == 0
    half = estimate(CapacityInput(docs=1_000_000, cell_type=CellType.BINARY,
                                  rerank_cell_type=CellType.BFLOAT16))
    assert half.paged_vector_bytes == 1024
    assert "paged: on disk" in report(CapacityInput(docs=10, cell_type=CellType.BINARY), paged)
    with pytest.raises(ValueError, match="float or bfloat16"):
        CapacityInput(docs=1, cell_type=CellType.BINARY, rerank_cell_type=CellType.INT8)
