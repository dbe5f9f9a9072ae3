"""Ablation planner and stage store: no Ray, no MLflow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from t4p.recipes import get_recipe
from t4p.sweep.plan import plan_ablation
from t4p.sweep.stages import StageStore, stage_key


def _configs(rows="T5-1,T5-2,T5-3,T5-4,T5-5,T6,C", seeds="0,1,2"):
    ft = get_recipe("s3dis_semseg", [f"sweep.rows={rows}", f"sweep.seeds={seeds}"])
    pt = get_recipe("pretrain_scannet")
    return ft, pt


def test_full_grid_needs_three_pretrainings_per_seed(tmp_path):
    ft, pt = _configs()
    plan = plan_ablation(ft, pt, StageStore(tmp_path / "stages"))
    assert len(plan.trials) == 7 * 3
    per_seed = {}
    for stage in plan.stages.values():
        per_seed.setdefault(stage.seed, []).append(sorted(stage.rows))
    # by hand from SPEC.md: T5-3/4/5 share one; T6 and C have their own
    assert {s: sorted(r) for s, r in per_seed.items()} == {
        s: [["C"], ["T5-3", "T5-4", "T5-5"], ["T6"]] for s in (0, 1, 2)
    }
    assert sum(t.stage is None for t in plan.trials) == 2 * 3  # T5-1, T5-2 from scratch
    assert plan.fits == 21 + 9
    assert plan.steps_saved_by_reuse() == 2 * 3 * pt.train.max_steps  # 5 rows need one, 3 run


def test_stage_key_ignores_where_it_runs_but_not_what_it_learns():
    pt = get_recipe("smoke_pretrain")
    key = stage_key(pt, 0)
    assert key == stage_key(get_recipe("smoke_pretrain", ["train.out_dir=/elsewhere", "data.loader_workers=2"]), 0)
    assert key != stage_key(pt, 1)
    assert key != stage_key(get_recipe("smoke_pretrain", ["loss.depth=false"]), 0)
    assert key.endswith("-s0")


def test_stored_stage_is_planned_as_reused(tmp_path):
    ft, pt = _configs("T5-3,T5-4", "0")
    store = StageStore(tmp_path)
    plan = plan_ablation(ft, pt, store)
    (key,) = plan.stages
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "checkpoint.pt").write_bytes(b"x")
    lock = store.claim(key)
    store.commit(key, src, {"seed": 0})
    lock.release()
    assert store.has(key) and (store.path(key) / "checkpoint.pt").read_bytes() == b"x"
    assert not list(tmp_path.glob(".*tmp*")), "temporary copies must be renamed away"
    replanned = plan_ablation(ft, pt, store)
    assert replanned.stages_to_run == [] and replanned.fits == 2
    assert store.claim(key) is None  # stored: nobody trains it again


def test_a_second_commit_of_a_stage_keeps_the_first_and_a_broken_target_is_an_error(tmp_path):
    """Two runs finishing the same stage: the first complete copy stays, the second leaves no temporary."""
    store = StageStore(tmp_path / "stages")
    for name, data in (("a", b"first"), ("b", b"second")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(data)
    store.commit("k-s0", tmp_path / "a", {"seed": 0})
    store.commit("k-s0", tmp_path / "b", {"seed": 0})
    assert (store.path("k-s0") / "checkpoint.pt").read_bytes() == b"first"
    assert store.info("k-s0")["key"] == "k-s0"
    (store.path("k-s1") / "junk").mkdir(parents=True)  # a folder without stage.json is not a stage
    with pytest.raises(OSError):
        store.commit("k-s1", tmp_path / "a", {"seed": 1})
    assert not list((tmp_path / "stages").glob(".tmp-*")), "temporary copies must be removed"


def test_lock_of_a_dead_owner_is_taken_over_and_a_live_one_is_not(tmp_path):
    store = StageStore(tmp_path)
    live = store.try_claim("k-s0")
    assert live is not None and store.try_claim("k-s0") is None  # we (alive) hold it
    live.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "k-s1.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "time": 0}))
    lock = store.try_claim("k-s1")
    assert lock is not None and lock.owner["pid"] == os.getpid()
    assert json.loads((tmp_path / "k-s1.lock").read_text())["pid"] == os.getpid()


def test_unknown_row_names_the_key():
    ft, pt = _configs("T5-9", "0")
    with pytest.raises(ValueError, match="sweep.rows.*T5-9"):
        plan_ablation(ft, pt, StageStore("unused"))


def test_scripts_help_and_dry_run_plan_without_side_effects(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    for script in ("ablation.py", "search.py", "report.py"):
        out = subprocess.run([sys.executable, str(repo / "sweeps" / script), "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout
    out = subprocess.run([sys.executable, str(repo / "sweeps" / "ablation.py"), "--demo", "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fine-tuning trials: 14" in out.stdout and "distinct pre-trainings: 6 (6 to run)" in out.stdout
    assert "Ray Train fits: 20" in out.stdout and "cpu_hours" in out.stdout
    # where everything will go (issue 18): absolute paths under the folder it was started in
    assert f"trial checkpoints and results (Ray storage): {tmp_path.resolve() / 'ray_results'}" in out.stdout
    assert f"pre-training stages: {tmp_path.resolve() / 't4p_stages'}" in out.stdout
    assert f"sweep state: {tmp_path.resolve() / 'ray_results' / 't4p_sweeps' / 't4p-demo-ablation.json'}" in out.stdout
    assert list(tmp_path.iterdir()) == [], "a dry run must not write anything"


def test_search_domains_are_typed_by_the_config():
    from ray.tune.search.sample import Categorical, Float

    from t4p.sweep.search import parse_domain

    key, dom = parse_domain("model.n_ctx=choice:4,8")
    assert key == "model.n_ctx" and isinstance(dom, Categorical) and dom.categories == [4, 8]
    key, dom = parse_domain("optim.lr=log:1e-3:0.1")
    assert isinstance(dom, Float) and dom.lower == 1e-3 and dom.upper == 0.1
    with pytest.raises(ValueError, match="optim.lrr"):
        parse_domain("optim.lrr=log:1:2")
    with pytest.raises(ValueError, match="model.n_ctx"):
        parse_domain("model.n_ctx=choice:a,b")


def test_start_points_are_typed_and_cover_the_space():
    from t4p.sweep.search import parse_domain, parse_start

    space = dict([parse_domain("optim.lr=log:1e-4:0.5"), parse_domain("model.n_ctx=choice:4,8")])
    assert parse_start("optim.lr=0.05, model.n_ctx=8", space) == {"optim.lr": 0.05, "model.n_ctx": 8}
    with pytest.raises(ValueError, match="missing model.n_ctx"):
        parse_start("optim.lr=0.05", space)
    with pytest.raises(ValueError, match="'optim.weight_decay' is not a searched key"):
        parse_start("optim.lr=0.05,model.n_ctx=8,optim.weight_decay=0", space)
    with pytest.raises(ValueError, match="model.n_ctx"):
        parse_start("optim.lr=0.05,model.n_ctx=eight", space)
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_start("optim.lr", space)


@pytest.mark.parametrize("task, recipe, classes, train_task", [
    ("semseg", "s3dis_semseg", "s3dis13", "semseg"),
    ("insseg", "s3dis_insseg", "s3dis13", "insseg"),
    ("det-sunrgbd", "votenet_sunrgbd", "sunrgbd10", "det"),
    ("det-scannet", "votenet_scannet", "scannet18", "det"),
])
def test_task_flag_picks_the_recipe_and_the_grid_applies(tmp_path, task, recipe, classes, train_task):
    import argparse

    from t4p.sweep.cli import add_common_args, build_configs

    parser = argparse.ArgumentParser()
    add_common_args(parser, pretrain_recipe="pretrain_scannet")
    ft, pt = build_configs(parser.parse_args(["--benchmark", task, "--rows", "T5-1,T5-5", "--seeds", "0"]))
    assert (ft.sweep.benchmark, ft.train.task, ft.data.classes) == (task, train_task, classes)
    assert ft.train.max_steps == get_recipe(recipe).train.max_steps
    plan = plan_ablation(ft, pt, StageStore(tmp_path / "stages"))
    assert [(t.row, t.cfg.model.tqm, t.cfg.model.prompt_learning, t.cfg.train.task) for t in plan.trials] == [
        ("T5-1", False, False, train_task), ("T5-5", True, True, train_task)]
    # the pre-training does not depend on the downstream task: one stage, shared across tasks
    semseg_plan = plan_ablation(*_configs("T5-5", "0"), StageStore(tmp_path / "stages"))
    assert list(plan.stages) == list(semseg_plan.stages)


def test_task_and_recipe_must_agree():
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "sweeps" / "ablation.py"),
         "--benchmark", "insseg", "--recipe", "smoke_semseg", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "sweep.benchmark=insseg needs a recipe with train.task=insseg" in completed.stderr
    assert "this one has train.task=semseg" in completed.stderr
    from t4p.sweep.benchmarks import check_benchmark

    with pytest.raises(ValueError, match="sweep.benchmark=det-scannet needs data.classes=scannet18; got sunrgbd10"):
        check_benchmark(get_recipe("votenet_sunrgbd", ["sweep.benchmark=det-scannet"]))


def test_default_rows_are_the_whole_grid_so_a_new_row_is_one_edit(tmp_path):
    """sweep.rows=() plans every row of t4p.sweep.rows in its order: a row added there runs by default."""
    from t4p.sweep.rows import ABLATION_ROWS, RowSpec

    ft, pt = _configs(rows="", seeds="0")
    assert ft.sweep.rows == ()
    plan = plan_ablation(ft, pt, StageStore(tmp_path / "stages"))
    assert [t.row for t in plan.trials] == list(ABLATION_ROWS)
    assert list(ABLATION_ROWS)[:7] == ["T5-1", "T5-2", "T5-3", "T5-4", "T5-5", "T6", "C"]  # the paper's, first
    extra = RowSpec("X", "a user's row", ("model.tqm=false",), None)
    ABLATION_ROWS["X"] = extra
    try:
        assert [t.row for t in plan_ablation(ft, pt, StageStore(tmp_path / "stages")).trials][-1] == "X"
    finally:
        del ABLATION_ROWS["X"]


def test_concurrency_defaults_to_what_the_cluster_allows():
    """sweep.max_concurrent=0 (the default) leaves the limit to the trials' resource requests (issue 18: a fixed 2
    capped a 32-GPU cluster at two trials); a negative value is a config error."""
    from t4p.config import ConfigError, apply_overrides
    from t4p.recipes import get_recipe
    from t4p.sweep.driver import concurrency_text, max_concurrent

    cfg = get_recipe("s3dis_semseg")
    assert cfg.sweep.max_concurrent == 0
    assert concurrency_text(cfg) == "as many as the cluster's resources allow"
    cluster = {"CPU": 64.0, "GPU": 32.0}
    assert max_concurrent(cfg, cluster) == 64  # one worker of one CPU per trial
    assert max_concurrent(apply_overrides(cfg, ["sweep.gpus_per_trial=1"]), cluster) == 32
    assert max_concurrent(apply_overrides(cfg, ["sweep.gpus_per_trial=0.5"]), cluster) == 64
    assert max_concurrent(apply_overrides(cfg, ["sweep.workers_per_trial=2", "sweep.cpus_per_worker=0.5"]),
                          {"CPU": 3.0}) == 3
    assert max_concurrent(apply_overrides(cfg, ["sweep.gpus_per_trial=4"]), {"CPU": 8.0, "GPU": 2.0}) == 1
    assert max_concurrent(apply_overrides(cfg, ["sweep.max_concurrent=3"]), cluster) == 3
    with pytest.raises(ConfigError, match="sweep.max_concurrent"):
        get_recipe("s3dis_semseg", ["sweep.max_concurrent=-1"])
    with pytest.raises(ConfigError, match="sweep.checkpoints_to_keep"):
        get_recipe("s3dis_semseg", ["sweep.checkpoints_to_keep=0"])


@pytest.mark.parametrize(("args", "expected"), [
    # a row that needs CLIP text (T5-2: TQM) with weights that are not there: refused before any trial starts
    (["--recipe", "smoke_semseg", "--rows", "T5-2", "model.clip.weights={tmp}/nowhere/RN50.pt"],
     ["model.clip.weights=", "nowhere/RN50.pt", "no such file"]),
    # a real dataset without data.root
    (["--recipe", "s3dis_semseg", "--rows", "T5-1"], ["data.dataset='s3dis-raw' needs data.root"]),
])
def test_the_sweep_checks_clip_weights_and_data_before_any_trial(tmp_path, args, expected):
    """Pre-flight (issue 18): one clear error from the driver, exit 2, no MLflow run and no Ray trial."""
    repo = Path(__file__).resolve().parents[1]
    argv = [sys.executable, str(repo / "sweeps" / "ablation.py"), "--pretrain-recipe", "smoke_pretrain", "--seeds",
            "0", "--num-cpus", "1", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for text in expected:
        assert text in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "mlruns").exists(), "no MLflow run may be opened before the pre-flight passes"
    assert not list(tmp_path.glob("ray_results/*-T5-*")), "no trial may start"
