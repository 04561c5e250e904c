#!/usr/bin/env bash
# Serves MODEL_DIR (default: the embedded model) with vLLM's CPU build on PORT (8001),
# in bf16, as bench/peers/install_vllm.sh installed it; prints its URL when ready.
#   bench/peers/start_vllm.sh [MODEL_DIR] [PORT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${1:-$ROOT/models/sluice-tiny-code}
PORT=${2:-8001}
VENV=${PEERS_DIR:-$HOME/.cache/sluice-peers}/vllm
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
"$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL" --port "$PORT" \
  --served-model-name sluice-tiny-code --dtype bfloat16 >"/tmp/vllm-$PORT.log" 2>&1 &
echo $! >"/tmp/vllm-$PORT.pid"
for _ in $(seq 600); do
  if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then
    echo "http://127.0.0.1:$PORT"
    exit 0
  fi
  kill -0 "$(cat "/tmp/vllm-$PORT.pid")" 2>/dev/null || { tail -30 "/tmp/vllm-$PORT.log"; exit 1; }
  sleep 1
done
echo "vLLM did not come up; see /tmp/vllm-$PORT.log" >&2
exit 1
