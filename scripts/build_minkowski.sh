#!/usr/bin/env bash
# Build (once) and install MinkowskiEngine 0.5.4 into the project's venv.
#
# The wheel is cached under $T4P_CACHE/wheels/<key>/ (default ~/.cache/t4p), keyed by the ME
# version, torch version, Python version, CPU/CUDA (CUDA version + target archs) and a hash of
# the patch set, so a rerun or a fresh clone on the same machine installs it in seconds.
# A failed build prints the cause and the log path and exits 0 with a warning: the pure-PyTorch
# sparse backend keeps working (CI sets T4P_REQUIRE_MINKOWSKI=1 so ME tests then fail loudly).
#
# Usage: scripts/build_minkowski.sh [VENV_PYTHON] [--cached-only]
#   --cached-only: install the cached wheel if there is one, never compile (the demo's set-up)
set -euo pipefail

PY="${1:-.venv/bin/python}"
cached_only=0
[[ "${2:-}" == "--cached-only" ]] && cached_only=1
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
ME_VERSION="0.5.4"
ME_SHA256="b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/progress.sh"
CACHE="${T4P_CACHE:-$HOME/.cache/t4p}"
START=$SECONDS

say() { echo "[build_minkowski] $*"; }

torch_version="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
py_version="$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"
# The build recipe that changes the binary: the patch set and the setup.py flags (below).
BUILD_RECIPE="bdist_wheel --blas=openblas; NVTX_DISABLE"
patch_hash="$( (cat "$HERE/patch_minkowski.py"; echo "$BUILD_RECIPE") | sha256sum | cut -c1-12)"

# CUDA where a toolkit and a GPU are present; T4P_ME_CUDA=1 forces a CUDA build without a GPU
# (a cluster head building for its workers: set TORCH_CUDA_ARCH_LIST), T4P_ME_CUDA=0 forces CPU.
flavour="cpu"
want_cuda="${T4P_ME_CUDA:-auto}"
if [[ "$want_cuda" == auto ]] && command -v nvcc >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  want_cuda=1
fi
if [[ "$want_cuda" == 1 ]]; then
  command -v nvcc >/dev/null 2>&1 || { say "error: T4P_ME_CUDA=1 but nvcc is not on PATH"; exit 1; }
  cuda_version="$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
  archs="${TORCH_CUDA_ARCH_LIST:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | paste -sd';')}"
  [[ -n "$archs" ]] || { say "error: set TORCH_CUDA_ARCH_LIST (no GPU visible to read it from)"; exit 1; }
  flavour="cu${cuda_version}-sm${archs//[;. ]/_}"
fi
key="me${ME_VERSION}-torch${torch_version}-${py_version}-${flavour}-p${patch_hash}"
wheel_dir="$CACHE/wheels/$key"
stamp=".venv/.minkowski-$key"

if [[ -f "$stamp" ]] && "$PY" -c 'import MinkowskiEngine' >/dev/null 2>&1; then
  say "MinkowskiEngine $ME_VERSION already installed ($key)"
  exit 0
fi

install_cached_wheel() {
  local wheel
  wheel="$(ls "$wheel_dir"/*.whl 2>/dev/null | head -n1 || true)"
  [[ -n "$wheel" ]] || return 1
  say "installing cached wheel $(basename "$wheel") ($key)"
  "$PY" -m pip install --quiet --no-deps --force-reinstall "$wheel"
  "$PY" -W ignore -c 'import MinkowskiEngine' >/dev/null
  rm -f .venv/.minkowski-*
  touch "$stamp"
  say "done in $((SECONDS - START)) s"
}

install_cached_wheel && exit 0
if [[ $cached_only == 1 ]]; then
  say "not built: the demo runs the pure-PyTorch sparse backend; 'make minkowski' (or 'make test') builds it"
  say "once (~10 min on 2 cores) and caches the wheel under $CACHE/wheels"
  exit 0
fi

