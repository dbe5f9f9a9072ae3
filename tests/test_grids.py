"""User-defined ablation grids (YAML files of named rows), per-sweep state files, and the search's checks.

No Ray: the sweeps are planned (``--dry-run``, ``plan_ablation``) or stopped by their validation before
Ray starts; the one real run of a user grid is marked ``ray``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from t4p.sweep.rows import ABLATION_ROWS, RowSpec

REPO = Path(__file__).resolve().parents[1]

# Today's rows (t4p/sweep/rows.py before the grid became a YAML file), copied by hand: the paper grid file
# must reproduce them exactly, in this order.
_FT = ("model.tqm=true", "model.text_source=clip")
_PT_CLIP = ("model.tqm=true", "model.text_source=clip", "model.prompt_learning=false", "loss.depth=true")
TODAYS_ROWS = (
    RowSpec("T5-1", "SR-UNet34 from scratch (no TQM, no text)",
            ("model.tqm=false", "model.text_source=clip", "model.prompt_learning=false", "loss.aux=false"), None),
    RowSpec("T5-2", "+ TQM with fixed CLIP text, no pre-training",
            (*_FT, "model.prompt_learning=false", "loss.aux=false"), None),
    RowSpec("T5-3", "+ Text4Point pre-training", (*_FT, "model.prompt_learning=false", "loss.aux=false"), _PT_CLIP),
    RowSpec("T5-4", "+ auxiliary loss (Eq. 15-16)", (*_FT, "model.prompt_learning=false", "loss.aux=true"), _PT_CLIP),
    RowSpec("T5-5", "+ prompt learning (full Text4Point)",
            (*_FT, "model.prompt_learning=true", "loss.aux=true"), _PT_CLIP),
    RowSpec("T6", "random learnable text embeddings in pre-training and fine-tuning",
            ("model.tqm=true", "model.text_source=random", "model.prompt_learning=false", "loss.aux=true"),
            ("model.tqm=true", "model.text_source=random", "model.prompt_learning=false", "loss.depth=true")),
    RowSpec("C", "full Text4Point pre-trained without the depth loss (App. C)",
            (*_FT, "model.prompt_learning=true", "loss.aux=true"),
            ("model.tqm=true", "model.text_source=clip", "model.prompt_learning=false", "loss.depth=false")),
)


def _fields(row: RowSpec) -> tuple:
    return row.name, row.description, row.finetune, row.pretrain


def test_paper_grid_file_reproduces_todays_rows_exactly():
    from t4p.sweep.rows import PAPER_GRID, load_grid

    assert [_fields(r) for r in ABLATION_ROWS.values()] == [_fields(r) for r in TODAYS_ROWS]
    assert list(ABLATION_ROWS) == [r.name for r in TODAYS_ROWS]
    loaded = load_grid(PAPER_GRID)
    assert [_fields(r) for r in loaded.values()] == [_fields(r) for r in TODAYS_ROWS]
    assert load_grid("") == loaded == ABLATION_ROWS  # "" (sweep.grid's default) is the paper grid
    assert all(row.paper == row.name for row in loaded.values())  # each row refers to its own numbers


# --------------------------------------------------------------------------- grid files

TWO_ROWS = """\
description: two rows of my own
rows:
  - name: base
    description: from scratch, no TQM
    finetune: [model.tqm=false, loss.aux=false]
  - name: mine
    description: TQM + aux on my pre-training
    finetune: [model.tqm=true, loss.aux=true]
    pretrain: [model.tqm=true, loss.depth=false]
    paper: T5-4
