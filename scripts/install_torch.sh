#!/usr/bin/env bash
# Installs torch into .venv-torch (for the FP8 end-to-end suite, which quantizes its
# checkpoints with it), once per version of scripts/requirements-torch.txt. Called by
# run_tests.sh.
exec bash "$(dirname "$0")/make_venv.sh" .venv-torch scripts/requirements-torch.txt \
  "torch (about 5 GB with its CUDA libraries)"
