# Sourced by the set-up scripts: run a slow step with its output in a log, printing progress instead.
#
#   run_logged PREFIX WHAT EXPECTED LOG COMMAND...
#
# Prints "[PREFIX] WHAT: N s elapsed (expected EXPECTED; log: LOG)" every 30 s while COMMAND runs, so a
# user sees what is happening and for how long, not pip's or the compiler's own warnings. On failure
# the log's last lines are shown and COMMAND's exit code is returned.
run_logged() {
  local prefix="$1" what="$2" expected="$3" log="$4"
  shift 4
  mkdir -p "$(dirname "$log")"
  local start=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do  # ~30 s, in steps that notice the end quickly
      kill -0 "$pid" 2>/dev/null || break
      sleep 2
    done
    kill -0 "$pid" 2>/dev/null && echo "[$prefix] $what: $((SECONDS - start)) s elapsed (expected $expected; log: $log)"
  done
  local rc=0
  wait "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "[$prefix] $what failed (exit code $rc); last lines of $log:" >&2
    tail -n 20 "$log" | sed 's/^/    /' >&2
  fi
  return $rc
}
