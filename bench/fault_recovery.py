"""Fault recovery: work lost and recovery time when a training worker or a whole node dies mid-fit.

One smoke fine-tuning fit (``smoke_semseg``, 2-worker DDP on CPU, a checkpoint every
``--ckpt-every`` steps) runs as a Ray Train ``TorchTrainer`` with ``FailureConfig`` retries,
through ``t4p.sweep.trial.fit``, twice:

- ``worker_kill``: local Ray; the rank-0 worker SIGKILLs itself at ``--kill-step``
  (``train.kill_at_step``), mid checkpoint interval;
- ``node_kill``: two Ray nodes of one CPU each (``ray.cluster_utils.Cluster``: separate raylets
  on one machine), so the two workers are on different nodes; when rank 0 starts step
  ``--kill-step``, the second node is killed without grace (all its processes SIGKILLed) and a new
  node is added at once.

The loop is wrapped (``loop_fn``) to log, per worker process, its pid, the step it resumed from and
the time each step's batch is fetched. Prints one JSON object; per scenario:

- ``steps_redone`` = (last step started before the kill + 1) - the step the restarted workers
  resumed from, and ``work_lost`` = steps_redone / total steps; the target is
  ``steps_redone <= checkpoint_interval`` (``within_one_checkpoint_interval``);
- ``recovery_s``: from the kill (the killed worker's pid gone, or the node removed) to the first
  step of the restarted worker group (the last rank to fetch its first batch: DDP steps together),
  split into ``kill_to_loop_start_s`` (detection, new worker group) and ``loop_start_to_first_step_s``;
- ``step_s``: the median step time before the kill, for scale.

    .venv/bin/python bench/fault_recovery.py                 # both scenarios, ~3 min on 2 cores
    .venv/bin/python bench/fault_recovery.py --scenario worker
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

# --------------------------------------------------------------------------- instrumented loop (runs in the workers)


class _TimedLoader:
    """Logs the time each step's batch is fetched (``train.grad_accum=1``: one fetch per step)."""

    def __init__(self, loader, log, start_step: int):
        self.loader, self.log, self.start_step = loader, log, start_step

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            self.log("fetch", step=self.start_step + i)
            yield batch

    def __len__(self):
        return len(self.loader)


def timed_loop(events: str, cfg, ctx):
    """``t4p.train.loop.run`` with its events appended to the JSONL file ``events``."""
    from t4p.train import loop
    from t4p.train.checkpoint import load_checkpoint

    start = int(load_checkpoint(ctx.resume_dir)["step"]) if ctx.resume_dir else 0

    def log(event: str, **fields) -> None:
        row = {"event": event, "t": time.time(), "pid": os.getpid(), "rank": ctx.rank, **fields}
        with open(events, "a") as f:
            f.write(json.dumps(row) + "\n")

    log("start", resume_step=start)
    prepare = ctx.prepare_loader
    ctx.prepare_loader = lambda loader: _TimedLoader(prepare(loader), log, start)
    return loop.run(cfg, ctx)


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- one disturbed fit


def _config(args, root: Path, name: str, kill_step: int):
    from t4p.recipes import get_recipe

    return get_recipe("smoke_semseg", [
        f"train.max_steps={args.steps}", f"train.checkpoint_every={args.ckpt_every}",
        f"train.eval_every={args.steps}", "train.num_threads=1", "train.log_every=1", f"train.kill_at_step={kill_step}",
        "model.sparse_backend=torch", "data.loader_workers=0", "sweep.workers_per_trial=2",
        "sweep.cpus_per_worker=1", "sweep.max_failures=3",
        f"data.root={root / 'synth'}", f"data.prepared_dir={root / 'prepared'}", f"train.out_dir={root / name}",
    ])


