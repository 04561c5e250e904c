#!/usr/bin/env bash
# Grammar engines side by side on one thread: Sluice's (engine/grammar) and xgrammar, on
# the structured-outputs suite's JSON Schemas (tests/e2e/structured/schemas.json) and a
# tokenizer's vocabulary (default: Llama-3.1's, 128k tokens), replaying the same token
# walks. Prints compile and per-token mask times (median, p99) and their ratios.
#   bench/grammar/compare.sh [BUILD=build] [TOKENIZER_DIR] [STEPS=64]
# Needs xgrammar (pip install xgrammar==0.2.9, which pulls torch) in PYTHON (default:
# .venv-eval/bin/python, which does not have it: install it there or point PYTHON elsewhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
TOKENIZER=${2:-../shared/fixtures/tokenizers/llama3_1}
STEPS=${3:-64}
PYTHON=${PYTHON:-.venv-eval/bin/python}
OUT=$(mktemp -d)
echo "== sluice: $BUILD/bin/grammar_bench ($TOKENIZER, $STEPS steps a schema)"
"$BUILD/bin/grammar_bench" "$TOKENIZER" tests/e2e/structured/schemas.json "$OUT" "$STEPS"
echo "== xgrammar on the same walks"
"$PYTHON" bench/grammar/xgrammar_bench.py "$OUT"
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
ours = json.load(open(f"{out}/sluice.json"))["results"]
peer = json.load(open(f"{out}/xgrammar.json"))["results"]
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]
ours_mask, peer_mask, ours_again, peer_again, ours_first, peer_first, whole = [], [], [], [], [], [], 0
for a, b in zip(ours, peer):
    n = len(b["mask_us"])  # the steps both engines reached
    ours_mask += a["mask_us"][:n]
    peer_mask += b["mask_us"]
    ours_again += a["again_us"][:len(b["again_us"])]
    peer_again += b["again_us"]
    # A first request's whole grammar cost: the compile and every mask of its walk.
    ours_first.append(a["compile_us"] + sum(a["mask_us"][:n]))
    peer_first.append(b["compile_us"] + sum(b["mask_us"]))
    whole += b["replayed"] == b["walk"]
rows = [("compile, median", statistics.median(r["compile_us"] for r in ours),
         statistics.median(r["compile_us"] for r in peer)),
        ("compile, p99", q([r["compile_us"] for r in ours], .99), q([r["compile_us"] for r in peer], .99)),
        ("mask per token, median", statistics.median(ours_mask), statistics.median(peer_mask)),
        ("mask per token, p99", q(ours_mask, .99), q(peer_mask, .99)),
        ("mask, 2nd request, median", statistics.median(ours_again), statistics.median(peer_again)),
        ("mask, 2nd request, p99", q(ours_again, .99), q(peer_again, .99)),
        ("compile + masks, median", statistics.median(ours_first), statistics.median(peer_first)),
        ("compile + masks, p99", q(ours_first, .99), q(peer_first, .99))]
print(f"{len(ours)} schemas, {len(ours_mask)} masks compared; xgrammar replayed {whole} walks whole")
print(f"{'':27} {'sluice us':>12} {'xgrammar us':>12} {'sluice/xgrammar':>16}")
for name, a, b in rows:
    print(f"{name:27} {a:12.1f} {b:12.1f} {a / b:16.2f}")
PY
rm -rf "$OUT"
