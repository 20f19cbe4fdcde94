"""Settings shared by every component, read from ``CLIPSEARCH_*`` environment variables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Backend(StrEnum):
    embedded = "embedded"
    vespa = "vespa"


class Settings(BaseSettings):
    """One settings object for all services; each reads what it needs.

    Build it with ``Settings()`` (environment) or ``Settings(**overrides)`` in tests.
    There is no module-level instance: the CLI and the app factories create one.
    """

    model_config = SettingsConfigDict(env_prefix="CLIPSEARCH_", env_file=None, extra="ignore")

    # --- index ---
    backend: Backend = Backend.embedded
    data_dir: Path = Path("data")
    table: str = Field("images", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    embedding_dim: int = Field(512, ge=2, le=4096)
    hnsw_ef: int = Field(300, ge=10, le=5000, description="HNSW search list size (embedded ANN)")
    vector_index_min_rows: int = Field(
        50_000, ge=256, description="Build an ANN index once the table has this many rows"
    )
    lancedb_metadata_cache_mb: int = Field(
        64, ge=1, le=65_536,
        description="Embedded engine: cap on LanceDB's cache of table metadata (manifests of "
        "table versions); uncapped it grows with the square of the writes of a long feed",
    )
    candidates: int = Field(
        100, ge=10, le=2000, description="Per-leg candidates (targetHits) before fusion"
    )

    # --- vespa ---
    vespa_url: str = "http://localhost:8080"
    vespa_config_url: str = "http://localhost:19071"
    vespa_namespace: str = Field("clipsearch", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    vespa_timeout_s: float = Field(5.0, gt=0, le=120)
    vespa_feed_concurrency: int = Field(16, ge=1, le=512)
    vespa_language: str = Field(
        "en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$",
        description="Language of the captions and queries (set_language in the schema, "
        "model.locale on queries): Vespa detects it otherwise, per caption and per query")
    vespa_cell_type: Literal["float", "bfloat16"] = Field(
        "float", description="Cell type of the embedding field in the generated package: "
        "bfloat16 halves the vectors' memory (clipsearch vespa package --cell-type)")
    vespa_vector_index: Literal["float", "binarized"] = Field(
        "float", description="float: HNSW on the vector field. binarized: HNSW on an int8 "
        "field of its sign bits (hamming) for the first phase, the full vector (paged, any "
        "cell type) re-ranked in the second phase (clipsearch vespa package --vector-index)")
    vespa_binarized_candidates: int = Field(
        800, ge=10, le=10_000, description="binarized: hamming candidates per query and "
        "content node (targetHits), all re-ranked by the full vectors (ranking.rerankCount); "
        "raise it with the documents per node (README: recall@10 per depth)")
    vespa_binarized_paged: bool = Field(
        True, description="binarized: page the full vectors out of memory (attribute: "
        "paged); they are read only for re-ranked and returned hits")
    vespa_catalog_ttl_s: float = Field(
        1.0, ge=0, le=300, description="Index generations on Vespa: how long a process keeps "
        "the catalog (the active generation) before reading it again; a running API follows "
        "`clipsearch activate` within this time")
    vespa_deploy_generations: bool = Field(
        False, description="Index generations on Vespa: `clipsearch reindex` deploys the "
        "single-node package with the new generation's field itself (via "
        "CLIPSEARCH_VESPA_CONFIG_URL); false: it says which commands add the field")

    # --- model / encoder ---
    model: str = "openai/clip-vit-base-patch32"
    model_revision: str | None = None
    device: str = "cpu"
    encoder_url: str = Field("", description="Empty: encode in-process. Else the encoder's URL")
    encoder_timeout_s: float = Field(30.0, gt=0)
    encoder_connect_timeout_s: float = Field(1.0, gt=0, le=60,
                                             description="TCP connect timeout to the encoder")
    encoder_breaker_failures: int = Field(
        3, ge=1, le=1000, description="Consecutive encoder failures that open the circuit "
        "breaker (requests then fail fast with 503 until a probe succeeds)")
    encoder_breaker_cooldown_s: float = Field(5.0, gt=0, le=600,
                                              description="Open-breaker time before a probe")
    ready_timeout_s: float = Field(1.5, gt=0, le=30,
                                   description="/ready: the most each dependency check may take")
    max_request_pixels: int = Field(
        256_000_000, ge=1024, description="Pixel budget of all images in one request (from "
        "their headers, before decoding)")
    decode_pixel_budget: int = Field(
        128_000_000, ge=1024, description="Pixels of large images decoded at once per process "
        "(images up to small_image_pixels skip this queue)")
    small_image_pixels: int = Field(4_000_000, ge=1, description="Images this small are "
                                    "decoded without waiting for large ones")
    torch_threads: int = Field(1, ge=1, le=256)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(64_000_000, ge=1024)
    max_texts_per_request: int = Field(256, ge=1)
    max_images_per_request: int = Field(64, ge=1)
    runtime: str = Field(
        "auto", pattern=r"^(auto|torch|torch-bf16|torch-fp16|onnx|onnx-int8)$",
        description="Encoder inference runtime; auto = fastest within cos >= 0.999 of fp32",
    )
    auto_int8: bool = Field(
        False, description="Opt-in: runtime auto also tries onnx-int8 (dynamic quantisation) "
        "and picks it only if it is fastest and within cos >= 0.999 of fp32 on the check batch")
    feed_auto_int8: bool = Field(
        True, description="The feeder's auto also tries onnx-int8, held to cos >= 0.999 of fp32 "
        "on the check batch AND on the feed's own first images (false: fp32 runtimes only)")
    encoder_batch_wait_ms: float = Field(2.0, ge=0, le=1000,
                                         description="Micro-batching: wait for more requests")
    encoder_batch_max_items: int = Field(64, ge=1, le=4096)

    # --- services ---
    host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    encoder_port: int = Field(8001, ge=1, le=65535)
    api_key: str | None = None
    prompt_templates: dict[str, str] = Field(
        default_factory=dict,
        description='Per-dataset prompt for the vector leg, e.g. {"rsicd": "an aerial '
        'photograph of {q}"}; key "*" applies to every dataset without its own',
    )
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("vespa_url", "vespa_config_url", "encoder_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("prompt_templates")
    @classmethod
    def _templates_have_q(cls, v: dict[str, str]) -> dict[str, str]:
        for key, template in v.items():
            if template.count("{q}") != 1:
                raise ValueError(f"prompt template for {key!r} must contain {{q}} exactly once")
        return v

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
