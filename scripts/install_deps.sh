#!/usr/bin/env bash
# Installs what building and testing Sluice needs on Debian 12. Idempotent: a second
# run installs nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  cmake ninja-build ccache g++ pkg-config make git
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libopenblas-dev libxxhash-dev libssl-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libboost-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus-cpp-dev prometheus wrk
  clang libclang-rt-14-dev clang-format
  python3 python3-venv python3-pip
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install] apt packages missing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python test tools (real peers: Hugging Face tokenizers, the openai client, pytest).
bash scripts/make_venv.sh .venv scripts/requirements-test.txt "Python test tools"
echo "[install] dependencies ready"