# ---------------------------------------------------------------- build from the sdist
ensure_openblas() {
  if [[ -e /usr/include/x86_64-linux-gnu/cblas.h || -e /usr/include/cblas.h || -e /usr/include/openblas/cblas.h ]] \
      || dpkg -s libopenblas-dev >/dev/null 2>&1; then
    return 0
  fi
  say "installing libopenblas-dev (system package, needed to build and run MinkowskiEngine)"
  local sudo=""
  [[ "$(id -u)" != "0" ]] && sudo="sudo"
  $sudo apt-get install -y libopenblas-dev >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y libopenblas-dev >/dev/null 2>&1; }
}

build() {
  local tree log
  log="$CACHE/logs/minkowski-$key.log"
  # The build tree persists under the cache until a wheel comes out, so an interrupted or failed
  # build resumes incrementally (the patched setup.py no longer wipes ./build).
  tree="$CACHE/build/$key/MinkowskiEngine-$ME_VERSION"
  mkdir -p "$CACHE/logs" "$CACHE/sdist" "$wheel_dir" "$CACHE/build/$key"
  : > "$log"

  rm -f "$wheel_dir/FAILED" "$wheel_dir/DONE"
  ensure_openblas || { say "cannot install libopenblas-dev (apt-get failed)"; return 1; }
  local sdist="$CACHE/sdist/MinkowskiEngine-$ME_VERSION.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    say "downloading the MinkowskiEngine $ME_VERSION source distribution"
    local dl
    dl="$(mktemp -d)"
    # pip reads the sdist's metadata by running setup.py, which needs torch, BLAS and the
    # stdlib distutils (numpy.distutils breaks with current setuptools otherwise).
    SETUPTOOLS_USE_DISTUTILS=stdlib "$PY" -m pip download --quiet --no-deps --no-build-isolation \
      --no-binary :all: "MinkowskiEngine==$ME_VERSION" -d "$dl" >>"$log" 2>&1 || return 1
    mv "$dl"/*.tar.gz "$sdist" && rm -rf "$dl"
  fi
  echo "$ME_SHA256  $sdist" | sha256sum -c --quiet >>"$log" 2>&1 \
    || { say "checksum mismatch for $sdist (removed; rerun to download again)"; rm -f "$sdist"; return 1; }

  if [[ ! -f "$tree/.t4p-patched" ]]; then
    rm -rf "$tree"
    tar xzf "$sdist" -C "$CACHE/build/$key"
    "$PY" "$HERE/patch_minkowski.py" "$tree" | tee -a "$log"
    touch "$tree/.t4p-patched"
  fi

  local flags=(--blas=openblas)
  if [[ "$flavour" == cpu ]]; then
    flags+=(--cpu_only)
  else
    flags+=(--force_cuda)
    export TORCH_CUDA_ARCH_LIST="$archs"
    export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -DNVTX_DISABLE"
  fi
  say "compiling ($flavour, MAX_JOBS=${MAX_JOBS:-2})"
  rm -rf "$tree/dist"
  local expected="~10 min on 2 idle cores"
  [[ "$flavour" == cpu ]] || expected="25-40 min"
  run_logged build_minkowski "compiling MinkowskiEngine" "$expected" "$log.compile" \
    bash -c 'cd "$1" && shift && MAX_JOBS="${MAX_JOBS:-2}" "$@"' _ "$tree" "$PY" setup.py bdist_wheel "${flags[@]}" -d dist \
    || { cat "$log.compile" >>"$log"; return 1; }
  cat "$log.compile" >>"$log" && rm -f "$log.compile"
  # setuptools may spell the file name in lower case (minkowskiengine-0.5.4-...).
  cp "$tree"/dist/*.whl "$wheel_dir/" || return 1
  echo "built on $(hostname) at $(date -u +%FT%TZ)" >"$wheel_dir/DONE"  # cluster/wait_for_wheel.sh
  rm -rf "$CACHE/build/$key"
  say "built $(basename "$(ls "$wheel_dir"/*.whl)") in $((SECONDS - START)) s"
}

if build && install_cached_wheel; then
  exit 0
fi
log="$CACHE/logs/minkowski-$key.log"
say "WARNING: MinkowskiEngine build failed; the 'torch' sparse backend still works."
mkdir -p "$wheel_dir" && echo "build failed on $(hostname) at $(date -u +%FT%TZ); log: $log" >"$wheel_dir/FAILED"
say "cause (last lines of $log):"
tail -n 15 "$log" 2>/dev/null | sed 's/^/    /' || true
exit 0
