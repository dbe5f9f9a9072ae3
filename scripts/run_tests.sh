#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: the static checks (scripts/lint.sh), then pytest
# (slowest tests listed).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/lint.sh || exit 1

echo "[test] pytest (T4P_REQUIRE_MINKOWSKI=${T4P_REQUIRE_MINKOWSKI:-0})"
.venv/bin/python -m pytest --durations=15 --timeout=1200 "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "[test] error: pytest collected no tests (exit code 5): the suite is misconfigured" >&2
  exit 1
fi
exit $rc
