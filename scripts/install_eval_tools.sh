#!/usr/bin/env bash
# Installs lm-evaluation-harness and LangChain into .venv-eval (for the end-to-end
# suites that drive them), once per version of scripts/requirements-eval.txt. Called by
# run_tests.sh.
exec bash "$(dirname "$0")/make_venv.sh" .venv-eval scripts/requirements-eval.txt \
  "lm-evaluation-harness"