def _fit_in_thread(cfg, root: Path, name: str, events: Path) -> tuple[threading.Thread, dict]:
    from t4p.sweep.trial import SweepContext, fit

    ctx = SweepContext(sweep_id="bench", experiment="bench", storage_path=str(root / "ray"), stage_store="",
                       finetune_base={}, loop_fn=functools.partial(timed_loop, str(events)))
    box: dict = {}

    def target():
        try:
            box["result"] = fit(cfg, name, ctx, None)
        except BaseException as err:  # noqa: BLE001 - reported in the JSON
            box["error"] = repr(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _wait(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def _figures(events: list[dict], t_kill: float, args) -> dict:
    before = [e for e in events if e["t"] < t_kill]
    after = [e for e in events if e["t"] >= t_kill]
    last_started = max(e["step"] for e in before if e["event"] == "fetch")
    resumed = min(e["resume_step"] for e in after if e["event"] == "start")
    first = {}
    for e in after:
        if e["event"] == "fetch":
            first.setdefault(e["rank"], e["t"])
    fetch0 = sorted(e["t"] for e in before if e["event"] == "fetch" and e["rank"] == 0)
    redone = last_started + 1 - resumed
    restarted = min(e["t"] for e in after if e["event"] == "start")
    return {
        "steps_total": args.steps,
        "checkpoint_interval": args.ckpt_every,
        "last_step_started_before_kill": last_started,
        "resumed_from_step": resumed,
        "steps_redone": redone,
        "work_lost": redone / args.steps,
        "within_one_checkpoint_interval": redone <= args.ckpt_every,
        "recovery_s": max(first.values()) - t_kill,
        "kill_to_loop_start_s": restarted - t_kill,  # failure detected, worker group and processes restarted
        "loop_start_to_first_step_s": max(first.values()) - restarted,  # model, data, checkpoint load
        "step_s": statistics.median(b - a for a, b in zip(fetch0, fetch0[1:])) if len(fetch0) > 1 else None,
        "restarts": sum(e["event"] == "start" for e in after) // 2,
    }


def _finish(thread: threading.Thread, box: dict, timeout: float) -> None:
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the fit did not finish within {timeout:.0f} s")
    if "error" in box:
        raise RuntimeError(f"the fit failed: {box['error']}")


def worker_kill(args, root: Path) -> dict:
    """train.kill_at_step on local Ray: rank 0 SIGKILLs itself."""
    import ray

    from t4p.sweep.driver import init_ray

    events = root / "worker.jsonl"
    init_ray(num_cpus=2)
    try:
        thread, box = _fit_in_thread(_config(args, root, "worker", args.kill_step), root, "worker", events)
        rank0 = _wait(lambda: next((e["pid"] for e in _events(events) if e["event"] == "start" and e["rank"] == 0),
                                   None), args.timeout, "rank 0 start")
        _wait(lambda: not _pid_alive(rank0), args.timeout, "rank 0 killed at train.kill_at_step", poll=0.01)
        t_kill = time.time()
        _finish(thread, box, args.timeout)
    finally:
        ray.shutdown()
    return {"how": f"train.kill_at_step={args.kill_step}: rank 0 SIGKILLs itself (local Ray, 2 CPUs)",
            **_figures(_events(events), t_kill, args)}


def node_kill(args, root: Path) -> dict:
    """Two one-CPU nodes; the second is killed (no grace) when rank 0 starts ``--kill-step``."""
    import ray
    from ray.cluster_utils import Cluster

    from t4p.sweep.driver import RAY_ENV

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    events = root / "node.jsonl"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        second = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, runtime_env={"env_vars": {k: os.environ[k] for k in RAY_ENV}})
        thread, box = _fit_in_thread(_config(args, root, "node", -1), root, "node", events)
        _wait(lambda: any(e["event"] == "fetch" and e["rank"] == 0 and e["step"] == args.kill_step
                          for e in _events(events)), args.timeout, f"rank 0 at step {args.kill_step}", poll=0.01)
        t_kill = time.time()
        cluster.remove_node(second, allow_graceful=False)
        cluster.add_node(num_cpus=1)
        _finish(thread, box, args.timeout)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"how": f"second of two 1-CPU Ray nodes killed when rank 0 started step {args.kill_step}; "
                   "a new node added at once", **_figures(_events(events), t_kill, args)}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["worker", "node", "both"], default="both")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ckpt-every", type=int, default=4)
    parser.add_argument("--kill-step", type=int, default=6, help="mid checkpoint interval: 2 steps to redo")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="t4p-bench-"))
    result: dict = {"machine": {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}}
    try:
        from t4p.sweep.driver import warm_data

        # Training logs go to stderr so that stdout is exactly one JSON object.
        with contextlib.redirect_stdout(sys.stderr):
            warm_data(_config(args, root, "warm", -1))
            if args.scenario in ("worker", "both"):
                result["worker_kill"] = worker_kill(args, root)
            if args.scenario in ("node", "both"):
                result["node_kill"] = node_kill(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0 if all(v.get("within_one_checkpoint_interval") for k, v in result.items() if k != "machine") else 1


if __name__ == "__main__":
    sys.exit(main())
