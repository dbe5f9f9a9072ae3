"""Typed config: overrides, flat round trip, validation messages, the `t4p config show` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t4p.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_hash,
    from_flat_dict,
    to_flat_dict,
    valid_keys,
)
from t4p.recipes import RECIPES, get_recipe


def test_sections_are_the_documented_ones():
    top = {key.split(".")[0] for key in valid_keys()}
    assert top == {"data", "model", "loss", "optim", "train", "finetune", "insseg", "det", "sweep", "tracking"}


def test_overrides_convert_types():
    cfg = apply_overrides(Config(), ["optim.lr=0.05", "model.tqm=false", "train.max_steps=7",
                                     "model.enc_planes=8,16,32,64", "model.sparse_backend=torch"])
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.model.tqm is False
    assert cfg.train.max_steps == 7 and isinstance(cfg.train.max_steps, int)
    assert cfg.model.enc_planes == (8, 16, 32, 64)
    assert cfg.model.sparse_backend == "torch"


def test_overrides_do_not_mutate_the_input():
    base = Config()
    apply_overrides(base, ["optim.lr=0.5"])
    assert base.optim.lr == 0.1


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("optim.lrr=1", ["unknown config key", "optim.lr"]),
        ("optim.lr=fast", ["optim.lr", "float", "fast"]),
        ("train.max_steps=1.5", ["train.max_steps", "int"]),
        ("model.tqm=maybe", ["model.tqm", "bool"]),
        ("model.sparse_backend=cuda", ["model.sparse_backend", "'minkowski'"]),
        ("optim.lr", ["KEY=VALUE"]),
        ("data.voxel_size=-1", ["data.voxel_size", "positive"]),
    ],
)
def test_bad_overrides_name_the_key_and_expectation(override, fragments):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    for fragment in fragments:
        assert fragment in str(err.value)


FLOAT_KEYS = sorted(k for k, v in to_flat_dict(Config()).items() if isinstance(v, float))
EVERY_KEYS = sorted(k for k in to_flat_dict(Config()) if k.endswith("_every"))


def test_the_range_checks_cover_the_schema():
    assert len(FLOAT_KEYS) > 40 and {"optim.lr", "data.voxel_size", "sweep.gpus_per_trial"} <= set(FLOAT_KEYS)
    assert EVERY_KEYS == ["optim.exp_every", "train.checkpoint_every", "train.eval_every", "train.log_every"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_key_must_be_finite(value):
    for key in FLOAT_KEYS:
        with pytest.raises(ConfigError) as err:
            apply_overrides(Config(), [f"{key}={value}"])
        assert str(err.value) == f"config key {key!r}: expected a finite number, got {float(value)}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        *[(f"{k}=0", f"config key {k!r}: expected >= 1, got 0") for k in EVERY_KEYS],
        ("data.frame_skip=0", "config key 'data.frame_skip': expected >= 1, got 0"),
        ("data.voxel_size=0", "config key 'data.voxel_size': expected a positive value, got 0.0"),
        ("data.val_fraction=1", "config key 'data.val_fraction': expected a fraction in [0, 1), got 1.0"),
        ("sweep.val_fraction=-0.1", "config key 'sweep.val_fraction': expected a fraction in [0, 1), got -0.1"),
        ("loss.aux_range=-1", "config key 'loss.aux_range': expected >= 0, got -1.0"),
        ("sweep.gpus_per_trial=-0.5", "config key 'sweep.gpus_per_trial': expected >= 0, got -0.5"),
    ],
)
def test_out_of_range_values_name_key_value_and_expectation(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert str(err.value) == message


def test_boundary_values_are_accepted():
    cfg = apply_overrides(Config(), [*(f"{k}=1" for k in EVERY_KEYS), "data.frame_skip=1", "data.val_fraction=0",
                                     "data.val_fraction=0.99", "loss.aux_range=0", "sweep.gpus_per_trial=0"])
    assert cfg.train.eval_every == 1 and cfg.data.val_fraction == 0.99


@pytest.mark.parametrize(
    "override",
    [
        "tracking.uri=https://alice:s3cret@mlflow.example.org",
        "sweep.storage_path=s3://AKIAXXXX:s3cret@bucket/ray",
        "tracking.uri=http://alice:@mlflow.example.org:5000",  # an empty password is still a credential
    ],
)
def test_credentials_inside_uris_are_refused_without_echoing_them(override):
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    message = str(err.value)
    assert key in message and "MLFLOW_TRACKING_USERNAME" in message and "MLFLOW_TRACKING_PASSWORD" in message
    assert "s3cret" not in message and "alice" not in message and "AKIAXXXX" not in message


def test_uris_without_credentials_are_accepted():
    cfg = apply_overrides(Config(), ["tracking.uri=https://mlflow.example.org:5000", "sweep.storage_path=/mnt/t4p/r",
                                     "tracking.uri=sqlite:////tmp/x@y/mlflow.db"])
    assert cfg.sweep.storage_path == "/mnt/t4p/r" and cfg.tracking.uri == "sqlite:////tmp/x@y/mlflow.db"


def test_sweep_storage_is_a_file_system_path_not_a_uri():
    """Issue 18: s3://b/x became the local path ./s3:/b/x; the sweep's state needs a real file system."""
    for key in ("sweep.storage_path", "sweep.stage_store"):
        with pytest.raises(ConfigError, match=f"'{key}': 's3://b/ray' is a URI; expected a file system path"):
            apply_overrides(Config(), [f"{key}=s3://b/ray"])


