#!/usr/bin/env bash
# The model lifecycle on the demo data: feed with the untrained demo model, re-index with the
# trained one beside it, shadow-evaluate, activate, show the gateway's 409 for a stale encoder,
# roll back.   bench/lifecycle_demo.sh [OUT_DIR]   (default: data/lifecycle-demo)
# Reuses OUT/untrained, OUT/trained and OUT/dataset when present (demo-model trains in minutes).
set -euo pipefail
OUT=${1:-data/lifecycle-demo}
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8765}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false CLIPSEARCH_RUNTIME=torch
mkdir -p "$OUT"
[ -f "$OUT/trained/config.json" ] || "$BIN/clipsearch" demo-model --out "$OUT/trained" --data "$OUT/dataset"
[ -f "$OUT/untrained/config.json" ] || "$BIN/clipsearch" demo-model --init-only --out "$OUT/untrained" --data "$OUT/dataset"
rm -rf "$OUT/data"
export CLIPSEARCH_DATA_DIR="$OUT/data" CLIPSEARCH_MODEL="$OUT/untrained"
t() { local s=$(date +%s.%N); "$@"; echo "[time] $(echo "$(date +%s.%N) - $s" | bc) s: ${*:2:2}"; }
t "$BIN/clipsearch" feed "$OUT/dataset/manifest.jsonl" --no-progress
t "$BIN/clipsearch" reindex --model "$OUT/trained" --no-progress
"$BIN/clipsearch" generations
t "$BIN/clipsearch" eval --generations g0 g1 --source "$OUT/dataset/manifest.jsonl" --split test \
    --caption-relevance category --out "$OUT/report"
# a gateway still configured with the untrained model, while g1 becomes active under it
"$BIN/clipsearch" serve --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "localhost:$PORT/health" > /dev/null && break; sleep 0.2; done
q() { curl -s "localhost:$PORT/search?q=runway&mode=$1&limit=1" | "$BIN/python" -c \
  'import json,sys; b=json.load(sys.stdin); e=b.get("error"); print(e["status"], e["reason"], e["message"][:160]) if e else print(200, b["generation"], b["index_model"], b["total"])'; }
echo "--- g0 active (untrained vectors, untrained encoder)"; q vector
t "$BIN/clipsearch" activate g1
echo "--- g1 active, the gateway's encoder is still the untrained model"; q vector; q lexical
curl -s "localhost:$PORT/ready" | "$BIN/python" -c 'import json,sys; b=json.load(sys.stdin); print("ready:", b["generation"], b["embedding_space"][:100])'
t "$BIN/clipsearch" activate g0
echo "--- rolled back to g0"; q hybrid
