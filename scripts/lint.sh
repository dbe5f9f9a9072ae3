#!/usr/bin/env bash
# The static checks, as `make lint` and scripts/run_tests.sh (hence `make test` and CI) run them:
# ruff, the type checker (mypy on t4p/, settings in pyproject.toml) and the import contracts
# (import-linter: the layers of docs/architecture.md, who may import MinkowskiEngine / Ray / MLflow
# / Optuna, no cycles). Stops at the first failing check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "[lint] ruff check"
.venv/bin/ruff check t4p sweeps bench scripts tests

echo "[lint] mypy (t4p/)"
.venv/bin/mypy

echo "[lint] import contracts (lint-imports)"
.venv/bin/lint-imports --no-logo
