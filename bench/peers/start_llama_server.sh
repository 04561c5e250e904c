#!/usr/bin/env bash
# Serves a GGUF model with llama-server (bench/peers/install_llama_cpp.sh) on PORT (8002)
# with THREADS threads (default: all) and SLOTS parallel slots (default 32, each with
# CTX tokens of context); prints its URL when ready.
#   bench/peers/start_llama_server.sh GGUF [PORT]
set -euo pipefail
GGUF=$1
PORT=${2:-8002}
BIN=${PEERS_DIR:-$HOME/.cache/sluice-peers}/llama.cpp
SLOTS=${SLOTS:-32}
CTX=${CTX:-512}
"$BIN/llama-server" -m "$GGUF" --port "$PORT" --threads "${THREADS:-$(nproc)}" \
  --parallel "$SLOTS" --ctx-size $((SLOTS * CTX)) --cont-batching --alias sluice-tiny-code \
  >"/tmp/llama-server-$PORT.log" 2>&1 &
echo $! >"/tmp/llama-server-$PORT.pid"
for _ in $(seq 120); do
  if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then
    echo "http://127.0.0.1:$PORT"
    exit 0
  fi
  kill -0 "$(cat "/tmp/llama-server-$PORT.pid")" 2>/dev/null ||
    { tail -30 "/tmp/llama-server-$PORT.log"; exit 1; }
  sleep 1
done
echo "llama-server did not come up; see /tmp/llama-server-$PORT.log" >&2
exit 1
