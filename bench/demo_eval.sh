#!/usr/bin/env bash
# Reproduce the demo model's eval table (untrained vs trained; lexical vs vector vs hybrid).
#   bench/demo_eval.sh [OUT_DIR]      (default: data/demo-eval; a few minutes on 2 cores)
set -euo pipefail
OUT=${1:-data/demo-eval}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
# The trained demo model (draws the demo dataset into $OUT/model-data on the way) ...
[ -f "$OUT/model/config.json" ] || "$BIN/clipsearch" demo-model --out "$OUT/model"
# ... and the same architecture with its random initial weights, for comparison.
[ -f "$OUT/untrained/config.json" ] || "$BIN/clipsearch" demo-model --init-only --out "$OUT/untrained"
# Test split, fresh index with one caption per image held out; category-level relevance for
# caption queries (any image of the caption's category is relevant, its own image most).
"$BIN/clipsearch" eval --source "$OUT/model-data/manifest.jsonl" --split test \
    --model "$OUT/untrained" --model "$OUT/model" --caption-relevance category \
    --sweep --out "$OUT/report" --stem demo-eval
