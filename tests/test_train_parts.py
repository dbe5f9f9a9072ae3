"""Training plumbing against hand-computed values: schedules, RNG round trip, atomic checkpoints, data order."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from t4p.config import ConfigError, OptimConfig
from t4p.recipes import get_recipe
from t4p.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from t4p.train.loop import StepBatchSampler
from t4p.train.optim import build_optimizer, build_scheduler, lr_factor


def test_schedules_hand_computed():
    exp = OptimConfig(schedule="exp", exp_gamma=0.5, exp_every=10)
    assert [lr_factor(s, exp, 100) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    poly = OptimConfig(schedule="poly", poly_power=2.0)
    assert math.isclose(lr_factor(25, poly, 100), 0.75**2)
    cos = OptimConfig(schedule="cosine", warmup_steps=10)
    assert [lr_factor(s, cos, 110) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert math.isclose(lr_factor(60, cos, 110), 0.5)  # half-way through the cosine after warm-up
    assert math.isclose(lr_factor(110, cos, 110), 0.0, abs_tol=1e-12)


def test_optimizer_groups_and_scheduler_steps():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, OptimConfig(lr=0.2, weight_decay=1e-3, schedule="poly", poly_power=1.0))
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-3] and len(opt.param_groups[0]["params"]) == 1  # only the Linear weight decays
    sched = build_scheduler(opt, OptimConfig(lr=0.2, schedule="poly", poly_power=1.0), max_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [0.2, 0.15, 0.1, 0.05])


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state(), "step": 7})
    expected = (random.random(), np.random.randn(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    set_rng_state(ckpt["rng"])
    got = (random.random(), np.random.randn(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert ckpt["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def _cfg(batch, accum=1, steps=10):
    return get_recipe(
        "smoke_semseg", [f"train.batch_size={batch}", f"train.grad_accum={accum}", f"train.max_steps={steps}"]
    )


def test_sampler_order_is_a_function_of_step_and_resumes_mid_epoch():
    cfg = _cfg(batch=3, steps=10)
    full = list(StepBatchSampler(7, cfg, 0, 1, start_step=0))
    resumed = list(StepBatchSampler(7, cfg, 0, 1, start_step=4))
    assert resumed == full[4:]
    flat = [i for b in full for i in b]
    assert sorted(flat[:7]) == list(range(7)) and sorted(flat[7:14]) == list(range(7))  # epochs are permutations
    assert flat[:7] != flat[7:14]  # reshuffled per epoch


def test_sampler_splits_global_batch_across_ranks_and_micro_batches():
    single = list(StepBatchSampler(20, _cfg(batch=8, steps=3), 0, 1, 0))
    shards = [list(StepBatchSampler(20, _cfg(batch=8, accum=2, steps=3), r, 2, 0)) for r in range(2)]
    for step in range(3):
        micro = [b for r in range(2) for b in shards[r][2 * step : 2 * step + 2]]
        assert all(len(b) == 2 for b in micro)
        assert sorted(i for b in micro for i in b) == sorted(single[step])
    with pytest.raises(ConfigError, match="train.batch_size"):
        StepBatchSampler(20, _cfg(batch=6, accum=2), 0, 2, 0)


class _TouchOnUnpickle:
    """Unpickling this object calls ``Path.touch(marker)``: a harmless stand-in for ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_crafted_pickle_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3, "payload": _TouchOnUnpickle(marker)}, path)
    with pytest.raises(ValueError, match="contains non-tensor objects and was refused") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    # the payload is real: an unsafe load (never done by t4p) would have run it
    proof = tmp_path / "proof.pt"
    torch.save({"payload": _TouchOnUnpickle(tmp_path / "unsafe_ran")}, proof)
    torch.load(proof, weights_only=False)
    assert (tmp_path / "unsafe_ran").exists()


class _WithTqmScalars(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        self.alpha = torch.nn.Parameter(torch.ones(()))
        self.beta = torch.nn.Parameter(torch.zeros(()))


@pytest.mark.parametrize("recipe", ["pretrain_scannet", "s3dis_semseg", "s3dis_insseg"])
def test_paper_recipes_decay_every_parameter(recipe):
    """App. B.1 "Weight decay is set to 0.0001", no exclusion: BatchNorm, biases, TQM alpha/beta decay too."""
    model = _WithTqmScalars()
    optim = get_recipe(recipe).optim
    opt = build_optimizer(model, optim)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert {decay_of[id(p)] for p in model.parameters()} == {1e-4} and len(decay_of) == 6
    excluded = build_optimizer(model, dataclasses.replace(optim, wd_exclude_norm_bias=True))
    decay_of = {id(p): g["weight_decay"] for g in excluded.param_groups for p in g["params"]}
    decayed = [n for n, p in model.named_parameters() if decay_of[id(p)] > 0]
    assert decayed == ["body.0.weight"]  # the smoke recipes' choice: only matrices decay
    assert get_recipe("smoke_semseg").optim.wd_exclude_norm_bias


def test_sgd_dampening_is_a_config_field():
    opt = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(dampening=0.1))
    assert all(g["dampening"] == 0.1 for g in opt.param_groups)
