"""Load test of the search gateway: QPS and latency percentiles per mode and concurrency.

1. Builds (or reuses, cached under ``--data-dir``) a synthetic embedded index of ``--n``
   documents: clustered 512-d unit vectors, captions drawn from a small remote-sensing
   vocabulary (Zipf-distributed, so BM25 sees common and rare terms), written through
   ``EmbeddedIndex.upsert`` in big batches and ``flush()``ed so the ANN index is built.
2. Starts the real gateway (``services.api.app.create_app`` + uvicorn, index opened from
   settings by the app's lifespan) in a subprocess on a loopback port, with a FAST query
   encoder: by default a deterministic hash embedder (``--embedder hash``: word -> seeded unit
   vector, summed and normalised, ~10 µs), so that the numbers measure the gateway and the
   index, not a model; ``--embedder tiny`` loads the tiny random-weight CLIP through the user
   code path instead (adds the text tower's cost, ~ms).
3. Runs ``--concurrency`` closed-loop httpx clients per mode (lexical, vector, hybrid), each
   level bounded by ``--requests`` AND ``--seconds``, and measures the same queries through
   ``index.search()`` called in-process (no HTTP, no encoder): the baseline of the same run.

Prints Markdown tables: QPS and p50/p95/p99 per mode and concurrency next to the baseline and
the ratios, the server's own time per request (its ``X-Response-Time-Ms`` header), and the CPU
time per request of the server, of the load generator and of the baseline (from ``/proc``),
then the targets (hybrid p50 <= 20 ms at concurrency 1, hybrid >= 50 QPS at concurrency 8).
The load generator shares the machine with the server: on a 2-core box its CPU use (~2 ms a
request for httpx) is part of what is measured, and so is anything else running there.

    .venv/bin/python bench/load.py --n 20000 --data-dir /tmp/clipsearch-load
    .venv/bin/python bench/load.py --n 200000 --data-dir data/bench-load --json out.json
    .venv/bin/python bench/load.py --n 200000 --modes hybrid --concurrency 1,8 --candidates 30
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.loopback import free_port
from clipsearch.search import Mode, SearchPlan
from clipsearch.settings import Settings

MODES = (Mode.lexical, Mode.vector, Mode.hybrid)
CATEGORIES = ("airport", "harbor", "forest", "farmland", "residential", "river", "desert",
              "stadium", "bridge", "parking", "beach", "mountain")
_VOCAB_TEXT = (
    "airport runway plane planes terminal harbor port ship ships boats dock pier forest trees "
    "woodland green dense farmland field fields crops irrigation circular residential houses "
    "buildings roofs dense sparse street streets road roads river water bank lake pond desert "
    "sand dunes bare stadium track football court bridge cars parking lot vehicles beach "
    "waves coast sea shore mountain hills rocky snow white large small many several some two "
    "three near next beside between surrounded center middle side square round long wide "
    "narrow industrial factory storage tanks church school park playground meadow grass "
    "railway station train viaduct highway intersection roundabout pool swimming golf course"
)
VOCAB = tuple(dict.fromkeys(_VOCAB_TEXT.split()))
SEED = 7
CORPUS_VERSION = 2  # 2: tables carry the summary column
BUILD_BATCH = 10_000
MARKER = "load-bench.json"


# --------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusSpec:
    n: int
    dim: int
    seed: int = SEED
    version: int = CORPUS_VERSION


def corpus_settings(data_dir: Path, spec: CorpusSpec, **serving: object) -> Settings:
    """Settings of the corpus index; ``serving`` overrides query-time knobs (candidates,
    hnsw_ef) without changing what is built."""
    return Settings.model_validate({
        "data_dir": data_dir, "table": "loadbench", "embedding_dim": spec.dim,
        "vector_index_min_rows": max(256, min(spec.n, 50_000)), "encoder_url": "", **serving})


def serving_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in (("candidates", args.candidates), ("hnsw_ef", args.hnsw_ef))
            if v is not None}


def _captions(rng: np.random.Generator, count: int) -> list[str]:
    lengths = rng.integers(6, 16, size=count)
    words = rng.zipf(1.3, size=(count, 16)) - 1
    out = []
    for row, length in zip(words, lengths, strict=True):
        picked = [VOCAB[int(w) % len(VOCAB)] for w in row[:length]]
        out.append(" ".join(["a", *picked]))
    return out


def documents(spec: CorpusSpec, centroids: np.ndarray, start: int,
              stop: int) -> list[ImageDocument]:
    rng = np.random.default_rng([spec.seed, start])
    assign = rng.integers(0, len(centroids), size=stop - start)
    noise = rng.normal(scale=1.2 / np.sqrt(spec.dim), size=(stop - start, spec.dim))
    vectors = l2_normalize(centroids[assign] + noise.astype(np.float32))
    captions = _captions(rng, stop - start)
    return [
        ImageDocument.model_construct(  # values are valid by construction: skip validation
            id=f"load:{start + i}", captions=[captions[i]], dataset="load",
            category=CATEGORIES[int(assign[i]) % len(CATEGORIES)], split="train",
            image_uri="", model_id="synthetic", embedding=vectors[i].tolist(),
        )
        for i in range(stop - start)
    ]


async def build_index(data_dir: Path, spec: CorpusSpec) -> dict[str, object]:
    """Build the corpus index, or reuse it when the marker says it matches ``spec``."""
    marker = data_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == asdict(spec):
        info: dict[str, object] = json.loads(marker.read_text())
        info["reused"] = True
        return info
    marker.unlink(missing_ok=True)
    settings = corpus_settings(data_dir, spec)
    index = open_index(settings)
    try:
        if await index.count() > 0:
            raise SystemExit(f"{settings.index_dir} holds an unfinished or different index "
                             "(no matching marker): delete it or use a fresh --data-dir")
        centroids = l2_normalize(
            np.random.default_rng(spec.seed).normal(size=(200, spec.dim)).astype(np.float32))
        t0 = time.perf_counter()
        for start in range(0, spec.n, BUILD_BATCH):
            await index.upsert(documents(spec, centroids, start, min(spec.n, start + BUILD_BATCH)))
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await index.flush()
        flush_s = time.perf_counter() - t0
        has_vector_index = getattr(index, "has_vector_index", None)
        has_ann = await has_vector_index() if has_vector_index is not None else None
        count = await index.count()
    finally:
        await index.close()
    info = {"spec": asdict(spec), "count": count, "ingest_s": round(ingest_s, 1),
            "flush_s": round(flush_s, 1), "ann_index": has_ann}
    marker.write_text(json.dumps(info))
    info["reused"] = False
    return info


# ------------------------------------------------------------------------ query encoder


class HashEmbedder:
    """Deterministic stand-in for the CLIP text tower: each word maps to a seeded unit vector;
    a query is the normalised sum. Costs microseconds, so the load test measures the gateway
    and the index. Not semantically meaningful (neither is the synthetic corpus)."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._words: dict[str, np.ndarray] = {}  # like the encoder's text cache: ~1 µs a word

    @property
    def model_id(self) -> str:
        return "hash-embedder"

    @property
    def dim(self) -> int:
        return self._dim

    def vector(self, text: str) -> np.ndarray:
        total = np.zeros(self._dim, dtype=np.float32)
        for word in text.lower().split() or [""]:
            total += self._word(word)
        return l2_normalize(total)[0]

    def _word(self, word: str) -> np.ndarray:
        if word not in self._words:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            self._words[word] = np.random.default_rng(seed).normal(size=self._dim).astype(
                np.float32)
        return self._words[word]

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings(self.model_id, np.stack([self.vector(t) for t in texts]))

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        return await self.embed_texts([hashlib.sha1(b).hexdigest() for b in images])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# ------------------------------------------------------------------------------ server


