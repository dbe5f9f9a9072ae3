"""CoOp prompt learner against open_clip's own ``encode_text``; only the context learns; Table 6 control."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from t4p.config import ClipConfig
from t4p.data.classes import class_list
from t4p.models.clip import ClipBundle, FixedTextEmbeddings, freeze, load_clip
from t4p.models.prompt import CTX_STD, PromptLearner, RandomEmbeddings, phrase_token_count

torch.set_num_threads(min(2, torch.get_num_threads()))
NAMES = class_list("scannet20").text_names


@pytest.fixture(scope="module")
def tiny():
    return load_clip(ClipConfig(weights="random-tiny"))


@pytest.fixture(scope="module")
def rn50():
    return load_clip(ClipConfig(arch="RN50", weights="random"))


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("which", ["tiny", "rn50"])
def test_context_from_template_words_reproduces_encode_text(which, tiny, rn50):
    bundle = {"tiny": tiny, "rn50": rn50}[which]
    names = NAMES if which == "tiny" else NAMES[-5:]  # RN50's 12-layer text tower: keep CI fast
    phrase = "point cloud of"
    n = phrase_token_count(phrase)
    assert n == 3
    learner = PromptLearner(bundle, names, n_ctx=n, ctx_init=phrase)
    with torch.no_grad():
        ref = bundle.model.encode_text(open_clip.tokenize([f"point cloud of {c}." for c in names]))  # (K, d)
        out = learner()
    assert out.shape == (len(names), bundle.embed_dim)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max())), _max_rel(out, ref)
    if which == "tiny":
        fixed = FixedTextEmbeddings(bundle, names, "point cloud of {}.")()
        assert torch.allclose(out, fixed, atol=1e-5)


def test_optimiser_step_changes_only_the_context(tiny):
    learner = PromptLearner(tiny, NAMES[:5], n_ctx=8, ctx_init="point cloud of", seed=0)
    learner.train()
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["ctx"]
    assert list(learner.state_dict()) == ["ctx"]
    before_model = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    before_buffers = {k: v.clone() for k, v in learner.named_buffers()}
    ctx0 = learner.ctx.detach().clone()
    opt = torch.optim.SGD(learner.parameters(), lr=1.0)  # all parameters offered; frozen ones get no grad
    target = torch.randn(5, tiny.embed_dim, generator=torch.Generator().manual_seed(0))
    loss = ((learner() - target) ** 2).sum()
    loss.backward()
    opt.step()
    assert not torch.equal(learner.ctx.detach(), ctx0)
    after = tiny.model.state_dict()
    assert all(torch.equal(before_model[k], after[k]) for k in after), "a frozen CLIP tensor changed"
    assert all(torch.equal(before_buffers[k], v) for k, v in learner.named_buffers())
    assert all(p.grad is None for n, p in learner.named_parameters() if n != "ctx")


def test_context_initialisation_pad_truncate_and_random(tiny):
    emb = tiny.model.token_embedding
    ids = open_clip.tokenize(["point cloud of"])[0, 1:4]
    phrase = emb(ids).detach()  # (3, width)
    padded = PromptLearner(tiny, NAMES[:2], n_ctx=8, ctx_init="point cloud of", seed=1)
    assert torch.equal(padded.ctx.detach()[5:], phrase)
    assert 0.5 * CTX_STD < float(padded.ctx.detach()[:5].std()) < 2 * CTX_STD
    cut = PromptLearner(tiny, NAMES[:2], n_ctx=2, ctx_init="point cloud of")
    assert torch.equal(cut.ctx.detach(), phrase[1:])  # the phrase's last tokens, next to the class
    rnd = PromptLearner(tiny, NAMES[:2], n_ctx=8, ctx_init="", seed=2)
    assert 0.5 * CTX_STD < float(rnd.ctx.detach().std()) < 2 * CTX_STD
    assert abs(float(rnd.ctx.detach().mean())) < CTX_STD
    assert torch.equal(rnd.ctx, PromptLearner(tiny, NAMES[:2], n_ctx=8, ctx_init="", seed=2).ctx)


def test_linear_text_projection_and_eos_pooling():
    """open_clip's other text tower variants: ``text_projection`` as nn.Linear, 'eos' pooling."""
    for text_cfg in (CLIPTextCfg(width=64, heads=1, layers=1, proj_bias=True),
                     CLIPTextCfg(width=64, heads=1, layers=1, pool_type="eos", eos_id=49407)):
        torch.manual_seed(0)
        model = freeze(CLIP(32, CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, image_size=64), text_cfg))
        bundle = ClipBundle(model, True, 32, "test-variant", "test", "test")
        learner = PromptLearner(bundle, ("chair", "table"), n_ctx=3, ctx_init="point cloud of")
        with torch.no_grad():
            ref = model.encode_text(open_clip.tokenize(["point cloud of chair.", "point cloud of table."]))
            assert torch.allclose(learner(), ref, atol=1e-5)


def test_random_embeddings_are_learnable():
    rand = RandomEmbeddings(13, 64, seed=0)
    out = rand()
    assert out.shape == (13, 64) and out.requires_grad
    assert 0.8 < float(out.norm(dim=1).mean()) < 1.2
    out.sum().backward()
    assert rand.embeddings.grad is not None
    assert torch.equal(RandomEmbeddings(13, 64, seed=0)(), RandomEmbeddings(13, 64, seed=0)())


def test_make_text_path_follows_the_config(tiny, tmp_path):
    from t4p.config import ModelConfig
    from t4p.models.prompt import make_text_path

    cfg = ModelConfig()
    cfg.clip.cache_dir = str(tmp_path)
    assert isinstance(make_text_path(cfg, tiny, NAMES), FixedTextEmbeddings)
    cfg.prompt_learning = True
    learner = make_text_path(cfg, tiny, NAMES)
    assert isinstance(learner, PromptLearner) and learner.ctx.shape[0] == cfg.n_ctx
    cfg.text_source = "random"
    assert make_text_path(cfg, tiny, NAMES)().shape == (len(NAMES), tiny.embed_dim)
