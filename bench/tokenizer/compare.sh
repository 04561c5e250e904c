#!/usr/bin/env bash
# Encode throughput, one thread, Sluice vs Hugging Face tokenizers on the same
# tokenizer.json files and the same few MB of Python source, in one run; also checks
# that both produce the same ids.
#
# Usage: bench/tokenizer/compare.sh [BUILD_DIR]   (default: build)
# Env: CORPUS_MB (default 8), RUNS (default 3; the first run is the cold-cache one),
#      CHUNK_BYTES (default 0: the corpus is one text; N: texts cut at the first newline
#      after N bytes, the same cut on both sides).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
SHARED="${SLUICE_SHARED_DIR:-$ROOT/../shared}"
PYTHON="$ROOT/.venv/bin/python"
RUNS="${RUNS:-3}"
CHUNK_BYTES="${CHUNK_BYTES:-0}"
WORK="$BUILD_DIR/tokenizer_bench"
mkdir -p "$WORK"
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

echo "== building tokenizer_bench in $BUILD_DIR"
BENCH="$BUILD_DIR/bin/tokenizer_bench"
if ! cmake --build "$BUILD_DIR" --target tokenizer_bench -- -j2 >"$WORK/build.log" 2>&1; then
  [[ -x "$BENCH" ]] || { cat "$WORK/build.log"; exit 1; }
  echo "warning: build failed (see $WORK/build.log); using the existing $BENCH"
fi

echo "== corpus"
python3 "$ROOT/bench/tokenizer/make_corpus.py" "$WORK/corpus.py.txt" \
  "$(( ${CORPUS_MB:-8} * 1000000 ))"

declare -a NAMES=(tiny llama3_1 qwen3 llama2)
declare -A DIRS=(
  [tiny]="$ROOT/models/sluice-tiny-code"
  [llama3_1]="$SHARED/fixtures/tokenizers/llama3_1"
  [qwen3]="$SHARED/fixtures/tokenizers/qwen3"
  [llama2]="$SHARED/fixtures/tokenizers/llama2"
)
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

TABLE=""
for name in "${NAMES[@]}"; do
  dir="${DIRS[$name]}"
  echo "== $name: sluice"
  "$BENCH" --tokenizer "$dir" --corpus "$WORK/corpus.py.txt" --runs "$RUNS" \
    --ids-out "$WORK/$name.sluice.ids" --chunk-bytes "$CHUNK_BYTES" | tee "$WORK/$name.sluice.log"
  ours="$(grep '^result' "$WORK/$name.sluice.log")"
  echo "== $name: huggingface tokenizers"
  "$PYTHON" "$ROOT/bench/tokenizer/hf_encode.py" "$dir/tokenizer.json" \
    "$WORK/corpus.py.txt" "$RUNS" "$WORK/$name.hf.ids" "$CHUNK_BYTES" | tee "$WORK/$name.hf.log"
  theirs="$(grep '^result' "$WORK/$name.hf.log")"
  same="no"
  cmp -s "$WORK/$name.sluice.ids" "$WORK/$name.hf.ids" && same="yes"
  TABLE+="$(printf '%-9s %10s %10s %8s %10s %10s %8s %10s %s' "$name" \
    "$(field mb_per_s_best "$ours")" "$(field mb_per_s_best "$theirs")" \
    "$(awk "BEGIN{printf \"%.2fx\", $(field mb_per_s_best "$ours")/$(field mb_per_s_best "$theirs")}")" \
    "$(field mb_per_s_cold "$ours")" "$(field mb_per_s_cold "$theirs")" \
    "$(awk "BEGIN{printf \"%.2fx\", $(field mb_per_s_cold "$ours")/$(field mb_per_s_cold "$theirs")}")" \
    "$(field num_tokens "$ours")" "$same")"$'\n'
done

echo
echo "Encode MB/s, one thread, chunk bytes $CHUNK_BYTES (0 = whole corpus) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores)"
printf '%-9s %10s %10s %8s %10s %10s %8s %10s %s\n' tokenizer sluice hf ratio \
  sluice_cold hf_cold ratio tokens same_ids
printf '%s' "$TABLE"
