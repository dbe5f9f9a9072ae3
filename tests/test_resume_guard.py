"""A run directory is resumed only under a config that trains the same thing (``train.resume``).

Oracle: the files of the first run, byte for byte, after a refused resume; the differing keys named
in the error are the ones the test changed (and only those).
"""

from __future__ import annotations

import pytest

from t4p.config import ConfigError, training_differences
from t4p.recipes import get_recipe
from t4p.train.loop import run

BASE = ["train.max_steps=2", "train.checkpoint_every=2", "train.eval_every=2", "model.sparse_backend=torch",
        "train.device=cpu"]


def _files(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and "prepared" not in p.parts and "synthetic" not in str(p)}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run(get_recipe("smoke_semseg", [*BASE, f"train.out_dir={out}"]))
    return out


def test_resume_under_another_training_config_is_refused_and_nothing_is_touched(first_run):
    before = _files(first_run)
    cfg = get_recipe("smoke_semseg", [*BASE, f"train.out_dir={first_run}", "optim.lr=0.05", "train.seed=5",
                                      "train.max_steps=3"])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    message = str(err.value)
    assert "optim.lr: 0.1 -> 0.05" in message and "train.seed: 0 -> 5" in message
    assert "max_steps" not in message  # extending the run is allowed
    assert _files(first_run) == before


def test_longer_run_and_other_cadence_resume(first_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    metrics = run(get_recipe("smoke_semseg", [*BASE, f"train.out_dir={out}", "train.max_steps=3",
                                              "train.eval_every=3", "train.log_every=1"]))
    assert metrics["resumed_from_step"] == 2 and metrics["step"] == 3


def test_force_resumes_and_never_refuses(first_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    with pytest.raises(ConfigError, match="train.resume=never"):
        run(get_recipe("smoke_semseg", [*BASE, f"train.out_dir={out}", "train.resume=never"]))
    forced = run(get_recipe("smoke_semseg", [*BASE, f"train.out_dir={out}", "train.max_steps=3",
                                             "optim.lr=0.05", "train.resume=force"]))
    assert forced["resumed_from_step"] == 2


def test_only_training_keys_count():
    a = get_recipe("smoke_semseg")
    b = get_recipe("smoke_semseg", ["train.max_steps=9", "tracking.uri=sqlite:///x.db", "sweep.seeds=4",
                                    "train.device=cpu", "model.sparse_backend=minkowski", "train.seed=3"])
    assert training_differences(a, b) == {"train.seed": (0, 3)}
