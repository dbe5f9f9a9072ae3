#!/usr/bin/env bash
# A worker waits for the head's CUDA MinkowskiEngine wheel in the shared cache instead of compiling
# for 25-40 minutes itself. scripts/build_minkowski.sh leaves a marker beside its cache key
# ($T4P_CACHE/wheels/<key>/): DONE with the wheel, FAILED when the build failed.
#
# Usage: cluster/wait_for_wheel.sh CACHE [TRIES] [INTERVAL_S]
# Exit: 0 a wheel is there (found case-insensitively: setuptools writes minkowskiengine-...whl),
#       1 the head's build FAILED (the worker should use the torch backend), 2 gave up waiting.
set -uo pipefail
cache="${1:?cache folder}"
tries="${2:-120}"
interval="${3:-30}"

shopt -s nullglob
for ((i = 1; i <= tries; i++)); do
  cuda_keys=("$cache"/wheels/*-cu*/)  # CUDA builds only: a key names its flavour (cpu | cu<version>-sm<archs>)
  wheel="" failed=""
  if ((${#cuda_keys[@]})); then  # (find with no folder would search the current one)
    wheel="$(find "${cuda_keys[@]}" -maxdepth 1 -iname 'minkowskiengine-*.whl' 2>/dev/null | head -n1)"
    failed="$(find "${cuda_keys[@]}" -maxdepth 1 -name FAILED 2>/dev/null | head -n1)"
  fi
  if [[ -n "$wheel" ]]; then
    echo "[wait_for_wheel] found the head's wheel: $wheel"
    exit 0
  fi
  if [[ -n "$failed" ]]; then
    echo "[wait_for_wheel] the head's MinkowskiEngine build failed ($failed: $(head -c 300 "$failed")); this worker" \
         "uses the pure-PyTorch sparse backend (model.sparse_backend=auto picks it)"
    exit 1
  fi
  echo "[wait_for_wheel] waiting for the head's MinkowskiEngine wheel in $cache/wheels ($i/$tries)"
  sleep "$interval"
done
echo "[wait_for_wheel] no wheel and no FAILED marker after $tries tries; this worker uses the pure-PyTorch backend"
exit 2
