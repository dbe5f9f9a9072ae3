"""Sweep overhead: a smoke grid on Ray vs the same fits run sequentially without Ray; what reuse saves.

Prints one JSON object:
- ``planner``: the full paper grid (7 rows x 3 seeds): distinct pre-trainings per seed (asserted
  to be 3), pre-training steps saved by stage reuse and the ratio to the steps without reuse;
- ``sequential``: each fit of the smoke grid run in-process with ``t4p.train.loop.run`` (seconds);
- ``ray``: the same grid through ``run_ablation`` (local Ray, Tune trials of TorchTrainer fits):
  wall time, per-fit seconds from the MLflow runs, the fixed per-fit overhead (Ray fit minus the
  same fit without Ray) and what it is as a share of a 5-minute trial;
- ``clip_feature_cache``: a pre-training run with a cold vs a warm CLIP feature cache (seconds).

    .venv/bin/python bench/sweep_overhead.py --rows T5-1,T5-3 --seeds 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch


def planner_figures() -> dict:
    from t4p.recipes import get_recipe
    from t4p.sweep.plan import plan_ablation
    from t4p.sweep.stages import StageStore

    ft = get_recipe("s3dis_semseg", ["sweep.seeds=0,1,2"])
    pt = get_recipe("pretrain_scannet")
    plan = plan_ablation(ft, pt, StageStore(tempfile.mkdtemp()))
    per_seed = {s: sum(st.seed == s for st in plan.stages.values()) for s in ft.sweep.seeds}
    assert all(n == 3 for n in per_seed.values()), f"expected 3 pre-trainings per seed, got {per_seed}"
    rows_needing = sum(len(st.rows) for st in plan.stages.values())
    without = rows_needing * pt.train.max_steps
    return {
        "pretrainings_per_seed": per_seed,
        "rows_needing_pretraining_per_seed": rows_needing // len(per_seed),
        "pretrain_steps_without_reuse": without,
        "pretrain_steps_with_reuse": plan.pretrain_steps(),
        "pretrain_steps_saved": plan.steps_saved_by_reuse(),
        "pretrain_step_ratio": plan.pretrain_steps() / without,
        "total_step_ratio": (plan.pretrain_steps() + plan.finetune_steps()) / (without + plan.finetune_steps()),
    }


def _configs(args, root: Path):
    from t4p.recipes import get_recipe
    from t4p.sweep.driver import share_data_caches

    tiny = [f"train.max_steps={args.steps}", f"train.eval_every={args.steps}",
            f"train.checkpoint_every={args.steps}", "train.num_threads=1"]
    sweep = [f"sweep.rows={args.rows}", f"sweep.seeds={args.seeds}", "sweep.workers_per_trial=1",
             "sweep.cpus_per_worker=1", f"sweep.storage_path={root / 'ray'}", f"sweep.stage_store={root / 'stages'}",
             "sweep.experiment=bench", f"tracking.uri=sqlite:///{root / 'mlruns' / 'mlflow.db'}"]
    ft = get_recipe("smoke_semseg", tiny + sweep)
    pt = get_recipe("smoke_pretrain", tiny + sweep)
    return share_data_caches(ft, str(root / "ray")), share_data_caches(pt, str(root / "ray"))


def sequential(args, root: Path) -> dict:
    """Every fit of the plan, one after the other, in this process (no Ray, no MLflow)."""
    from t4p.config import set_value
    from t4p.sweep.plan import plan_ablation
    from t4p.sweep.stages import StageStore
    from t4p.train.loop import run

    ft, pt = _configs(args, root)
    plan = plan_ablation(ft, pt, StageStore(root / "seq-stages"))
    times = {}
    for stage in plan.stages.values():
        set_value(stage.cfg, "train.out_dir", str(root / "seq" / stage.key))
        t0 = time.perf_counter()
        run(stage.cfg)
        times[f"pretrain-{stage.key}"] = time.perf_counter() - t0
    for trial in plan.trials:
        set_value(trial.cfg, "train.out_dir", str(root / "seq" / f"{trial.row}-s{trial.seed}"))
        if trial.stage:
            set_value(trial.cfg, "finetune.init", str(root / "seq" / trial.stage / "checkpoint"))
        t0 = time.perf_counter()
        run(trial.cfg)
        times[f"{trial.row}-s{trial.seed}"] = time.perf_counter() - t0
    return {"fits": len(times), "seconds": times, "total_s": sum(times.values())}


def with_ray(args, root: Path, seq: dict) -> dict:
    from t4p.sweep.driver import run_ablation
    from t4p.tracking import Tracker

    ft, pt = _configs(args, root)
    t0 = time.perf_counter()
    summary = run_ablation(ft, pt, num_cpus=args.num_cpus, report=False)
    wall = time.perf_counter() - t0
    tracker = Tracker(summary["tracking_uri"], "bench")
    fits = {}
    for r in tracker.find_runs(sweep_id=summary["sweep_id"]):
        if r.data.tags.get("stage") in ("pretrain", "finetune") and r.info.end_time:
            fits[r.data.tags["trial"]] = (r.info.end_time - r.info.start_time) / 1000
    seq_mean = seq["total_s"] / max(1, seq["fits"])
    overhead = sum(fits.values()) / max(1, len(fits)) - seq_mean
    return {
        "wall_s": wall,
        "fits": len(fits),
        "fit_seconds": fits,
        "fixed_overhead_per_fit_s": overhead,
        "overhead_share_of_5min_trial": overhead / (300 + overhead),
        "speedup_vs_sequential": seq["total_s"] / wall,
    }


def clip_cache(args, root: Path) -> dict:
    """A pre-training fit with a cold and then a warm CLIP feature cache (same settings)."""
    from t4p.recipes import get_recipe
    from t4p.train.loop import run

    cache = root / "clip-cache"
    out = {}
    for label in ("cold", "warm"):
        cfg = get_recipe("smoke_pretrain", [f"train.max_steps={args.steps}", f"train.eval_every={args.steps}",
                                            f"model.clip.cache_dir={cache}", "model.clip.feature_cache=true",
                                            f"train.out_dir={root / 'cache' / label}",
                                            f"data.root={root / 'ray' / 't4p_data' / 'synthetic'}",
                                            f"data.prepared_dir={root / 'ray' / 't4p_data' / 'prepared'}"])
        t0 = time.perf_counter()
        run(cfg)
        out[f"{label}_s"] = time.perf_counter() - t0
    out["warm_over_cold"] = out["warm_s"] / out["cold_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="T5-1,T5-3")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true", help="planner + sequential + cache figures only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="t4p-bench-"))
    result = {"machine": {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}, "planner": planner_figures()}
    # Training logs go to stderr so that stdout is exactly one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        result.update(run_measurements(args, root))
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


def run_measurements(args, root: Path) -> dict:
    out = {}
    try:
        out["sequential"] = sequential(args, root)
        out["clip_feature_cache"] = clip_cache(args, root)
        if not args.skip_ray:
            out["ray"] = with_ray(args, root, out["sequential"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
