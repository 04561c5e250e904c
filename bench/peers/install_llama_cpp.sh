#!/usr/bin/env bash
# Builds llama.cpp's llama-server and llama-bench from the llama-cpp-python source
# package on PyPI (which vendors llama.cpp) into $PEERS_DIR/llama.cpp (default
# ~/.cache/sluice-peers), and converts MODEL_DIR (default: the embedded model) to GGUF in
# f32 and bf16 with its convert_hf_to_gguf.py (run after install_vllm.sh, whose venv it
# borrows). Not part of CI (a long build).
#   bench/peers/install_llama_cpp.sh [MODEL_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${1:-$ROOT/models/sluice-tiny-code}
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/sluice-peers}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
SRC=$PEERS_DIR/llama-cpp-python-$VERSION
mkdir -p "$PEERS_DIR"
if [ ! -d "$SRC" ]; then
  echo "[peers] llama-cpp-python==$VERSION source package"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" \
    -d "$PEERS_DIR/dl"
  tar -xzf "$PEERS_DIR"/dl/llama_cpp_python-"$VERSION".tar.gz -C "$PEERS_DIR"
  mv "$PEERS_DIR/llama_cpp_python-$VERSION" "$SRC"
fi
LLAMA=$SRC/vendor/llama.cpp
echo "[peers] building llama-server and llama-bench (native CPU flags)"
cmake -S "$LLAMA" -B "$LLAMA/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF >/dev/null
cmake --build "$LLAMA/build" --target llama-server llama-bench -j "$(nproc)"
ln -sfn "$LLAMA/build/bin" "$PEERS_DIR/llama.cpp"
# The converter needs torch, transformers and gguf-py: vLLM's venv (install_vllm.sh) has
# the first two.
PY=${CONVERT_PYTHON:-$PEERS_DIR/vllm/bin/python}
"$PY" -m pip install -q "$LLAMA/gguf-py"
NAME=$(basename "$MODEL")
# The converter knows pre-tokenizers by the hash of a test encoding, and not the embedded
# model's (Llama-3's split pattern over a vocabulary of its own): LLAMA_PRE names it.
for type in f32 bf16; do
  out=$PEERS_DIR/$NAME-$type.gguf
  [ -f "$out" ] || "$PY" - "$LLAMA" "$MODEL" "$type" "$out" "${LLAMA_PRE:-llama-bpe}" <<'PY'
import runpy
import sys

llama, model, outtype, out, pre = sys.argv[1:]
sys.path.insert(0, llama)
import conversion.base as base  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = ["convert_hf_to_gguf.py", model, "--outtype", outtype, "--outfile", out]
runpy.run_path(f"{llama}/convert_hf_to_gguf.py", run_name="__main__")
PY
  echo "[peers] $out"
done
