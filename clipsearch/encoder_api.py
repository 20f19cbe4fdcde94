"""The encoder service's HTTP contract, shared by the service and its client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TextEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="Texts to embed (limit: settings)")


class ImageEmbedRequest(BaseModel):
    """JSON alternative to the multipart upload: images as base64 strings."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(min_length=1, description="Base64-encoded image files")


class EmbedResponse(BaseModel):
    model: str
    dim: int
    embeddings: list[list[float]]
    space: str | None = Field(None, description="Embedding space id of the vectors (absent "
                              "from older encoders): lets a client notice a swapped model")


class EncoderInfo(BaseModel):
    model: str
    dim: int
    runtime: str = "torch"
    dtype: str = "float32"
    device: str = "cpu"
    max_text_tokens: int = 77
    image_size: int = 224
    space: str | None = Field(None, description="Embedding space id (clipsearch.models."
                              "identity); the gateway refuses vector search in another space")
    fingerprint: str | None = Field(None, description="Fingerprint of the model's weights")
