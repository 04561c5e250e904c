#!/usr/bin/env bash
# Makes Python venv VENV holding REQUIREMENTS, once per version of that file:
#   scripts/make_venv.sh VENV REQUIREMENTS WHAT   (WHAT names it in the log)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$1 REQ=$2 WHAT=$3
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating Python venv in $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[install] installing $WHAT"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  echo "$want" >"$stamp"
fi
