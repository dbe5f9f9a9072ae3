"""The paper recipes train on the whole official training split (issue 15, H1/H2).

Oracles: the official S3DIS v1.2 room counts per area (44/40/23/49/68/48; the paper's Areas 1-4, 6
train, Area 5 tests) and the official detection train lists. Rooms are tiny (one annotation file of
three points) so the real reader and cache are used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from t4p.config import ConfigError, apply_overrides
from t4p.data.datasets import make_dataset
from t4p.recipes import get_recipe
from tests._data_helpers import S3DIS_ROOMS, write_tiny_s3dis


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory) -> Path:
    return write_tiny_s3dis(tmp_path_factory.mktemp("s3dis"), S3DIS_ROOMS)


def _names(ds) -> set[str]:
    return {f"{p.parent.name}/{p.stem}" for p in ds.files}


def _s3dis(root: Path, tmp: Path, *overrides: str):
    return get_recipe("s3dis_semseg", [f"data.root={root}", f"data.prepared_dir={tmp}", *overrides])


def test_s3dis_paper_recipe_trains_on_all_204_rooms_and_tests_on_68(s3dis_root, tmp_path):
    cfg = _s3dis(s3dis_root, tmp_path)
    assert cfg.data.val_fraction == 0.0
    train, test = make_dataset(cfg, "train"), make_dataset(cfg, "test")
    assert (len(train), len(test)) == (204, 68)
    assert {p.parent.name for p in test.files} == {"Area_5"}
    assert "Area_5" not in {p.parent.name for p in train.files}
    insseg = get_recipe("s3dis_insseg", [f"data.root={s3dis_root}", f"data.prepared_dir={tmp_path}"])
    assert len(make_dataset(insseg, "train")) == 204


def test_search_validates_on_training_areas_then_retrains_on_all_of_them(s3dis_root, tmp_path):
    base = _s3dis(s3dis_root, tmp_path)
    trial = search_trial_config(base)
    assert (trial.finetune.eval_split, trial.data.val_fraction) == ("val", base.sweep.val_fraction)
    train, val = _names(make_dataset(trial, "train")), _names(make_dataset(trial, "val"))
    assert not train & val and len(train) + len(val) == 204
    assert len(val) == round(0.2 * 204)
    assert all(not name.startswith("Area_5") for name in val)
    final = final_test_config(base, {"optim.lr": 0.05})
    assert (final.finetune.eval_split, final.optim.lr, final.data.val_fraction) == ("test", 0.05, 0.0)
    assert len(make_dataset(final, "train")) == 204


def test_search_with_validation_areas_keeps_them(s3dis_root, tmp_path):
    trial = search_trial_config(_s3dis(s3dis_root, tmp_path, "data.val_areas=6"))
    assert {p.parent.name for p in make_dataset(trial, "val").files} == {"Area_6"}
    assert len(make_dataset(trial, "train")) == 204 - 48


def test_validation_split_needs_a_fraction_or_areas(s3dis_root, tmp_path):
    with pytest.raises(ConfigError, match="data.val_fraction"):
        _s3dis(s3dis_root, tmp_path, "finetune.eval_split=val")
    cfg = _s3dis(s3dis_root, tmp_path)
    with pytest.raises(ConfigError, match="data.val_fraction"):
        make_dataset(cfg, "val")
    with pytest.raises(ConfigError, match="sweep.val_fraction"):
        search_trial_config(apply_overrides(cfg, ["sweep.val_fraction=0"]))


@pytest.mark.parametrize("recipe", ["votenet_sunrgbd", "votenet_scannet"])
def test_detection_paper_recipes_train_on_the_whole_official_train_list(recipe, tmp_path):
    cfg = get_recipe(recipe)
    assert cfg.data.val_fraction == 0.0
    from t4p.data.datasets import select_units

    fmt = cfg.data.dataset
    units = [f"scene{i:04d}_00" if fmt == "scannet-votenet" else f"{i:06d}" for i in range(1, 41)]
    train_list = units[:30]
    name = "scannetv2_train.txt" if fmt == "scannet-votenet" else "train_data_idx.txt"
    test_name = "scannetv2_val.txt" if fmt == "scannet-votenet" else "val_data_idx.txt"
    (tmp_path / name).write_text("\n".join(u.lstrip("0") if fmt == "sunrgbd" else u for u in train_list))
    (tmp_path / test_name).write_text("\n".join(u.lstrip("0") if fmt == "sunrgbd" else u for u in units[30:]))
    assert select_units(cfg, fmt, tmp_path, units, {}, "train") == train_list
    assert select_units(cfg, fmt, tmp_path, units, {}, "test") == units[30:]
    trial = search_trial_config(cfg)
    val = select_units(trial, fmt, tmp_path, units, {}, "val")
    train = select_units(trial, fmt, tmp_path, units, {}, "train")
    assert set(val) <= set(train_list) and not set(val) & set(train) and len(val) + len(train) == 30
    with pytest.raises(ConfigError, match="data.val_fraction"):
        select_units(cfg, fmt, tmp_path, units, {}, "val")


def test_smoke_recipes_keep_their_validation_fraction():
    for name in ("smoke_semseg", "smoke_insseg", "smoke_det"):
        assert get_recipe(name).data.val_fraction == 0.2


def search_trial_config(cfg):
    from t4p.sweep.search import search_trial_config as f

    return f(cfg)


def final_test_config(cfg, best):
    from t4p.sweep.search import final_test_config as f

    return f(cfg, best)


def test_the_searchs_final_run_retrains_on_all_204_rooms_and_says_so(s3dis_root, tmp_path, monkeypatch, caplog):
    """evaluate_best fits the chosen values on the whole training split, tags the run and logs it."""
    import logging
    from types import SimpleNamespace

    from t4p.sweep import search
    from t4p.sweep.trial import SweepContext

    fits = []

    def fit(cfg, ctx, **kwargs):  # the Ray Train fit is not what this test is about: record what it gets
        fits.append((cfg, kwargs))
        return SimpleNamespace(metrics={"test_miou": 0.5, "step": 3}), None

    monkeypatch.setattr(search, "tracked_fit", fit)
    base = search_trial_config(_s3dis(s3dis_root, tmp_path))  # what the trials ran: a 20 % hold-out
    ctx = SweepContext("sw", "exp", str(tmp_path / "store"), str(tmp_path / "stages"), {})
    with caplog.at_level(logging.INFO, logger="t4p.sweep.search"):
        assert search.evaluate_best(base, {"optim.lr": 0.05}, ctx) == {"test_miou": 0.5, "step": 3.0}
    (cfg, kwargs), = fits
    assert kwargs["extra_tags"] == {"split": "test", "train_split": "full"} and kwargs["stage"] == "test"
    assert (cfg.finetune.eval_split, cfg.optim.lr, cfg.data.val_fraction) == ("test", 0.05, 0.0)
    assert len(make_dataset(cfg, "train")) == 204
    assert "retrained on the whole training split" in caplog.text
