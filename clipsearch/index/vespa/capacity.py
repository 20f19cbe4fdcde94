"""``clipsearch vespa capacity``: memory, disk and content nodes for N images, from Vespa's
sizing guidance. An ESTIMATE to plan with, not a measurement: check it against the content
nodes' ``memory_usage`` metrics after feeding a sample.

Sources (vespa-engine/documentation):

* ``en/content/attributes.html`` "Sizing": resize overhead factor ROF = 6/5; enum index width
  EIW = 4 B, posting entry PW = 4 B (single value), posting index PIW = 4 B; a single-value
  string with fast-search costs ``D*EIW*ROF + U*(FW+VW+4+EIW+PIW)*ROF + D*PW*ROF`` (FW = 1 B
  for strings, VW = its length, U = unique values), without fast-search
  ``D*EIW*ROF + U*(FW+VW+4+EIW)*ROF``; the document meta store "approximately 30 bytes per
  document"; attribute disk "a conservative rule of thumb ... is twice the data size".
* ``en/querying/approximate-nn-hnsw.md``: tensor cells float 4 B, bfloat16 2 B, int8 1 B
  (also packed binary: 1 bit per dimension); HNSW graph and vectors are in memory.
* ``en/rag/binarizing-vectors.html`` and ``en/content/attributes.html`` (paged): the binarised
  mode keeps the full vectors for the re-rank as a paged attribute, on disk and read through
  the page cache, plus in the document store; with ``paged`` off they stay in memory.
* HNSW links: level 0 holds up to ``2 * max-links-per-node`` neighbours, level l > 0 up to
  ``max-links-per-node``, a node reaches level l with probability ``M^-l`` (the HNSW paper's
  layout, as Vespa configures it), 4 B per link (a local document id), times ROF:
  ``(2M + M/(M-1)) * 4 * 6/5`` B per vector (M = 16: 159 B).
* ``en/reference/applications/services/content.html``: feeding blocks at 0.8 of memory and
  disk (cluster controller ``resource-limits``); self-managed ``searchable-copies`` defaults to
  2 (or the number of groups if higher, or 1 with redundancy 1): only searchable copies hold
  attributes and HNSW in memory, the others keep the meta store.

Node count: enough nodes that the memory stays below the feed-block limit with ONE node down
(its documents move to the others), at least ``redundancy`` nodes, a multiple of ``groups``.
Query capacity is not modelled: each group answers every query, so measure one group's QPS
and pass ``--group-qps``.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

GIB = 1024**3
ROF = 6 / 5
EIW = PW = PIW = 4
META_STORE = 30
FEED_BLOCK = 0.8
# encoder anchors (images/s) for the GPU-hours: clip-retrieval's README ("1500 sample/s on a
# 3080", ViT-B/32), and this project's CPU figure (README "Performance": eager fp32 ViT-B/32,
# 7.6-9.3 images/s on one core of this 2-core machine)
RTX3080_IMAGES_PER_S = 1500.0
THIS_CPU_IMAGES_PER_S = 2 * 8.5


class CellType(StrEnum):
    FLOAT = "float"
    BFLOAT16 = "bfloat16"
    INT8 = "int8"
    BINARY = "binary"  # int8 cells packing 8 dimensions (hamming HNSW); full vectors re-rank

    def bytes_for(self, dim: int) -> float:
        return {"float": 4.0 * dim, "bfloat16": 2.0 * dim, "int8": 1.0 * dim,
                "binary": math.ceil(dim / 8)}[self.value]


class CapacityInput(BaseModel):
    docs: int = Field(ge=1)
    dim: int = Field(512, ge=2, le=8192)
    cell_type: CellType = CellType.FLOAT
    rerank_cell_type: CellType = Field(CellType.FLOAT, description="binary: cell type of the "
                                       "full vectors kept for the re-rank (float/bfloat16)")
    paged: bool = Field(True, description="binary: the full vectors are a paged attribute "
                        "(on disk) rather than in memory")
    redundancy: int = Field(2, ge=1, le=16)
    groups: int = Field(1, ge=1, le=64)
    max_links: int = Field(16, ge=2, le=256, description="HNSW max-links-per-node")
    id_bytes: int = Field(24, ge=1, description="average document id length")
    caption_bytes: int = Field(300, ge=0, description="average joined captions length")
    node_overhead_gb: float = Field(3.0, ge=0, description="OS + Vespa processes per node")
    qps: float | None = Field(None, gt=0)
    group_qps: float | None = Field(None, gt=0, description="measured QPS of one group")

    @model_validator(mode="after")
    def _rerank_cells(self) -> CapacityInput:
        if self.rerank_cell_type not in (CellType.FLOAT, CellType.BFLOAT16):
            raise ValueError("the full vectors of the binarised mode are float or bfloat16")
        return self

    @model_validator(mode="after")
    def _copies_per_group(self) -> CapacityInput:
        if self.redundancy % self.groups:
            raise ValueError(f"redundancy {self.redundancy} must be a multiple of groups "
                             f"{self.groups} (each group holds the same number of copies)")
        return self


class NodeSize(BaseModel):
    memory_gb: int
    nodes: int
    memory_per_node_gb: float
    disk_per_node_gb: float


class CapacityEstimate(BaseModel):
    vector_bytes: float
    paged_vector_bytes: float = Field(0.0, description="binary + paged: the full vector, on "
                                      "disk per document copy (not in memory)")
    hnsw_bytes: float
    attribute_bytes: float
    memory_per_doc_copy: float
    searchable_copies: int
    memory_total_gb: float
    disk_per_doc_copy: float
    disk_total_gb: float
    encoder_gpu_hours_3080: float
    encoder_cpu_hours_here: float
    groups_for_qps: int | None
    nodes: list[NodeSize]


def hnsw_bytes(max_links: int) -> float:
    """Links of one vector over all levels, with the resize overhead."""
    return (2 * max_links + max_links / (max_links - 1)) * 4 * ROF


def searchable_copies(redundancy: int, groups: int) -> int:
    if redundancy == 1:
        return 1
    return min(redundancy, max(2, groups))


def estimate(inp: CapacityInput,
             node_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)) -> CapacityEstimate:
    vector = inp.cell_type.bytes_for(inp.dim)
    full = inp.rerank_cell_type.bytes_for(inp.dim) if inp.cell_type is CellType.BINARY else 0.0
    paged = full if inp.paged else 0.0
    if not inp.paged:  # the full vectors live in memory beside the bits
        vector += full
    stored = full or vector  # what the document store keeps of the vector
    hnsw = hnsw_bytes(inp.max_links)
    # id: unique strings with fast-search; dataset/category/split: few unique values with
    # fast-search (U ~ 0); model_id: a plain string attribute with few values
    id_attr = (EIW + (1 + inp.id_bytes + 4 + EIW + PIW) + PW) * ROF
    labels = 3 * (EIW + PW) * ROF
    model_id = EIW * ROF
    attributes = id_attr + labels + model_id
    per_copy = vector + hnsw + attributes + META_STORE
    ready = searchable_copies(inp.redundancy, inp.groups)
    memory = inp.docs * (ready * per_copy + (inp.redundancy - ready) * META_STORE)
    # disk per copy: the document store keeps the whole document (vector + text + fields),
    # flushed attributes twice their size, the caption's disk index about the text's size
    text = 2 * inp.caption_bytes + inp.id_bytes + 150
    disk_copy = ((stored + text) + 2 * (vector + paged + hnsw + attributes + META_STORE)
                 + inp.caption_bytes)
    disk = inp.docs * inp.redundancy * disk_copy
    sizes = []
    for gb in node_sizes:
        usable = gb * FEED_BLOCK - inp.node_overhead_gb
        if usable <= 0:
            continue
        need = math.ceil(memory / GIB / usable)
        nodes = max(need + (1 if inp.redundancy > 1 else 0), inp.redundancy)
        nodes = math.ceil(nodes / inp.groups) * inp.groups
        sizes.append(NodeSize(memory_gb=gb, nodes=nodes,
                              memory_per_node_gb=round(memory / GIB / nodes, 2),
                              disk_per_node_gb=round(disk / GIB / nodes / FEED_BLOCK, 1)))
    groups = (math.ceil(inp.qps / inp.group_qps) if inp.qps and inp.group_qps else None)
    return CapacityEstimate(
        vector_bytes=vector, paged_vector_bytes=paged, hnsw_bytes=round(hnsw, 1),
        attribute_bytes=round(attributes, 1),
        memory_per_doc_copy=round(per_copy, 1), searchable_copies=ready,
        memory_total_gb=round(memory / GIB, 2), disk_per_doc_copy=round(disk_copy, 1),
        disk_total_gb=round(disk / GIB, 1),
        encoder_gpu_hours_3080=round(inp.docs / RTX3080_IMAGES_PER_S / 3600, 2),
        encoder_cpu_hours_here=round(inp.docs / THIS_CPU_IMAGES_PER_S / 3600, 1),
        groups_for_qps=groups, nodes=sizes)


def report(inp: CapacityInput, est: CapacityEstimate) -> str:
    lines = [
        f"{inp.docs:,} images, {inp.dim}-d {inp.cell_type.value} vectors, redundancy "
        f"{inp.redundancy} ({est.searchable_copies} searchable), {inp.groups} group(s), "
        f"HNSW max-links-per-node {inp.max_links}",
        f"per document and searchable copy: vector {est.vector_bytes:.0f} B + HNSW links "
        f"{est.hnsw_bytes:.0f} B + attributes {est.attribute_bytes:.0f} B + meta store "
        f"{META_STORE} B = {est.memory_per_doc_copy:.0f} B"
        + (f"; the full {inp.rerank_cell_type.value} vectors for the re-rank "
           f"({est.paged_vector_bytes:.0f} B) are paged: on disk, read through the page cache"
           if est.paged_vector_bytes else ""),
        f"memory, all copies: {est.memory_total_gb:,.2f} GiB; disk, all copies: "
        f"{est.disk_total_gb:,.1f} GiB ({est.disk_per_doc_copy:.0f} B per document copy)",
        "content nodes (memory below the 0.8 feed-block limit with one node down; "
        f"{inp.node_overhead_gb:g} GB per node for the OS and Vespa):",
        "  node memory   nodes   memory/node   disk/node (at 0.8 full)",
    ]
    for s in est.nodes:
        lines.append(f"  {s.memory_gb:>6} GB   {s.nodes:>6}   {s.memory_per_node_gb:>8.2f} GiB"
                     f"   {s.disk_per_node_gb:>8.1f} GiB")
    lines.append(f"encoding the images: {est.encoder_gpu_hours_3080:,.2f} GPU-hours on an RTX "
                 f"3080 ({RTX3080_IMAGES_PER_S:.0f} images/s, clip-retrieval's figure), "
                 f"{est.encoder_cpu_hours_here:,.1f} hours on this 2-core CPU "
                 f"(~{THIS_CPU_IMAGES_PER_S:.0f} images/s)")
    if est.groups_for_qps is not None:
        lines.append(f"queries: {inp.qps:g} QPS at {inp.group_qps:g} QPS per group -> "
                     f"{est.groups_for_qps} group(s) (each holds a full copy)")
    elif inp.qps is not None:
        lines.append("queries: every group answers each query; measure one group's QPS "
                     "(bench/load.py against Vespa) and pass --group-qps")
    lines.append("An estimate from Vespa's sizing guidance (see clipsearch/index/vespa/"
                 "capacity.py), not a measurement.")
    return "\n".join(lines)
