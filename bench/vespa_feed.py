"""Feed throughput of the Vespa client (``VespaIndex.upsert_batch``: ``/document/v1`` puts at
``CLIPSEARCH_VESPA_FEED_CONCURRENCY``), in documents/s, against a plain baseline in the same
run: bare ``httpx`` POSTs of the same bodies at the same concurrency.

Without ``--url`` both go to a local sink (a threaded HTTP server in a child process that
reads each put and answers 200 like Vespa's document API): that measures the client's own cost and
is NOT a Vespa figure. With ``--url http://vespa:8080`` (a Vespa with the package deployed)
both go to the real engine; documents are written to namespace ``--namespace`` (default
``clipsearch-bench``) and deleted afterwards unless ``--keep``.

    .venv/bin/python bench/vespa_feed.py --docs 2000
    .venv/bin/python bench/vespa_feed.py --docs 20000 --url http://localhost:8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipsearch.documents import DocumentBatch, DocumentFields
from clipsearch.embeddings import l2_normalize
from clipsearch.index.vespa import docs as vdocs
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.machine import cpu_flags
from clipsearch.settings import Settings


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"pathId": self.path, "id": "id:bench:image::x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


def _serve(port: Any) -> None:
    server = _Server(("127.0.0.1", 0), _Sink)
    port.put(server.server_address[1])
    server.serve_forever(0.05)


def batch(n: int, dim: int, seed: int = 0) -> DocumentBatch:
    rng = np.random.default_rng(seed)
    fields = [DocumentFields(id=f"bench:img_{i:07d}", captions=[f"a bench caption number {i}",
                                                                 "with a second caption"],
                             dataset="bench", category=f"c{i % 30}", split="train",
                             image_uri=f"/images/{i}.jpg", model_id="bench-model")
              for i in range(n)]
    return DocumentBatch(fields, l2_normalize(rng.normal(size=(n, dim))).astype(np.float32))


async def client_path(url: str, b: DocumentBatch, ns: str, concurrency: int) -> float:
    index = VespaIndex(url=url, namespace=ns, dim=b.vectors.shape[1], concurrency=concurrency,
                       retry=RetryPolicy(attempts=8, initial_s=0.2, max_s=5.0))
    try:
        start = time.perf_counter()
        await index.upsert_batch(b)
        return time.perf_counter() - start
    finally:
        await index.close()


async def bare_path(url: str, b: DocumentBatch, ns: str, concurrency: int) -> float:
    start = time.perf_counter()  # building the bodies counts, as in the client
    bodies = [(vdocs.document_path(ns, f.id), {"fields": vdocs.to_fields(f, v)})
              for f, v in zip(b.fields, b.vectors.tolist(), strict=True)]
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        async def put(path: str, body: dict[str, Any]) -> None:
            async with sem:
                resp = await http.post(path, json=body)
                resp.raise_for_status()

        await asyncio.gather(*(put(p, body) for p, body in bodies))
        return time.perf_counter() - start


async def cleanup(url: str, ns: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120.0) as http:
        await http.delete(f"/document/v1/{ns}/image/docid",
                          params={"selection": "true", "cluster": "clipsearch_content"})


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=None, help="default: CLIPSEARCH_EMBEDDING_DIM")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="default: CLIPSEARCH_VESPA_FEED_CONCURRENCY")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--url", default=None, help="a real Vespa (default: a local sink)")
    ap.add_argument("--namespace", default="clipsearch-bench")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    settings = Settings()
    dim = args.dim or settings.embedding_dim
    concurrency = args.concurrency or settings.vespa_feed_concurrency
    sink = None
    url = args.url
    if url is None:  # in another process: the sink must not share this one's GIL
        port: Any = multiprocessing.Queue()
        sink = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
        sink.start()
        url = f"http://127.0.0.1:{port.get(timeout=30)}"
    b = batch(args.docs, dim)
    target = f"Vespa at {url}" if args.url else "local sink (NOT Vespa: client cost only)"
    print(f"feed {args.docs} docs, dim {dim}, concurrency {concurrency} -> {target}")
    print(f"CPU flags: {cpu_flags()}")
    try:
        for r in range(args.rounds):
            t_client = await client_path(url, b, args.namespace, concurrency)
            t_bare = await bare_path(url, b, args.namespace, concurrency)
            print(f"round {r + 1}: VespaIndex.upsert_batch {args.docs / t_client:8.0f} docs/s | "
                  f"bare httpx puts {args.docs / t_bare:8.0f} docs/s | "
                  f"ratio {t_bare / t_client:.2f}")
    finally:
        if args.url and not args.keep:
            await cleanup(url, args.namespace)
        if sink is not None:
            sink.terminate()
            sink.join(5)


if __name__ == "__main__":
    asyncio.run(main())
