"""ClipEncoder on the tiny model: same vectors as plain transformers, unit length, float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from clipsearch.embedder import Embedder
from clipsearch.errors import ImageTooLarge, InvalidImage
from clipsearch.models.loading import ModelLoadError
from clipsearch.models.local import LocalEmbedder
from clipsearch.models.model import ClipEncoder
from clipsearch.models.runtimes.torch_runtime import features
from clipsearch.settings import Settings
from tests import encoder_images as zoo

TEXTS = ["a photo of a cat", "an aerial view of a large airport with many planes parked "
         "next to the terminal buildings", "", "river", "Dense Residential AREA!"]
LIMITS = {"max_bytes": 1 << 20, "max_pixels": 10_000_000}


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir))


@pytest.fixture(scope="module")
def reference(tiny_clip_dir: Path) -> CLIPModel:
    return CLIPModel.from_pretrained(tiny_clip_dir).eval()


def _unit(t: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(t, dim=-1).detach().numpy()


def test_properties(encoder: ClipEncoder, tiny_clip_dir: Path) -> None:
    assert encoder.model_id == str(tiny_clip_dir)
    assert encoder.dim == 512 and encoder.max_text_tokens == 77
    assert encoder.preprocess_spec.crop_hw == (224, 224)
    assert encoder.runtime.name == "torch" and encoder.runtime.dtype == "float32"


def test_text_equals_transformers(encoder: ClipEncoder, reference: CLIPModel,
                                  tiny_clip_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_clip_dir)
    batch = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = _unit(features(reference.get_text_features(**batch)))
    emb = encoder.embed_texts(TEXTS)
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (len(TEXTS), 512)
    assert emb.model_id == encoder.model_id
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(emb.vectors * expected, axis=1) > 0.9999)


def test_dynamic_padding_equals_padding_to_77(encoder: ClipEncoder) -> None:
    ids = encoder.tokenize(TEXTS)
    dynamic = encoder.embed_texts(TEXTS).vectors
    padded = encoder.embed_token_batch(encoder.pad(ids, length=77))
    padded /= np.linalg.norm(padded, axis=1, keepdims=True)
    assert np.all(np.sum(dynamic * padded, axis=1) > 0.9999)
    one_by_one = np.vstack([encoder.embed_texts([t]).vectors for t in TEXTS])
    assert np.all(np.sum(dynamic * one_by_one, axis=1) > 0.9999)  # order is kept


def test_long_text_is_truncated_at_77_tokens(encoder: ClipEncoder) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    ids = encoder.tokenize([words])[0]
    assert len(ids) == 77
    assert encoder.embed_texts([words]).vectors.shape == (1, 512)
    assert encoder.embed_texts([]).vectors.shape == (0, 512)
    huge = words + " tail" * 500_000  # 2.5 MB: cut before tokenizing, same embedding
    assert np.allclose(encoder.embed_texts([huge]).vectors, encoder.embed_texts([words]).vectors,
                       atol=1e-6)


def test_images_equal_transformers(encoder: ClipEncoder, reference: CLIPModel,
                                   tiny_clip_dir: Path) -> None:
    datas = [zoo.jpeg(320, 200, seed=1), zoo.png(64, 64, seed=2), zoo.png(30, 90, seed=3)]
    proc = AutoImageProcessor.from_pretrained(tiny_clip_dir)
    from clipsearch.models.images import decode_image

    images = [decode_image(d, **LIMITS) for d in datas]
    pixels = torch.from_numpy(proc(images=images, return_tensors="np")["pixel_values"])
    with torch.no_grad():
        expected = _unit(features(reference.get_image_features(pixel_values=pixels)))
    emb = encoder.embed_images(datas, **LIMITS)
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(emb.vectors * expected, axis=1) > 0.9999)


def test_bad_image_named_by_position(encoder: ClipEncoder) -> None:
    with pytest.raises(InvalidImage, match=r"^image 1: .*truncated or corrupt"):
        encoder.embed_images([zoo.png(), zoo.jpeg(128, 128)[:6000]], **LIMITS)
    with pytest.raises(ImageTooLarge, match=r"^image 0: "):
        encoder.embed_images([zoo.png_bomb_header(9000, 9000)], **LIMITS)


def test_pixels_shape_checked(encoder: ClipEncoder) -> None:
    with pytest.raises(ValueError, match="shape"):
        encoder.embed_pixels(np.zeros((2, 224, 224), dtype=np.float32))


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        ClipEncoder.load(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="not a loadable CLIP checkpoint"):
        ClipEncoder.load(str(tmp_path))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        ClipEncoder.load("nobody-here/no-such-clip")


async def test_local_embedder(encoder: ClipEncoder) -> None:
    emb = LocalEmbedder(encoder, Settings(max_image_bytes=4096))
    assert isinstance(emb, Embedder)
    assert emb.model_id == encoder.model_id and emb.dim == 512
    texts = await emb.embed_texts(["a river"])
    assert np.allclose(texts.vectors, encoder.embed_texts(["a river"]).vectors)
    images = await emb.embed_images([zoo.png(32, 32)])
    assert images.vectors.shape == (1, 512)
    with pytest.raises(ImageTooLarge):
        await emb.embed_images([zoo.png(200, 200)])  # over 4096 bytes
    await emb.ping()
    await emb.close()
