#!/usr/bin/env bash
# Run on every node by the cluster YAML's setup_commands: mount shared storage, set up t4p,
# and put the project's venv first on PATH (so `ray job submit -- python ...` uses it).
# Usage: cluster/node_setup.sh head|worker
set -euo pipefail
role="${1:?head or worker}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
set -a; source cluster/cluster.env; set +a

if [[ -n "${T4P_NFS}" ]] && ! mountpoint -q "$T4P_SHARED"; then
  sudo mkdir -p "$T4P_SHARED"
  sudo mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600 "$T4P_NFS" "$T4P_SHARED"
  sudo chown "$(id -u):$(id -g)" "$T4P_SHARED"
fi
mkdir -p "$T4P_SHARED"/{stages,mlflow,cache}

if [[ "$role" == head ]]; then
  # The head has the CUDA toolkit but no GPU: force the CUDA build for the workers' archs, once, on
  # all its cores. scripts/build_minkowski.sh leaves DONE or FAILED beside the wheel's cache key.
  T4P_ME_CUDA=1 MAX_JOBS="$(nproc)" make setup
elif cluster/wait_for_wheel.sh "$T4P_CACHE"; then
  make setup  # installs the head's wheel from the shared cache (seconds)
else
  make setup-core  # the head's build failed (or never came): the torch backend, no 25-40 min build here
fi

line="export PATH=$PWD/.venv/bin:\$PATH; set -a; source $PWD/cluster/cluster.env; set +a"
grep -qxF "$line" ~/.bashrc || echo "$line" >> ~/.bashrc