"""


def _write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_user_grid_loads_in_its_order(tmp_path):
    from t4p.sweep.rows import load_grid

    grid = load_grid(_write(tmp_path, TWO_ROWS))
    assert list(grid) == ["base", "mine"]
    assert grid["base"] == RowSpec("base", "from scratch, no TQM", ("model.tqm=false", "loss.aux=false"), None)
    assert grid["mine"].pretrain == ("model.tqm=true", "loss.depth=false") and grid["mine"].needs_pretrain
    assert grid["mine"].paper == "T5-4" and grid["base"].paper is None


@pytest.mark.parametrize("text, expected", [
    ("rows: []\ncolumns: 3\n", "unknown top-level key 'columns'"),
    ("rows:\n  - name: a\n    finetune: [model.tqm=false]\n    fintune: [loss.aux=true]\n",
     "row 'a': unknown field 'fintune'"),
    ("rows:\n  - name: a\n    finetune: [model.tqm=false]\n  - name: a\n    finetune: [model.tqm=true]\n",
     "duplicate row name 'a'"),
    ("rows:\n  - name: a\n    finetune: [optim.lrr=0.5]\n", "row 'a': finetune: unknown config key 'optim.lrr'"),
    ("rows:\n  - name: a\n    pretrain: [loss.deptth=false]\n", "row 'a': pretrain: unknown config key 'loss.deptth'"),
    ("rows:\n  - name: a\n    finetune: [{model.tqm: false}]\n", "row 'a': finetune: override {'model.tqm': False}"
                                                                   " is not a string"),
    ("rows:\n  - name: a\n    finetune: [3]\n", "row 'a': finetune: override 3 is not a string"),
    ("rows:\n  - name: a\n    finetune: model.tqm=false\n", "row 'a': finetune: expected a list of KEY=VALUE"),
    ("rows:\n  - name: a\n    finetune: [model.tqm]\n", "row 'a': finetune: override 'model.tqm': expected KEY=VALUE"),
    ("rows:\n  - name: a\n    finetune: [model.tqm=maybe]\n", "row 'a': finetune: config key 'model.tqm'"),
    ("rows:\n  - name: a\n    paper: T9\n", "row 'a': paper: 'T9' is not a row of the paper's tables"),
    ("rows:\n  - description: no name\n", "row 1: expected a name"),
    ("rows:\n  - name: a\n    name: b\n", "duplicate key 'name'"),
    ("rows: {a: 1}\n", "rows: expected a list of rows"),
    ("rows: []\n", "rows: expected at least one row"),
    ("- just a list\n", "expected a mapping with 'rows'"),
    ("rows: [\n", "not valid YAML"),
])
def test_a_bad_grid_file_is_one_clear_error_naming_the_file(tmp_path, text, expected):
    from t4p.config import ConfigError
    from t4p.sweep.rows import load_grid

    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"grid {path}: "), str(err.value)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_grid_file_names_it(tmp_path):
    from t4p.config import ConfigError
    from t4p.sweep.rows import load_grid

    with pytest.raises(ConfigError, match=f"grid {tmp_path / 'nope.yaml'}: no such file"):
        load_grid(tmp_path / "nope.yaml")


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "sweeps" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_ablation_with_a_bad_grid_exits_2_naming_file_and_row(tmp_path):
    path = _write(tmp_path, "rows:\n  - name: a\n    finetune: [optim.lrr=0.5]\n")
    out = _script("ablation.py", "--demo", "--grid", str(path), "--dry-run", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("ablation.py: error: grid ") and str(path) in line and "optim.lrr" in line


def test_a_two_row_user_grid_is_planned_with_its_stage_reuse(tmp_path):
    """--grid FILE --dry-run: the plan names the grid's two rows; the row that needs pre-training gets one per seed."""
    path = _write(tmp_path, TWO_ROWS)
    out = _script("ablation.py", "--demo", "--grid", str(path), "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    trials = [line.split() for line in out.stdout.splitlines() if line.startswith("  ") and " seed " in line
              and "steps" in line and "rows" not in line]
    assert [(t[0], t[2]) for t in trials] == [("base", "0"), ("mine", "0"), ("base", "1"), ("mine", "1")]
    assert [t[-1] == "-" for t in trials] == [True, False, True, False]  # base from scratch, mine pre-trained
    assert "fine-tuning trials: 4" in out.stdout and "distinct pre-trainings: 2 (2 to run)" in out.stdout
    assert "rows mine steps" in out.stdout and "Ray Train fits: 6" in out.stdout
    assert f"grid: {path} (2 rows)" in out.stdout
    assert list(tmp_path.iterdir()) == [path], "a dry run must not write anything"