def serve(args: argparse.Namespace) -> None:
    """The subprocess: the real gateway app on a loopback port."""
    import uvicorn

    from services.api.app import create_app

    spec = CorpusSpec(n=args.n, dim=args.dim)
    settings = corpus_settings(Path(args.data_dir), spec, **serving_overrides(args))
    if args.embedder == "tiny":
        from clipsearch.models.tiny import build_tiny_clip

        model_dir = build_tiny_clip(Path(args.data_dir) / "tiny-clip", projection_dim=args.dim)
        app = create_app(settings.model_copy(update={"model": str(model_dir)}))
    else:
        app = create_app(settings, embedder=HashEmbedder(args.dim))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--serve", "--port", str(port), "--n", str(args.n),
           "--dim", str(args.dim), "--data-dir", str(args.data_dir), "--embedder", args.embedder]
    for flag, value in (("--candidates", args.candidates), ("--hnsw-ef", args.hnsw_ef)):
        if value is not None:
            cmd += [flag, str(value)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # poll interval, bounded by the deadline
    proc.terminate()
    raise SystemExit("the API server did not become ready within 300 s")


# ------------------------------------------------------------------------ measurements


@dataclass
class Level:
    mode: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_ms: list[float] = field(default_factory=list)  # X-Response-Time-Ms (HTTP only)
    cpu_ms: float = float("nan")  # CPU per request of the serving process (or of the baseline)
    client_cpu_ms: float = float("nan")  # CPU per request of the load generator (HTTP only)

    @property
    def qps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def server_pct(self, q: float) -> float:
        return float(np.percentile(self.server_ms, q)) if self.server_ms else float("nan")


def make_queries(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(VOCAB[int(w) % len(VOCAB)] for w in rng.zipf(1.3, size=rng.integers(1, 4))
                     - 1) for _ in range(count)]


Target = Callable[[Mode, str], Awaitable[bool]]


async def closed_loop(call: Target, mode: Mode, concurrency: int, queries: list[str],
                      max_requests: int, max_seconds: float) -> Level:
    """``concurrency`` workers, each sending its next request when the last one answered."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal issued, errors
        while issued < max_requests and time.perf_counter() < deadline:
            query = queries[issued % len(queries)]
            issued += 1
            t0 = time.perf_counter()
            ok = await call(mode, query)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += 0 if ok else 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Level(mode.value, concurrency, len(latencies), errors,
                 time.perf_counter() - started, latencies)


class HttpTarget:
    def __init__(self, client: httpx.AsyncClient, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.failures: list[str] = []
        self.server_ms: list[float] = []

    def take_server_ms(self) -> list[float]:
        taken, self.server_ms = self.server_ms, []
        return taken

    async def __call__(self, mode: Mode, query: str) -> bool:
        try:
            r = await self.client.get("/search", params={"q": query, "mode": mode.value,
                                                         "limit": self.limit})
        except httpx.HTTPError as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return False
        if r.status_code != 200:
            self.failures.append(f"{r.status_code}: {r.text[:200]}")
        elif (inside := r.headers.get("x-response-time-ms")) is not None:
            self.server_ms.append(float(inside))
        return r.status_code == 200


class DirectTarget:
    """The baseline: the same plans straight into ``index.search`` in-process."""

    def __init__(self, index: SearchIndex, embedder: HashEmbedder, limit: int,
                 candidates: int) -> None:
        self.index, self.embedder, self.limit, self.candidates = index, embedder, limit, candidates
        self._vectors: dict[str, list[float]] = {}

    def plan(self, mode: Mode, query: str) -> SearchPlan:
        vector = None
        if mode != Mode.lexical:
            if query not in self._vectors:
                self._vectors[query] = self.embedder.vector(query).tolist()
            vector = self._vectors[query]
        return SearchPlan(mode=mode, text=query, vector=vector, limit=self.limit,
                          candidates=self.candidates)

    async def __call__(self, mode: Mode, query: str) -> bool:
        await self.index.search(self.plan(mode, query))
        return True


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of a process, all its threads (Linux ``/proc``; own process: os)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def metered(run: Awaitable[Level], server_pid: int | None) -> Level:
    """Run one level and attach the CPU per request spent by the server and by this process."""
    own0, server0 = cpu_seconds(), cpu_seconds(server_pid) if server_pid else 0.0
    level = await run
    own, server = cpu_seconds() - own0, (cpu_seconds(server_pid) - server0) if server_pid else 0.0
    per = 1000.0 / max(1, level.requests)
    if server_pid:
        level.cpu_ms, level.client_cpu_ms = server * per, own * per
    else:
        level.cpu_ms = own * per
    return level


async def measure(args: argparse.Namespace, port: int,
                  server_pid: int) -> tuple[list[Level], list[Level], list[str]]:
    queries = make_queries(512, SEED + 1)
    levels = [int(c) for c in args.concurrency.split(",")]
    http_levels: list[Level] = []
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=30) as client:
        target = HttpTarget(client, args.limit)
        for mode in args.modes:
            await closed_loop(target, mode, 1, queries, args.warmup, 60)  # warm caches
            for c in levels:
                target.take_server_ms()
                level = await metered(closed_loop(target, mode, c, queries, args.requests,
                                                  args.seconds), server_pid)
                level.server_ms = target.take_server_ms()
                http_levels.append(level)
    spec = CorpusSpec(n=args.n, dim=args.dim)
    settings = corpus_settings(Path(args.data_dir), spec, **serving_overrides(args))
    index = open_index(settings)
    base_levels: list[Level] = []
    try:
        direct = DirectTarget(index, HashEmbedder(args.dim), args.limit, settings.candidates)
        for mode in args.modes:
            await closed_loop(direct, mode, 1, queries, args.warmup, 60)
            for c in levels:
                base_levels.append(await metered(closed_loop(
                    direct, mode, c, queries, args.requests, args.seconds), None))
    finally:
        await index.close()
    return http_levels, base_levels, target.failures[:5]


# ------------------------------------------------------------------------------ report


def table(http_levels: list[Level], base_levels: list[Level]) -> str:
    base = {(b.mode, b.concurrency): b for b in base_levels}
    lines = [
        "| mode | conc. | requests | errors | QPS | p50 ms | p95 ms | p99 ms | in-app p50 ms "
        "| baseline QPS | baseline p50 ms | baseline p95 ms | QPS ratio | p50 ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in http_levels:
        b = base[(h.mode, h.concurrency)]
        lines.append(
            f"| {h.mode} | {h.concurrency} | {h.requests} | {h.errors} | {h.qps:.1f} "
            f"| {h.pct(50):.1f} | {h.pct(95):.1f} | {h.pct(99):.1f} | {h.server_pct(50):.1f} "
            f"| {b.qps:.1f} "
            f"| {b.pct(50):.1f} | {b.pct(95):.1f} | {h.qps / b.qps:.2f} "
            f"| {h.pct(50) / b.pct(50):.2f} |")
    return "\n".join(lines)


def cpu_table(http_levels: list[Level], base_levels: list[Level]) -> str:
    base = {(b.mode, b.concurrency): b for b in base_levels}
    lines = [
        "| mode | conc. | server CPU ms/req | load-generator CPU ms/req | baseline CPU ms/req "
        "| server / baseline CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for h in http_levels:
        b = base[(h.mode, h.concurrency)]
        lines.append(f"| {h.mode} | {h.concurrency} | {h.cpu_ms:.1f} | {h.client_cpu_ms:.1f} "
                     f"| {b.cpu_ms:.1f} | {h.cpu_ms / b.cpu_ms:.2f} |")
    return "\n".join(lines)


def targets(http_levels: list[Level]) -> list[str]:
    by = {(h.mode, h.concurrency): h for h in http_levels}
    out = []
    if (one := by.get(("hybrid", 1))) is not None:
        ok = one.pct(50) <= 20.0
        out.append(f"- hybrid p50 at concurrency 1: {one.pct(50):.1f} ms (target <= 20 ms): "
                   f"{'PASS' if ok else 'FAIL'}")
    if (eight := by.get(("hybrid", 8))) is not None:
        ok = eight.qps >= 50.0
        out.append(f"- hybrid QPS at concurrency 8: {eight.qps:.1f} (target >= 50): "
                   f"{'PASS' if ok else 'FAIL'}")
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=200_000, help="documents in the synthetic index")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--data-dir", type=Path, default=Path("data/bench-load"),
                   help="where the index is built and cached (reused when --n/--dim match)")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    p.add_argument("--requests", type=int, default=400, help="max requests per level")
    p.add_argument("--seconds", type=float, default=15.0, help="max seconds per level")
    p.add_argument("--warmup", type=int, default=20, help="warm-up requests per mode")
    p.add_argument("--limit", type=int, default=10, help="hits per query")
    p.add_argument("--modes", type=lambda v: [Mode(m) for m in v.split(",")],
                   default=list(MODES), help="comma-separated: lexical,vector,hybrid")
    p.add_argument("--candidates", type=int, default=None,
                   help="per-leg candidates (CLIPSEARCH_CANDIDATES; default: the setting's)")
    p.add_argument("--hnsw-ef", type=int, default=None,
                   help="HNSW search list (CLIPSEARCH_HNSW_EF; default: the setting's)")
    p.add_argument("--embedder", choices=("hash", "tiny"), default="hash",
                   help="query encoder in the server (see the module docstring)")
    p.add_argument("--build-only", action="store_true", help="build/reuse the index, then exit")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    spec = CorpusSpec(n=args.n, dim=args.dim)
    t0 = time.perf_counter()
    info = asyncio.run(build_index(args.data_dir, spec))
    print(f"index: {info} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if args.build_only:
        return 0
    port = free_port()
    proc = start_server(args, port)
    try:
        http_levels, base_levels, failures = asyncio.run(measure(args, port, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    encoder = ("deterministic hash embedder (microseconds; measures gateway + index, not a model)"
               if args.embedder == "hash" else "tiny random-weight CLIP (user code path)")
    knobs = corpus_settings(args.data_dir, spec, **serving_overrides(args))
    print(f"\n## Search API load test: {args.n} documents, {args.dim}-d, top-{args.limit}, "
          f"candidates {knobs.candidates}, hnsw_ef {knobs.hnsw_ef}, {os.cpu_count()} CPUs\n")
    print(f"Query encoder in the server: {encoder}. Baseline: the same queries through "
          "`index.search()` in-process (no HTTP, no encoder), same run. In-app: the server's "
          "own X-Response-Time-Ms (routing, encoding, search, serialisation; no socket or "
          f"client). Each level is bounded by {args.requests} requests and {args.seconds:g} s; "
          "client and server share the machine. QPS ratio = HTTP / baseline, p50 ratio = "
          "HTTP / baseline.\n")
    print(table(http_levels, base_levels))
    print("\nCPU time per request (user + system, all threads), same levels:\n")
    print(cpu_table(http_levels, base_levels))
    print()
    print("\n".join(targets(http_levels)))
    if failures:
        print("\nfirst failures:\n" + "\n".join(f"- {f}" for f in failures))
    if args.json:
        args.json.write_text(json.dumps({
            "index": info, "embedder": args.embedder,
            "http": [asdict(h) | {"qps": h.qps, "p50": h.pct(50), "p95": h.pct(95),
                                  "p99": h.pct(99)} for h in http_levels],
            "baseline": [asdict(b) | {"qps": b.qps, "p50": b.pct(50), "p95": b.pct(95),
                                      "p99": b.pct(99)} for b in base_levels],
        }, indent=1))
    return 1 if any(h.errors for h in http_levels) else 0


if __name__ == "__main__":
    sys.exit(main())
