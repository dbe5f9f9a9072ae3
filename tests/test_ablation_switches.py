"""Every row of Tables 5/6 and App. C: what its switches really change.

For each row (``t4p.sweep.rows``): the trainable parameters (TQM, prompt context, random
embeddings; CLIP always frozen), whether the CLIP text encoder runs, which loss terms are non-zero,
and which pre-training checkpoint (by config hash) the fine-tuning loaded.
"""

from __future__ import annotations

import pytest
import torch
from _train_helpers import tiny_cfg
from open_clip.transformer import Transformer

from t4p.config import ConfigError
from t4p.recipes import get_recipe
from t4p.sweep.rows import ABLATION_ROWS
from t4p.train.checkpoint import load_checkpoint
from t4p.train.loop import build_model, run

pytestmark = pytest.mark.slow

STEPS = ("train.max_steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.batch_size=1")


class TextEncoderCalls:
    """Counts forward calls of CLIP text transformers (open_clip ``Transformer``) while active."""

    def __enter__(self):
        self.calls = 0

        def hook(module, args, output):
            if isinstance(module, Transformer):
                self.calls += 1

        self._handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> tuple[str, ...]:
    """One synthetic root and one prepared cache for every run of this module (generated once)."""
    d = tmp_path_factory.mktemp("data")
    return (f"data.root={d / 'synth'}", f"data.prepared_dir={d / 'prepared'}")


@pytest.fixture(scope="module")
def pretrainings(tmp_path_factory, shared_data):
    """The distinct pre-trainings of the grid (3), each a couple of steps: overrides -> checkpoint path."""
    out = {}
    for row in ABLATION_ROWS.values():
        if row.pretrain is None or row.pretrain in out:
            continue
        d = tmp_path_factory.mktemp("pre")
        metrics = run(tiny_cfg("smoke_pretrain", d, *shared_data, *STEPS, *row.pretrain))
        out[row.pretrain] = (d / "checkpoint" / "checkpoint.pt", metrics)
    return out


def test_grid_has_three_distinct_pretrainings(pretrainings):
    assert len(pretrainings) == 3
    hashes = {m["config_hash"] for _, m in pretrainings.values()}
    assert len(hashes) == 3
    for overrides, (_, metrics) in pretrainings.items():
        assert metrics["loss_e"] > 0 and metrics["loss_d"] > 0
        assert ("loss_depth" in metrics) == ("loss.depth=true" in overrides)


@pytest.mark.parametrize("name", list(ABLATION_ROWS))
def test_row_switches(name, pretrainings, shared_data, tmp_path):
    row = ABLATION_ROWS[name]
    init = ()
    if row.pretrain is not None:
        ckpt_path, pre_metrics = pretrainings[row.pretrain]
        init = (f"finetune.init={ckpt_path}",)
    cfg = tiny_cfg("smoke_semseg", tmp_path, *shared_data, *STEPS, *row.finetune, *init)
    m = cfg.model

    # trainable parameters
    model, bundle = build_model(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.tqm.") for n in trainable) == m.tqm
    assert ("backbone.tqm.alpha" in trainable) == m.tqm
    assert ("text.ctx" in trainable) == m.prompt_learning
    assert ("text.embeddings" in trainable) == (m.text_source == "random")
    assert not any(n.startswith("text.") for n in trainable - {"text.ctx", "text.embeddings"})
    if bundle is not None:
        assert not any(p.requires_grad for p in bundle.model.parameters())  # CLIP frozen
    assert (bundle is None) == (name == "T5-1")  # the baseline never loads CLIP

    # a short run: text encoder calls, loss terms, transferred pre-training
    with TextEncoderCalls() as text_calls:
        metrics = run(cfg)
    if m.prompt_learning:
        assert text_calls.calls >= 2  # every forward re-encodes the learnable prompts
    elif m.text_source == "random" or not (m.tqm or cfg.loss.aux):
        assert text_calls.calls == 0
    else:
        assert text_calls.calls <= 1  # fixed prompts: encoded once at construction (or memoised)
    assert metrics["loss_seg"] > 0
    assert ("loss_aux" in metrics) == cfg.loss.aux
    if cfg.loss.aux:
        assert metrics["loss_aux"] > 0
    if row.pretrain is None:
        assert "init_config_hash" not in metrics
    else:
        assert metrics["init_config_hash"] == pre_metrics["config_hash"]
        assert metrics["init_config_hash"] == load_checkpoint(ckpt_path)["config_hash"]


def test_rows_sharing_a_pretraining_load_the_same_hash():
    groups = {}
    for row in ABLATION_ROWS.values():
        if row.pretrain is not None:
            groups.setdefault(row.pretrain, []).append(row.name)
    assert sorted(map(sorted, groups.values())) == [["C"], ["T5-3", "T5-4", "T5-5"], ["T6"]]


def test_prompt_learning_with_random_embeddings_is_rejected():
    with pytest.raises(ConfigError, match="model.prompt_learning=true is not applicable"):
        get_recipe("smoke_semseg", ["model.text_source=random", "model.prompt_learning=true"])
