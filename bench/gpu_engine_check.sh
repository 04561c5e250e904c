#!/usr/bin/env bash
# The device check for the CUDA runner: the kernels' new ops, the engine's gpu tests
# (greedy parity with transformers, alone vs batch, graphs vs eager, random weights on
# both backends) and bench/engine's throughput on the Llama-3.1-8B, Qwen3-30B-A3B and
# gpt-oss-20b shapes with random weights, then a short table. Runs from the bundle scripts/make_device_bundle.sh packs
# (the GPU machine has CUDA but not the project's libraries). Logs go to $OUT.
# Usage: bash bench/gpu_engine_check.sh         (about 7 minutes on one H100)
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu_engine_check}
mkdir -p "$LOG"
BUNDLE=${SLUICE_BUNDLE:-.devbundle/bundle.tar.xz}
D=/tmp/sluice_bundle
rm -rf "$D" && mkdir -p "$D" && tar -C "$D" -xJf "$BUNDLE" || { echo "no bundle at $BUNDLE"; exit 1; }
cudalib=$(dirname "$(ls /usr/local/cuda/lib64/libcublasLt.so.13* /usr/local/cuda*/targets/*/lib/libcublasLt.so.13* 2>/dev/null | head -1)")
nccllib=$(dirname "$(ls /usr/local/cuda/lib/libnccl.so.2 /usr/local/cuda*/lib*/libnccl.so.2 /usr/lib/x86_64-linux-gnu/libnccl.so.2 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="$D/lib:$cudalib:$nccllib:${LD_LIBRARY_PATH:-}"
export SLUICE_SHARED_DIR="$D/shared" SLUICE_SOURCE_ROOT="$PWD"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$LOG/device.txt"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git status --porcelain 2>/dev/null | grep -q . && echo ' uncommitted')" | tee -a "$LOG/device.txt"

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  rc=$?
  echo "$name: rc=$rc ($(($(date +%s) - start)) s)" | tee -a "$LOG/steps.txt"
}

step ops 40 "$D/bin/ops_gpu_test"
grep -E "^PASS|^FAIL|CHECK failed" "$LOG/ops.log" | head -20
# Windows and sinks over the quick shape table (gpt-oss's heads included).
step attention 60 env SLUICE_QUICK=1 "$D/bin/attention_gpu_test"
grep -E "^PASS|^FAIL|CHECK failed|window|sinks" "$LOG/attention.log" | head -20
# The fused MoE over its shape table (experts 8-128, top-k 1-8, 1-4096 tokens, graphs).
step moe 60 "$D/bin/moe_gpu_test"
grep -E "^PASS|^FAIL|CHECK failed" "$LOG/moe.log" | head -20
# NCCL on the machine's GPUs (one GPU: a one-rank group; the multi-GPU case skips).
step nccl 30 "$D/bin/nccl_communicator_gpu_test"
grep -E "OK|FAILED|SKIP|Failure" "$LOG/nccl.log" | head -10
step runner 120 "$D/bin/cuda_runner_gpu_test"
grep -E "PARITY|BATCH|RANDOM|NCCL|\[  FAILED|Failure|SKIP" -A3 "$LOG/runner.log" | head -60

M=models/configs/llama-3.1-8b
TB=("$D/bin/throughput_bench" --device cuda --model "$M" --random-weights)
# Batch 1 at 1.5k-2k context; batch 64 at 1.9k-2k; batch 256 at 0.9k-1.1k.
step b1 40 "${TB[@]}" --num-requests 1 --input-len 1536 --output-len 512 --max-num-seqs 1 \
  --out "$LOG/b1.json"
step b1_tuned 40 "${TB[@]}" --num-requests 1 --input-len 1536 --output-len 512 --max-num-seqs 1 \
  --gemm-tuning --out "$LOG/b1_tuned.json"
step b256 70 "${TB[@]}" --num-requests 256 --input-len 960 --output-len 128 --max-num-seqs 256 \
  --max-num-batched-tokens 8192 --out "$LOG/b256.json"
step b64 50 "${TB[@]}" --num-requests 64 --input-len 1920 --output-len 128 --max-num-seqs 64 \
  --max-num-batched-tokens 8192 --out "$LOG/b64.json"
# The MoE shapes (random weights): decode at batch 1 and 64, against the bytes of the
# experts the tokens are routed to.
for moe in qwen3-30b-a3b gpt-oss-20b; do
  MB=("$D/bin/throughput_bench" --device cuda --model "models/configs/$moe" --random-weights)
  step "${moe}_b1" 60 "${MB[@]}" --num-requests 1 --input-len 512 --output-len 256 \
    --max-num-seqs 1 --out "$LOG/${moe}_b1.json"
  step "${moe}_b64" 60 "${MB[@]}" --num-requests 64 --input-len 512 --output-len 128 \
    --max-num-seqs 64 --max-num-batched-tokens 8192 --out "$LOG/${moe}_b64.json"
done
for b in b1 b1_tuned b64 b256 qwen3-30b-a3b_b1 qwen3-30b-a3b_b64 gpt-oss-20b_b1 gpt-oss-20b_b64; do grep -E "error|decode step|decode floor|throughput|KV blocks" "$LOG/$b.log" | sed "s/^/$b: /"; done

echo "== summary =="
head -2 "$LOG/device.txt"
cat "$LOG/steps.txt"
python3 - "$LOG" <<'PY'
import json, os, sys
log = sys.argv[1]
print(f"{'run':10} {'decode step ms':>15} {'floor ms':>9} {'roofline':>9} {'decode tok/s':>13} {'overall out tok/s':>18} {'copy GB/s':>10}")
for b in ("b1", "b1_tuned", "b64", "b256", "qwen3-30b-a3b_b1", "qwen3-30b-a3b_b64",
          "gpt-oss-20b_b1", "gpt-oss-20b_b64"):
    p = os.path.join(log, b + ".json")
    if not os.path.exists(p):
        print(f"{b:10} (no result)")
        continue
    r = json.load(open(p))
    print(f"{b:10} {r['mean_decode_step_ms']:15.3f} {r['mean_decode_floor_ms']:9.3f} "
          f"{r['roofline_fraction']:9.3f} {r['decode_output_tokens_per_s']:13.1f} "
          f"{r['output_tokens_per_s']:18.1f} {r['copy_bandwidth_gbs']:10.1f}")
# Memory by kind against the driver, and sluice plan's KV blocks against the runner's.
for b in ("b64", "b256"):
    p = os.path.join(log, b + ".json")
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    m, gib = r["memory_bytes"], 1 << 30
    kinds = {k: m[k] / gib for k in ("weights", "kv_cache", "activations", "cuda_graphs")}
    other = (m["device_used"] - sum(m[k] for k in kinds)) / gib
    off = abs(r["planned_kv_blocks"] - r["kv_blocks"]) / max(r["kv_blocks"], 1)
    print(f"{b}: " + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()) +
          f", other {other:.2f} GiB of {m['device_used'] / gib:.2f} used / "
          f"{m['device_total'] / gib:.2f} total; KV blocks {r['kv_blocks']} allocated, "
          f"{r['planned_kv_blocks']} planned ({off * 100:.1f}% apart)")
PY
