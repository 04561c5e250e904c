#!/usr/bin/env bash
# The CPU benchmarks, one after another, each printing the machine it ran on:
# decode and prefill of the tiny model, one scheduler step at 256 x 2k contexts, the
# tokenizer against Hugging Face tokenizers, the HTTP server at concurrency 1/8/64, and
# n-gram speculative decoding against plain decoding.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
echo "== [1/5] CPU decode and prefill, tiny model"
"$BUILD/bin/cpu_decode_bench"
echo "== [2/5] scheduler + KV-cache manager step, 256 running at 2k contexts"
"$BUILD/bin/scheduler_bench"
echo "== [3/5] tokenizer encode vs Hugging Face tokenizers, one thread each"
bash bench/tokenizer/compare.sh "$BUILD"
echo "== [4/5] HTTP serving, closed loop at concurrency 1, 8, 64"
.venv/bin/python bench/serving/quick_bench.py --binary "$BUILD/bin/sluice" --concurrency 1 8 64
echo "== [5/5] speculative decoding (n-gram) against plain decoding, batch 1 and 8"
lscpu | grep -m1 "Model name" || true
"$BUILD/bin/spec_bench" --speculative-method ngram --batch 1,8 --temperature 0,1 --output-len 128 \
  --repeats 3
