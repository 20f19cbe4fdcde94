"""Model lifecycle costs, each against a plain baseline measured in the same run.

* fingerprint of a ViT-B/32-sized CLIP (``CLIPConfig()`` defaults: 151 M parameters, 605 MB
  of float32), random weights, no download: ``fingerprint_model`` against ``hashlib.sha256``
  over the same bytes already in one buffer (the floor), and the cached lookup;
* an activation as a running gateway sees it: ``GenerationalEmbeddedIndex.count()`` (resolves
  the active generation per call: one ``stat`` of the catalog) against ``EmbeddedIndex.count()``
  on the same table, and the time of ``activate_generation``.

    .venv/bin/python bench/lifecycle.py
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.machine import describe_machine


def bench_fingerprint() -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    from clipsearch.models.identity import fingerprint_model, model_identity

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    params = sum(p.numel() for p in model.parameters())
    state = model.state_dict()
    buffer = b"".join(t.contiguous().numpy().tobytes() for t in state.values())
    t0 = time.perf_counter()
    hashlib.sha256(buffer).hexdigest()
    floor = time.perf_counter() - t0
    t0 = time.perf_counter()
    fingerprint_model(model)
    ours = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.safetensors").write_bytes(b"stand-in")  # the cache key's file
        model_identity(model, folder=folder)
        t0 = time.perf_counter()
        model_identity(model, folder=folder)
        cached = time.perf_counter() - t0
    print(f"[fingerprint] ViT-B/32 shape: {params / 1e6:.0f} M parameters, "
          f"{len(buffer) / 1e6:.0f} MB")
    print(f"[fingerprint] sha256 of one buffer (floor): {floor:.2f} s; fingerprint_model: "
          f"{ours:.2f} s ({ours / floor:.2f}x the floor); cached: {cached * 1000:.2f} ms")


async def bench_activation(n: int = 2000, calls: int = 2000) -> None:
    from clipsearch.documents import ImageDocument
    from clipsearch.embeddings import l2_normalize
    from clipsearch.index.embedded import EmbeddedIndex
    from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex

    dim = 64
    rng = np.random.default_rng(0)
    vecs = l2_normalize(rng.normal(size=(n, dim)).astype(np.float32))
    docs = [ImageDocument(id=f"b:{i}", captions=[f"doc {i}"], dataset="b", model_id="m",
                          embedding=[float(x) for x in vecs[i]]) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        plain = EmbeddedIndex(Path(tmp), dim=dim)
        await plain.upsert(docs)
        gens = GenerationalEmbeddedIndex(Path(tmp), dim=dim)
        g1 = await gens.create_generation(model_id="m2", space=None, dim=dim)
        await gens.at_generation(g1.name).upsert(docs[:10])
        await gens.complete_generation(g1.name)
        for index in (plain, gens):
            await index.count()
        timings = {}
        for name, index in (("EmbeddedIndex", plain), ("GenerationalEmbeddedIndex", gens)):
            t0 = time.perf_counter()
            for _ in range(calls):
                await index.count()
            timings[name] = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        await gens.activate_generation(g1.name)
        activate = time.perf_counter() - t0
        assert await gens.count() == 10
        await plain.close()
        await gens.close()
    base, ours = timings["EmbeddedIndex"], timings["GenerationalEmbeddedIndex"]
    print(f"[activation] count(): EmbeddedIndex {base * 1e6:.0f} µs, with generations "
          f"{ours * 1e6:.0f} µs (+{(ours - base) * 1e6:.0f} µs, {ours / base:.2f}x); "
          f"activate_generation: {activate * 1000:.1f} ms")


def main() -> None:
    print(f"CPU: {describe_machine()}")
    bench_fingerprint()
    asyncio.run(bench_activation())


if __name__ == "__main__":
    main()