def test_config_error_is_a_user_error_and_a_value_error():
    from t4p.errors import UserError

    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)


def test_prompt_learning_with_random_text_is_rejected():
    with pytest.raises(ConfigError, match="prompt_learning.*text_source=random"):
        apply_overrides(Config(), ["model.text_source=random", "model.prompt_learning=true"])


def test_test_area_must_stay_out_of_training():
    with pytest.raises(ConfigError, match="test_area"):
        apply_overrides(Config(), ["data.train_areas=1,2,5"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_flat_round_trip_per_recipe(name):
    cfg = get_recipe(name)
    flat = to_flat_dict(cfg)
    assert set(flat) == set(valid_keys())
    assert from_flat_dict(flat) == cfg


_recipe_and_changes = st.tuples(
    st.sampled_from(sorted(RECIPES)),
    st.floats(min_value=1e-5, max_value=1.0, allow_nan=False),
    st.integers(min_value=1, max_value=10**6),
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=512), min_size=4, max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(_recipe_and_changes)
def test_round_trip_property(args):
    name, lr, steps, tqm, planes = args
    cfg = get_recipe(name, [f"optim.lr={lr!r}", "train.epochs=0", "optim.warmup_epochs=0", f"train.max_steps={steps}",
                            f"model.tqm={tqm}",
                            "model.enc_planes=" + ",".join(map(str, planes))])
    assert cfg.optim.lr == lr and cfg.train.max_steps == steps and cfg.model.tqm is tqm
    assert from_flat_dict(to_flat_dict(cfg)) == cfg
    # JSON is how params travel to MLflow and Ray: it must round-trip too.
    assert from_flat_dict(json.loads(json.dumps(to_flat_dict(cfg)))) == cfg


def test_config_hash_depends_only_on_chosen_sections():
    a = get_recipe("smoke_pretrain")
    b = get_recipe("smoke_pretrain", ["sweep.max_concurrent=7"])
    c = get_recipe("smoke_pretrain", ["loss.tau=0.3"])
    assert config_hash(a, ("loss.", "model.")) == config_hash(b, ("loss.", "model."))
    assert config_hash(a, ("loss.", "model.")) != config_hash(c, ("loss.", "model."))


def test_paper_numbers_in_recipes():
    pre = get_recipe("pretrain_scannet")
    assert (pre.loss.tau, pre.optim.lr, pre.optim.exp_gamma, pre.train.batch_size) == (0.4, 0.1, 0.99, 32)
    assert (pre.data.voxel_size, pre.data.image_height, pre.data.image_width) == (0.025, 240, 320)
    seg = get_recipe("s3dis_semseg")
    assert (seg.data.voxel_size, seg.optim.poly_power, seg.optim.weight_decay) == (0.05, 0.9, 1e-4)
    assert (seg.train.max_steps, seg.train.batch_size) == (60000, 48)
    assert (seg.loss.aux_tau, seg.model.n_ctx) == (0.07, 8)
    assert seg.data.test_area == 5 and 5 not in seg.data.train_areas
    assert get_recipe("votenet_sunrgbd").data.num_points == 20000
    assert get_recipe("votenet_scannet").data.num_points == 40000


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "t4p.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_config_show_applies_overrides():
    out = _cli("config", "show", "s3dis_semseg", "optim.lr=0.05")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["optim"]["lr"] == 0.05


def test_cli_config_show_rejects_unknown_key_and_recipe():
    out = _cli("config", "show", "s3dis_semseg", "optim.lrr=1")
    assert out.returncode == 2
    assert "unknown config key" in out.stderr and "optim.lr" in out.stderr
    out = _cli("config", "show", "no_such_recipe")
    assert out.returncode == 2 and "unknown recipe" in out.stderr


def test_cli_help_lists_subcommands():
    out = _cli("--help")
    assert out.returncode == 0 and "config" in out.stdout
