#!/usr/bin/env bash
# Installs lm-evaluation-harness and LangChain into .venv-eval (for the end-to-end
# suites that drive them), once per version of scripts/requirements-eval.txt. Called by
# run_tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-eval
REQ=scripts/requirements-eval.txt
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating Python venv in $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[install] installing lm-evaluation-harness"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  echo "$want" >"$stamp"
fi
