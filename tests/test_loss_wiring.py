"""Which tensors feed which loss (Eq. 11-16), pinned by perturbing one input at a time.

The paper's definitions are the oracle:
- L_e = Eq. 14 on (h2D, FC_expand(h3D)): the CLIP features and the encoder's expanded features only;
- L_d = Eq. 14 on (z2D, z3D) with z3D = g3D(h_aggr), h_aggr = alpha h3D + beta FC_reduce(TQM(h3D_hat, t))
  (Eq. 11-12) and z2D = g2D(h2D) (Eq. 13): so the text reaches L_d (beta != 0) but never L_e;
- the depth loss supervises g2D only;
- L_aux = Eq. 15-16 on cos(h3D_hat, t') and the pseudo-labels, not on the decoder's output.
Real model code (smoke sizes, torch sparse backend, the tiny random CLIP), real loss code.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from t4p.data.datasets import make_dataset
from t4p.recipes import get_recipe
from t4p.tasks.pretrain import pretrain_terms
from t4p.tasks.semseg import semseg_terms
from t4p.train.loop import build_model

NOISE = 0.5


def _noisy(t: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return t + NOISE * t.detach().abs().mean().clamp_min(1e-3) * torch.randn(t.shape, generator=g).to(t)


def _terms(model, cfg, batch, terms_fn, hook_on=None, hook=None) -> dict[str, float]:
    handle = hook_on.register_forward_hook(hook) if hook_on is not None else None
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            out = model(batch)
            terms = terms_fn(model, batch, out, cfg, torch.Generator().manual_seed(3))
    finally:
        if handle is not None:
            handle.remove()
    return {k: float(v) for k, v in terms.items()}


def _changed(base: dict, other: dict) -> set[str]:
    return {k for k in base if abs(base[k] - other[k]) > 1e-6 * max(1.0, abs(base[k]))}


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    cfg = get_recipe("smoke_pretrain", [f"train.out_dir={out}", "model.clip.feature_cache=false",
                                        "model.tqm_beta_init=0.5", "data.synth_scenes=2"])
    model, _ = build_model(cfg)
    ds = make_dataset(cfg, "train")
    return model.train(), cfg, ds.collate([ds[0], ds[1]])


def _replace_output(fn):
    return lambda module, args, output: fn(output)


def test_pretraining_losses_see_exactly_what_the_paper_says(pretrain):
    model, cfg, batch = pretrain
    base = _terms(model, cfg, batch, pretrain_terms)
    assert set(base) == {"loss_e", "loss_d", "loss_depth"}
    cases = {
        # the text embedding t (K, d): through the TQM into h_aggr -> z3D -> L_d; never L_e or depth
        "text": (model.text, _replace_output(_noisy), {"loss_d"}),
        # the frozen CLIP features h2D: L_e directly, L_d through g2D, depth through g2D
        "h2d": (model.image_encoder, _replace_output(_noisy), {"loss_e", "loss_d", "loss_depth"}),
        # the 2D decoder's feature output z2D only (its depth output untouched): L_d only
        "z2d": (model.decoder_2d, _replace_output(lambda o: (_noisy(o[0]), o[1])), {"loss_d"}),
        # FC_expand(h3D) = h3D_hat: L_e directly, and the TQM's query (Eq. 6) -> h_aggr -> L_d
        "h3d_hat": (model.backbone.fc_expand, _replace_output(_noisy), {"loss_e", "loss_d"}),
        # the 3D decoder's output z3D: L_d only
        "z3d": (model.backbone, _replace_output(lambda o: dataclasses.replace(o, z3d=_noisy(o.z3d))), {"loss_d"}),
    }
    for name, (module, hook, expected) in cases.items():
        assert _changed(base, _terms(model, cfg, batch, pretrain_terms, module, hook)) == expected, name
    depth_only = dataclasses.replace(batch, depth=batch.depth * 1.5)
    assert _changed(base, _terms(model, cfg, depth_only, pretrain_terms)) == {"loss_depth"}


def test_the_decoder_consumes_h_aggr(pretrain):
    """Eq. 11-12: with beta = 0, h_aggr = alpha h3D and the text no longer reaches z3D (nor L_d); with
    beta = 0.5 it does (the first test), so the decoder reads h_aggr, not h3D or the TQM output alone."""
    model, cfg, batch = pretrain
    tqm = model.backbone.tqm
    saved = tqm.beta.detach().clone()
    try:
        with torch.no_grad():
            tqm.beta.zero_()
        base = _terms(model, cfg, batch, pretrain_terms)
        assert _changed(base, _terms(model, cfg, batch, pretrain_terms, model.text, _replace_output(_noisy))) == set()
    finally:
        with torch.no_grad():
            tqm.beta.copy_(saved)


@pytest.fixture(scope="module")
def finetune(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    cfg = get_recipe("smoke_semseg", [f"train.out_dir={out}", "model.tqm_beta_init=0.5", "loss.aux=true"])
    model, _ = build_model(cfg)
    ds = make_dataset(cfg, "train")
    return model.train(), cfg, ds.collate([ds[0], ds[1]])


def test_auxiliary_loss_scores_the_encoder_features_against_the_text(finetune):
    model, cfg, batch = finetune
    base = _terms(model, cfg, batch, semseg_terms)
    assert set(base) == {"loss_seg", "loss_aux"}
    cases = {
        "text": (model.text, _replace_output(_noisy), {"loss_seg", "loss_aux"}),  # t' in Eq. 15 and in the TQM
        "h3d_hat": (model.backbone.fc_expand, _replace_output(_noisy), {"loss_seg", "loss_aux"}),
        # the decoder's output feeds the segmentation head only, never Eq. 15
        "z3d": (model.backbone, _replace_output(lambda o: dataclasses.replace(o, z3d=_noisy(o.z3d))), {"loss_seg"}),
    }
    for name, (module, hook, expected) in cases.items():
        assert _changed(base, _terms(model, cfg, batch, semseg_terms, module, hook)) == expected, name
    relabelled = dataclasses.replace(batch, labels=(batch.labels + 1) % 13)  # pseudo-labels follow the labels
    assert _changed(base, _terms(model, cfg, relabelled, semseg_terms)) == {"loss_seg", "loss_aux"}
