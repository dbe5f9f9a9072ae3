#!/usr/bin/env bash
# Idempotent set-up: .venv in the repo root, the package (editable, dev extras), MinkowskiEngine.
# A second run is a no-op within seconds: each step leaves a stamp keyed by what it depends on.
#
#   scripts/setup.sh                  everything (make setup, make test)
#   scripts/setup.sh --no-minkowski   no MinkowskiEngine build (make demo: its recipes run the torch
#                                     backend); a wheel already in the cache is still installed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/progress.sh

with_minkowski=1
case "${1:-}" in
  "") ;;
  --no-minkowski) with_minkowski=0 ;;
  *) echo "usage: scripts/setup.sh [--no-minkowski]" >&2; exit 2 ;;
esac

T0=$SECONDS
step_start=$SECONDS
say() { echo "[setup] $*"; }
took() { say "$1 ($((SECONDS - step_start)) s)"; step_start=$SECONDS; }

pick_python() {
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "[setup] error: Python 3.11 is required (torch 2.14.1 and the MinkowskiEngine wheel are built for it)" >&2
  return 1
}

if [[ ! -x .venv/bin/python ]]; then
  py="$(pick_python)"
  say "creating .venv with $py"
  "$py" -m venv .venv
  run_logged setup "upgrading pip in the venv" "under a minute" .venv/setup-pip.log \
    .venv/bin/python -m pip install --upgrade pip setuptools wheel
  took "created .venv"
fi

deps_key="$(cat pyproject.toml | sha256sum | cut -c1-12)"
if [[ ! -f ".venv/.deps-$deps_key" ]]; then
  say "installing t4p and its dependencies (torch 2.14.1, open_clip, Ray, MLflow, Optuna)"
  run_logged setup "installing dependencies" "about 2 min with pip's cache, several without" .venv/setup-pip.log \
    .venv/bin/python -m pip install -e '.[dev]'
  rm -f .venv/.deps-*
  touch ".venv/.deps-$deps_key"
  took "installed dependencies"
else
  took "dependencies up to date"
fi

if [[ $with_minkowski == 1 ]]; then
  scripts/build_minkowski.sh .venv/bin/python
  took "MinkowskiEngine ready"
else
  scripts/build_minkowski.sh .venv/bin/python --cached-only
  took "MinkowskiEngine step done"
fi
say "set-up finished in $((SECONDS - T0)) s"
