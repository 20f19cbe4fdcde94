"""What to feed and how: the options of ``clipsearch feed``.

A ``BaseSettings`` so that unspecified options come from ``CLIPSEARCH_FEED_*`` variables
(e.g. ``CLIPSEARCH_FEED_WORKERS=2``), then from the defaults below.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clipsearch.datasets.readers import SourceFormat
from clipsearch.settings import Settings
from feeder.shards import Shard


class FeedRequest(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPSEARCH_FEED_", env_file=None,
                                      extra="forbid")

    source: Path | None = Field(None, description="dataset folder, manifest or captions JSON")
    format: SourceFormat = SourceFormat.auto
    dataset: str | None = Field(None, description="dataset label (default: from the source)")
    images_dir: Path | None = Field(None, description="Karpathy formats: the image folder")
    classes_dir: Path | None = Field(None, description="RSICD: the txtclasses folder")
    split: str | None = Field(None, description="feed only this split")
    limit: int | None = Field(None, ge=1, description="feed only the first N rows")
    from_embeddings: Path | None = Field(None, description="feed precomputed shards, no model")
    model_id: str | None = Field(None, description="with from_embeddings: which model's rows")
    embeddings_dir: Path | None = Field(None, description="shard folder (default: data_dir)")
    reencode: bool = Field(False, description="encode again even if shards have the image")
    dead_letter: Path | None = Field(None, description="dead-letter JSONL (default: data_dir)")
    workers: int = Field(
        0, ge=0, le=64,
        description="0 (default): the feeder's own model in this process with every core as "
        "threads, decoding a batch ahead (as fast as N processes in interleaved runs on 2 "
        "cores, less than half their memory: README); N >= 1: N encoder processes of one "
        "thread each (decode, preprocess, embed). On a GPU: decoding processes (0: the cores)")
    inflight: int = Field(4, ge=1, le=64, description="remote encoder: requests in flight")
    batch_size: int = Field(32, ge=1, le=4096, description="images per encoder call")
    window: int = Field(4096, ge=1, le=1_000_000, description="rows whose embedding the "
                        "shards hold, read ahead at most before they are fed: the source is "
                        "read as the encoder needs it, so a feed's memory does not grow with "
                        "the source (feeder/source_stream.py)")
    mmap_threshold: int = Field(256 * 1024, ge=0, description="bytes: larger blocks get "
                                "their own mapping, returned when freed, so a long feed's "
                                "heap does not fragment (feeder/heap.py); 0: glibc's default")
    feed_batch_size: int = Field(256, ge=1, le=10_000, description="documents per upsert")
    shard_docs: int = Field(256, ge=1, description="write a shard every N encoded images")
    shard_seconds: float = Field(30.0, gt=0, description="... or every T seconds")
    retries: int = Field(4, ge=0, le=20, description="index write retries per batch")
    retry_base_s: float = Field(0.5, ge=0, description="first backoff; doubles each retry")
    max_failed_batches: int = Field(3, ge=1, description="consecutive failed writes: abort")
    progress: bool = True
    wait: bool = Field(False, description="another writer holds the index: wait for it "
                       "(default: stop with an error naming it)")
    shard: str | None = Field(None, description="k/n: feed only the documents of shard k "
                              "of n (sha1 of the id), so n feeders split one collection")

    @model_validator(mode="after")
    def _one_source(self) -> FeedRequest:
        if (self.source is None) == (self.from_embeddings is None):
            raise ValueError("give exactly one of a source and from_embeddings")
        return self

    @field_validator("shard")
    @classmethod
    def _shard_spec(cls, value: str | None) -> str | None:
        """``k/n`` with 0 <= k < n <= 9999, checked here so the message names the rule."""
        if value is None:
            return None
        try:
            return str(Shard.parse(value))
        except ValueError:  # a malformed spec, or k/n out of range (a ValidationError)
            raise ValueError("must be k/n with 0 <= k < n <= 9999, e.g. 0/3") from None

    def shard_spec(self) -> Shard | None:
        return Shard.parse(self.shard) if self.shard else None

    def shard_dir(self, settings: Settings) -> Path:
        return self.embeddings_dir or settings.data_dir / "embeddings"
