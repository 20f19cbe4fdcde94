#!/usr/bin/env bash
# Reproduce the README's search-quality tables (untrained vs trained demo model; lexical,
# vector and every hybrid fusion; the sweep chosen on val; calibrated relevance):
#   bench/demo_eval.sh [OUT_DIR]      (default: data/demo-eval; ~30 minutes on 2 cores)
# A thin wrapper of bench/quality.py, which also rewrites the README block.
set -euo pipefail
OUT=${1:-data/demo-eval}
BIN=${BIN:-.venv/bin}
exec "$BIN/python" bench/quality.py --out "$OUT" --bin "$BIN"