def test_rows_of_a_user_grid_are_checked_against_that_grid(tmp_path):
    path = _write(tmp_path, TWO_ROWS)
    out = _script("ablation.py", "--demo", "--grid", str(path), "--rows", "mine,T5-1", "--dry-run", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown row(s) ['T5-1']" in out.stderr and "expected some of base, mine" in out.stderr


def test_the_example_grid_in_sweeps_grids_is_valid():
    from t4p.sweep.rows import PAPER_GRID, load_grid

    examples = sorted((REPO / "sweeps" / "grids").glob("*.yaml"))
    assert REPO / "sweeps" / "grids" / "paper.yaml" in examples
    assert (REPO / "sweeps" / "grids" / "paper.yaml").resolve() == PAPER_GRID.resolve()  # one file, not a copy
    for path in examples:
        assert load_grid(path)


# --------------------------------------------------------------------------- one state file per sweep kind


def _sweep_cfgs(tmp_path: Path, *extra: str):
    from t4p.recipes import get_recipe

    common = [f"sweep.storage_path={tmp_path / 'ray'}", f"sweep.stage_store={tmp_path / 'stages'}",
              "sweep.experiment=shared", "sweep.seeds=0"]
    return get_recipe("smoke_semseg", [*common, *extra]), get_recipe("smoke_pretrain", common)


def _save(cfg, kind: str, sweep_id: str, extra: dict | None = None) -> None:
    from t4p.config import to_flat_dict
    from t4p.sweep.driver import save_state
    from t4p.sweep.trial import SweepContext

    ctx = SweepContext(sweep_id=sweep_id, experiment=cfg.sweep.experiment, storage_path=cfg.sweep.storage_path,
                       stage_store=cfg.sweep.stage_store, finetune_base=to_flat_dict(cfg))
    save_state(cfg, ctx, kind, extra or {})


def _resumed(cfg):
    from t4p.config import apply_overrides

    return apply_overrides(cfg, ["sweep.resume=true", "sweep.dry_run=true"])


def test_ablation_and_search_of_one_experiment_keep_their_own_state(tmp_path):
    """ablation.py --resume after a search (same experiment) resumes the ablation, or says there is none; and back."""
    from t4p.config import to_flat_dict
    from t4p.errors import UserError
    from t4p.sweep.driver import load_state, run_ablation
    from t4p.sweep.search import run_search

    ft, pt = _sweep_cfgs(tmp_path, "sweep.rows=T5-1,T5-3")
    _save(ft, "search", "s-search")
    with pytest.raises(UserError, match="no interrupted ablation of experiment 'shared'"):
        run_ablation(_resumed(ft), pt)  # was a KeyError on the search's state ('pretrain_base')

    _save(ft, "ablation", "s-ablation", {"pretrain_base": to_flat_dict(pt)})
    assert load_state(ft, "ablation")["context"]["sweep_id"] == "s-ablation"
    assert load_state(ft, "search")["context"]["sweep_id"] == "s-search"  # the ablation's did not overwrite it
    out = run_ablation(_resumed(ft), pt)  # --resume --dry-run: plans the saved sweep, starts nothing
    assert out["dry_run"] and [t.row for t in out["plan"].trials] == ["T5-1", "T5-3"]
    assert run_search(_resumed(ft))["dry_run"]

    other, _ = _sweep_cfgs(tmp_path, "sweep.experiment=other")
    _save(other, "ablation", "s-other", {"pretrain_base": to_flat_dict(pt)})
    with pytest.raises(UserError, match="no interrupted search of experiment 'other'"):
        run_search(_resumed(other))


def test_a_state_file_of_the_old_name_is_still_read_with_a_log_line(tmp_path, caplog):
    import json

    from t4p.errors import UserError
    from t4p.sweep.driver import load_state

    ft, _ = _sweep_cfgs(tmp_path)
    old = Path(ft.sweep.storage_path) / "t4p_sweeps" / "shared.json"  # before issue 19: one file per experiment
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"context": {"sweep_id": "s-old"}, "kind": "ablation"}))
    with caplog.at_level("INFO", logger="t4p.sweep.driver"):
        assert load_state(ft, "ablation")["context"]["sweep_id"] == "s-old"
    assert any(str(old) in r.getMessage() and "old name" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match=f"no interrupted search of experiment 'shared'.*{old} belongs to an ablation"):
        load_state(ft, "search")


