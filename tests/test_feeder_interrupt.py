"""Kill the feeder (SIGKILL) in the middle of a run, run it again: the index ends with exactly
the source's documents, and the rerun resumes from the shards instead of starting over."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from clipsearch.datasets.sample import make_sample_dataset
from clipsearch.settings import Settings
from tests.feeder_fixtures import index_state

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0


def ledger_lines(data_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines())
               for p in (data_dir / "feeder").glob("ledger-*.jsonl"))


def summary_value(text: str, key: str) -> int:
    match = re.search(rf"^{key}\s+(\d+)$", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def test_sigkill_mid_run_then_rerun(tmp_path: Path, tiny_clip_dir: Path) -> None:
    ds = make_sample_dataset(tmp_path / "src", n_per_category=30, dataset="kill")
    ids = [f"kill:{r.id}" for r in ds.records]
    data_dir = tmp_path / "data"
    env = {**os.environ, "CLIPSEARCH_DATA_DIR": str(data_dir),
           "CLIPSEARCH_MODEL": str(tiny_clip_dir), "CLIPSEARCH_FEED_SHARD_DOCS": "4",
           # the in-process path; tests/test_feed_parallel.py kills a worker-process feed
           "CLIPSEARCH_FEED_WORKERS": "0", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "feeder", "feed", str(ds.manifest), "--no-progress",
           "--batch-size", "4", "--feed-batch-size", "4"]

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while ledger_lines(data_dir) < 8:  # at least two acknowledged batches
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the feeder made no progress in time"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the feeder finished before it was killed"

    settings = Settings(data_dir=data_dir)
    count, present = asyncio.run(index_state(settings, ids))
    assert 0 < count < len(ids) and len(present) == count

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=DEADLINE_S, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    out = rerun.stdout
    assert summary_value(out, "read") == len(ids)
    assert summary_value(out, "skipped") == 0
    assert summary_value(out, "encoded") < len(ids)  # resumed, not started over
    assert summary_value(out, "indexed") + summary_value(out, "already indexed") == len(ids)
    count, present = asyncio.run(index_state(settings, ids))
    assert count == len(ids) and present == set(ids)  # no duplicates, no loss
