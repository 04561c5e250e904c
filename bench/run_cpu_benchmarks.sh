#!/usr/bin/env bash
# The CPU benchmarks, one after another, each printing the machine it ran on:
# decode and prefill of the tiny model, one scheduler step at 256 x 2k contexts, the
# tokenizer against Hugging Face tokenizers, and the HTTP server at concurrency 1/8/64.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
echo "== [1/4] CPU decode and prefill, tiny model"
"$BUILD/bin/cpu_decode_bench"
echo "== [2/4] scheduler + KV-cache manager step, 256 running at 2k contexts"
"$BUILD/bin/scheduler_bench"
echo "== [3/4] tokenizer encode vs Hugging Face tokenizers, one thread each"
bash bench/tokenizer/compare.sh "$BUILD"
echo "== [4/4] HTTP serving, closed loop at concurrency 1, 8, 64"
.venv/bin/python bench/serving/quick_bench.py --binary "$BUILD/bin/sluice" --concurrency 1 8 64