# --------------------------------------------------------------------------- the search's rows, seeds and keys


def _run_script(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """``sweeps/<name>``'s main(argv) in this process (its imports are paid once per test session)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_script_{name[:-3]}", REPO / "sweeps" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    rc = module.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


SMOKE = ["--recipe", "smoke_semseg", "--pretrain-recipe", "smoke_pretrain", "--dry-run"]


@pytest.mark.parametrize("argv, expected", [
    (["--rows", "T5-9", "--seeds", "7", "pretrain.optim.lrr=0.5"],  # the line: exit 0 before
     "pre-training config (smoke_pretrain, pretrain.KEY=VALUE): unknown config key 'optim.lrr'"),
    (["--rows", "T5-9"], "unknown row(s) ['T5-9']"),
    (["--rows", "T5-1,T5-3"], "sweep.rows=T5-1,T5-3: a search tunes one row"),
    (["--seeds", "7,8"], "--seeds 7,8: a search runs one seed"),
    (["--seeds", "x"], "config key 'sweep.seeds': expected int, got 'x'"),
    (["pretrain.optim.lrr=0.5"], "pre-training config (smoke_pretrain, pretrain.KEY=VALUE): unknown config key"),
    (["--rows", "T5-3", "pretrain.optim.lrr=0.5"], "unknown config key 'optim.lrr'"),
    (["--rows", "T5-1", "pretrain.loss.depth=false"], "pretrain.loss.depth=false: row T5-1 trains from scratch"),
    (["pretrain.loss.depth=false"], "pretrain.loss.depth=false: the search tunes no row"),
    (["--rows", "T5-3", "finetune.init=/some/checkpoint"], "finetune.init=/some/checkpoint and row T5-3"),
])
def test_search_refuses_unknown_rows_seeds_and_keys(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run_script("search.py", [*SMOKE, *argv], capsys)
    assert rc == 2, out + err
    assert err.startswith("search.py: error: ") and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_search_rows_are_those_of_its_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, TWO_ROWS)
    rc, _, err = _run_script("search.py", [*SMOKE, "--grid", str(path), "--rows", "T5-3"], capsys)
    assert rc == 2 and "unknown row(s) ['T5-3']; expected some of base, mine" in err
    rc, out, err = _run_script("search.py", [*SMOKE, "--grid", str(path), "--rows", "mine"], capsys)
    assert rc == 0, err
    assert "starts from the pre-trained checkpoint of row mine" in out


def test_search_of_a_row_with_pretraining_starts_from_its_stage_and_says_so(tmp_path, monkeypatch, capsys):
    """--rows T5-3 --seeds 7: the trials fine-tune T5-3 from its pre-training (seed 7), run first unless stored."""
    from t4p.config import apply_overrides
    from t4p.recipes import get_recipe
    from t4p.sweep.driver import resolve_paths, share_data_caches
    from t4p.sweep.plan import pretrain_config
    from t4p.sweep.stages import StageStore, stage_key

    monkeypatch.chdir(tmp_path)
    rc, out, err = _run_script("search.py", [*SMOKE, "--rows", "T5-3", "--seeds", "7"], capsys)
    assert rc == 0, err
    # the same stage key as an ablation's T5-3 at seed 7: the two reuse each other's pre-training
    pt = resolve_paths(get_recipe("smoke_pretrain"))
    key = stage_key(pretrain_config(share_data_caches(pt, pt.sweep.storage_path), "T5-3", 7), 7)
    assert f"starts from the pre-trained checkpoint of row T5-3: stage {key} (not stored: pre-trained first)" in out
    assert "seed 7" in out and "Ray Train fits: at most 18" in out  # 16 trials + the test run + the pre-training

    store = StageStore(tmp_path / "t4p_stages")
    (tmp_path / "ckpt").mkdir()
    store.commit(key, tmp_path / "ckpt", {"seed": 7})
    rc, out, err = _run_script("search.py", [*SMOKE, "--rows", "T5-3", "--seeds", "7"], capsys)
    assert rc == 0, err
    assert f"stage {key} (stored: reused)" in out and "Ray Train fits: at most 17" in out

    rc, out, err = _run_script("search.py", [*SMOKE, "--rows", "T5-2", "--seeds", "7"], capsys)
    assert rc == 0, err
    assert "row T5-2 trains from scratch" in out

    from t4p.sweep.search import run_search  # in-process: the trial config carries the row and the checkpoint

    cfg = get_recipe("smoke_semseg", ["sweep.rows=T5-3", "train.seed=7", "sweep.dry_run=true"])
    result = run_search(cfg, pretrain=apply_overrides(pt, []))
    assert result["start_from"] == str(store.path(key))
    assert result["config"].finetune.init == str(store.path(key)) and result["config"].model.tqm


def test_the_paper_grid_ships_inside_the_package():
    """A wheel has no sweeps/ folder: the paper grid is package data of t4p.sweep (pyproject.toml)."""
    import tomllib

    import t4p.sweep
    from t4p.sweep.rows import PAPER_GRID

    package = Path(t4p.sweep.__file__).parent
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["t4p.sweep"]
    assert any(PAPER_GRID.relative_to(package).match(p) for p in patterns)


# --------------------------------------------------------------------------- a user grid through Ray

SCRATCH_ROWS = """\
rows:
  - name: plain
    description: no TQM
    finetune: [model.tqm=false, loss.aux=false]
  - name: tqm
    description: TQM, fixed CLIP text
    finetune: [model.tqm=true, loss.aux=false]
    paper: T5-2
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_two_row_user_grid_runs_through_ray_and_reports(tmp_path):
    """The smallest real sweep of a user grid: 2 rows from scratch x 1 seed, 2 steps each, on local Ray."""
    import csv

    from _ray_helpers import mlflow_runs, script_env

    path = _write(tmp_path, SCRATCH_ROWS)
    tiny = ["train.max_steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.num_threads=1"]
    cmd = [sys.executable, str(REPO / "sweeps" / "ablation.py"), "--demo", "--grid", str(path), "--seeds", "0",
           "--experiment", "mine", "--num-cpus", "2", *tiny]
    out = subprocess.run(cmd, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "mine")
    (parent,) = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    assert parent.data.params["sweep.grid"] == str(path) and parent.data.tags["rows"] == "plain,tqm"
    trials = {r.data.tags["row"]: r for r in runs if r.data.tags.get("stage") == "finetune"}
    assert sorted(trials) == ["plain", "tqm"] and all(r.info.status == "FINISHED" for r in runs)
    # each trial ran its row of this grid (not a paper row) and carries the row's paper reference
    assert (trials["plain"].data.params["model.tqm"], trials["tqm"].data.params["model.tqm"]) == ("False", "True")
    assert (trials["plain"].data.tags["paper_row"], trials["tqm"].data.tags["paper_row"]) == ("", "T5-2")
    report_md = Path(out.stdout.split("report: ")[1].split()[0])
    rows = {r["row"]: r for r in csv.DictReader(report_md.with_suffix(".csv").open())}
    assert list(rows) == ["plain", "tqm"] and rows["plain"]["mIoU (paper)"] == "n/a"
