"""Small datasets in each format the feeder reads, bad rows included, made on the fly.

Every builder returns the expected outcome (which ids are good, which are skipped and why) so
tests can compare the index with the source exactly.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.errors import InvalidImage
from clipsearch.index import open_index
from clipsearch.settings import Settings
from feeder.request import FeedRequest

# Settings for feeder tests: a bomb is anything above this many pixels.
MAX_PIXELS = 100 * 100
BOMB_SIZE = (160, 160)


class Expected(BaseModel):
    source: Path
    good: list[str] = Field(description="doc ids that must end up in the index")
    skipped: dict[str, str] = Field(default_factory=dict, description="doc id -> reason")
    rows: int = Field(0, description="rows the feeder reads (read count)")


def image_bytes(seed: int, *, size: tuple[int, int] = (48, 48), fmt: str = "PNG",
                mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size=(size[1], size[0]), dtype=np.uint16))
    else:
        rgb = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, **kw))  # type: ignore[arg-type]
    return path


def truncated_jpeg(seed: int) -> bytes:
    data = image_bytes(seed, size=(64, 64), fmt="JPEG")
    return data[: len(data) // 3]


def make_generic(root: Path, *, n_good: int = 8, csv: bool = False) -> Expected:
    """Generic manifest with: good rows (RGB, RGBA, CMYK-JPEG, 16-bit), a missing file, a
    truncated JPEG, garbage bytes, a pixel bomb, an empty caption (repaired: indexed), a
    duplicate id, a non-UTF-8 caption line and a line that is not JSON."""
    images = root / "images"
    rows: list[dict[str, object]] = []
    good: list[str] = []
    modes = [("RGB", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")]
    for i in range(n_good):
        mode, fmt = modes[i % len(modes)]
        name = f"good_{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        write_image(images / name, i, mode=mode, fmt=fmt)
        rows.append({"id": f"g{i}", "file": f"images/{name}",
                     "captions": [f"good image {i}", "a field"], "dataset": "gen",
                     "category": "cat" + str(i % 2), "split": "train" if i % 2 else "test"})
        good.append(f"gen:g{i}")
    write_image(images / "empty.png", 100)
    rows.append({"id": "empty", "file": "images/empty.png", "captions": ["  ", ""],
                 "dataset": "gen", "split": "train"})
    good.append("gen:empty")
    rows.append({"id": "missing", "file": "images/nope.png", "captions": ["x"],
                 "dataset": "gen"})
    (images / "trunc.jpg").write_bytes(truncated_jpeg(101))
    rows.append({"id": "trunc", "file": "images/trunc.jpg", "captions": ["t"], "dataset": "gen"})
    (images / "garbage.png").write_bytes(b"this is not an image at all" * 10)
    rows.append({"id": "garbage", "file": "images/garbage.png", "captions": ["g"],
                 "dataset": "gen"})
    write_image(images / "bomb.png", 102, size=BOMB_SIZE)
    rows.append({"id": "bomb", "file": "images/bomb.png", "captions": ["b"], "dataset": "gen"})
    rows.append({"id": "g0", "file": "images/good_001.png", "captions": ["dup"],
                 "dataset": "gen"})
    skipped = {"gen:missing": "missing_file", "gen:trunc": "invalid_image",
               "gen:garbage": "invalid_image", "gen:bomb": "image_too_large",
               "gen:g0#dup": "duplicate_id"}
    write_image(images / "latin.png", 103)
    good.append("gen:latin")
    if csv:
        lines = ["id,file,captions,dataset,category,split"]
        for r in rows:
            caps = "|".join(str(c) for c in r["captions"])  # type: ignore[union-attr]
            lines.append(",".join([str(r["id"]), str(r["file"]), f'"{caps}"', str(r["dataset"]),
                                   str(r.get("category", "")), str(r.get("split", ""))]))
        body = ("\n".join(lines) + "\n").encode()
        body += "latin,images/latin.png,café au lait,gen,,train\n".encode("cp1252")
        manifest = root / "manifest.csv"
    else:
        body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
        body += b"{not json\n"
        body += json.dumps({"id": "latin", "file": "images/latin.png",
                            "captions": ["café au lait"], "dataset": "gen"},
                           ensure_ascii=False).encode("cp1252") + b"\n"
        skipped["<line>"] = "invalid_row"
        manifest = root / "manifest.jsonl"
    manifest.write_bytes(body)
    n_rows = len(rows) + 1 + (0 if csv else 1)
    return Expected(source=manifest, good=good, skipped=skipped, rows=n_rows)


def make_karpathy(root: Path, *, dataset: str = "rsicd", with_classes: bool = True) -> Expected:
    """RSICD layout: dataset_rsicd.json + RSICD_images/ + txtclasses_rsicd/ (numeric names
    get their class from the lists; prefixed names fall back to the prefix)."""
    images = root / "RSICD_images"
    names = ["airport_1.jpg", "airport_2.jpg", "denseresidential_10.jpg", "00017.jpg",
             "00018.jpg", "beach_3.jpg"]
    entries = []
    for i, name in enumerate(names):
        write_image(images / name, 200 + i, fmt="JPEG")
        entries.append({"filename": name, "imgid": i,
                        "split": ["train", "val", "test"][i % 3],
                        "sentences": [{"raw": f"caption {i} of {name} .", "tokens": ["x"]},
                                      {"tokens": ["only", "tokens", str(i)]}]})
    entries.append({"filename": "lost_5.jpg", "imgid": 99, "split": "train",
                    "sentences": [{"raw": "a lost image"}]})
    entries.append({"imgid": 100, "split": "train"})  # no filename
    (root / f"dataset_{dataset}.json").write_text(json.dumps({"images": entries,
                                                              "dataset": dataset}))
    if with_classes:
        classes = root / "txtclasses_rsicd"
        classes.mkdir()
        (classes / "bridge.txt").write_text("00017.jpg\n")
        (classes / "port.txt").write_bytes("00018.jpg\n".encode("utf-16"))  # odd encoding
        (classes / "airport.txt").write_text("airport_1.jpg\nairport_2.jpg\n")
    stem = [n.rsplit(".", 1)[0] for n in names]
    return Expected(source=root, good=[f"{dataset}:{s}" for s in stem],
                    skipped={f"{dataset}:lost_5": "missing_file", "<entry>": "invalid_row"},
                    rows=len(entries))


def make_imageclef(root: Path) -> Expected:
    """ImageCLEF 2017: training/ and validation/ with captions CSVs; test/ without one."""
    good: list[str] = []
    rng = random.Random(0)
    for folder, n in (("training", 4), ("validation", 2)):
        img_dir = root / folder / f"CaptionTraining2017-{folder}"
        lines = []
        for i in range(n):
            image_id = f"1471-2105-{folder[:3]}-{i}"
            write_image(img_dir / f"{image_id}.jpg", rng.randint(0, 10_000), fmt="JPEG")
            lines.append(f"{image_id}\tchest x ray number {i} in {folder}".encode())
            good.append(f"imageclef2017:{image_id}")
        lines.append(b"no-tab-in-this-line")
        lines.append(f"missing-{folder}\tthis image is not there".encode())
        lines.append(f"{folder}-latin\t".encode() + "lésion pulmonaire".encode("cp1252"))
        write_image(img_dir / f"{folder}-latin.jpg", 7, fmt="JPEG")
        good.append(f"imageclef2017:{folder}-latin")
        (root / folder / f"{folder.capitalize()}-Captions.csv").write_bytes(
            b"\n".join(lines) + b"\n")
    test_dir = root / "test" / "images"
    for i in range(2):
        write_image(test_dir / f"test-{i}.jpg", 500 + i, fmt="JPEG")
        good.append(f"imageclef2017:test-{i}")
    return Expected(source=root, good=good,
                    skipped={"imageclef2017:missing-training": "missing_file",
                             "imageclef2017:missing-validation": "missing_file",
                             "<no-tab training>": "invalid_row",
                             "<no-tab validation>": "invalid_row"},
                    rows=len(good) + 2 * 2)


class MemoryIndex:
    """A dict-backed ``SearchIndex`` for the write path, with failure injection:
    ``fail_next`` upserts raise ``BackendUnavailable`` (``fail_next=-1``: always)."""

    def __init__(self, dim: int = 512, *, fail_next: int = 0) -> None:
        from clipsearch.documents import ImageDocument

        self.docs: dict[str, ImageDocument] = {}
        self._dim = dim
        self.fail_next = fail_next
        self.upserts = 0
        self.attempts = 0

    @property
    def dim(self) -> int:
        return self._dim

    async def ensure_ready(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def upsert(self, docs):  # type: ignore[no-untyped-def]
        from clipsearch.documents import DocumentBatch

        return await self.upsert_batch(DocumentBatch.from_documents(docs, dim=self._dim))

    async def upsert_batch(self, batch):  # type: ignore[no-untyped-def]
        from clipsearch.errors import BackendUnavailable

        self.attempts += 1
        batch.check_dim(self._dim)
        if self.fail_next:
            self.fail_next -= 1 if self.fail_next > 0 else 0
            raise BackendUnavailable("index down (test)")
        self.upserts += 1
        unique = batch.dedupe_last()
        self.docs.update({d.id: d for d in unique.documents()})
        return len(unique)

    async def delete(self, ids):  # type: ignore[no-untyped-def]
        return sum(self.docs.pop(i, None) is not None for i in ids)

    async def get(self, doc_id):  # type: ignore[no-untyped-def]
        return self.docs.get(doc_id)

    async def existing_ids(self, ids):  # type: ignore[no-untyped-def]
        return {i for i in ids if i in self.docs}

    async def count(self, filters=None):  # type: ignore[no-untyped-def]
        return len(self.docs)

    async def search(self, plan):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def index_state(settings: Settings, ids: list[str]) -> tuple[int, set[str]]:
    """The index of ``settings``: its document count and which of ``ids`` it holds."""
    index = open_index(settings)
    try:
        return await index.count(), await index.existing_ids(ids)
    finally:
        await index.close()


async def stored_embeddings(settings: Settings, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The index of ``settings`` holds exactly ``ids`` (count and each get): their embeddings."""
    index = open_index(settings)
    try:
        assert await index.count() == len(ids)
        out = {}
        for doc_id in ids:
            doc = await index.get(doc_id)
            assert doc is not None, doc_id
            out[doc_id] = np.asarray(doc.embedding, dtype=np.float32)
        return out
    finally:
        await index.close()


def settings_for(tmp: Path, tiny_clip_dir: Path) -> Settings:
    """Settings of a feed test: data under ``tmp/data``, the tiny model, small images."""
    return Settings(data_dir=tmp / "data", model=str(tiny_clip_dir), max_image_pixels=MAX_PIXELS)


def feed_request(source: Path, dead_letter: Path, **kw: object) -> FeedRequest:
    """A feed of ``source`` without progress bar or retry waits."""
    return FeedRequest(source=source, progress=False, dead_letter=dead_letter,
                       retry_base_s=0.0, **kw)  # type: ignore[arg-type]


class BytesEmbedder:
    """An ``Embedder`` over image bytes (like the encoder service) that refuses one image."""

    def __init__(self, refuse: bytes) -> None:
        self.refuse = refuse
        self.calls: list[int] = []

    @property
    def model_id(self) -> str:
        return "bytes-model"

    @property
    def dim(self) -> int:
        return 512

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        raise NotImplementedError

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        self.calls.append(len(images))
        if self.refuse in images:
            raise InvalidImage("the encoder cannot read this one")
        rows = [np.frombuffer(img[-512:].ljust(512, b"\x01"), np.uint8) for img in images]
        return Embeddings("bytes-model", l2_normalize(np.stack(rows).astype(np.float32) + 1))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
