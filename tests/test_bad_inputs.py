"""User mistakes on the command line: one line ``<prog>: error: <message>`` on stderr, exit code 2, no traceback.

Every case runs a real command in-process (``t4p.cli.main`` or a sweep script's ``main``) on real bad inputs:
truncated, random and foreign checkpoints, a checkpoint of another architecture, CLIP weights that are missing
or do not fit the architecture (small real open_clip ResNet weights, as in ``tests/test_clip.py``; an
OpenAI-format RN50 state dict of stride-0 tensors, a small file, missing a text block), config values
out of range, an unknown ablation row, an unparsable ``--param``. The message must name the file or key and what
was expected; the expected tensor names and shapes come from the reference models' own state dicts. Two real
subprocesses prove the exit code and that ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch

from t4p.cli import main
from t4p.config import to_json
from t4p.errors import UserError
from t4p.models import clip as tclip
from t4p.recipes import get_recipe
from t4p.train.checkpoint import save_checkpoint
from t4p.train.loop import build_model

torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]
POS_KEY = "visual.attnpool.positional_embedding"


def _first_difference(own: dict, other: dict) -> str:
    """Reference: the first tensor of ``own`` (in the model's order) that ``other`` lacks or shapes differently."""
    return next(k for k, v in own.items() if k not in other or other[k].shape != v.shape)


def _checkpoint(path: Path, overrides: list[str]) -> dict:
    """A checkpoint as ``t4p finetune`` writes it (model weights, flat config, task) for smoke_semseg + overrides."""
    cfg = get_recipe("smoke_semseg", ["train.device=cpu", *overrides])
    model, _ = build_model(cfg)
    state = model.state_dict()
    save_checkpoint(path, {"model": state, "config": to_json(cfg, flat=True), "task": cfg.train.task, "step": 1})
    return state


def _openai_format(shapes: dict, drop: str) -> dict[str, torch.Tensor]:
    """An OpenAI-format CLIP state dict (``input_resolution`` and OpenAI's other int entries) with every tensor of
    ``shapes`` but those whose name starts with ``drop``; fp16 zeros of stride 0, so a full-size file stays small."""
    sd = {k: torch.zeros((), dtype=torch.float16).expand(v.shape) for k, v in shapes.items() if not k.startswith(drop)}
    sd.pop("attn_mask", None)
    return {**sd, "input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
            "vocab_size": torch.tensor(49408)}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("bad_inputs")
    own = _checkpoint(root / "good.pt", [])
    other = _checkpoint(root / "other_arch.pt", ["model.stem_channels=16"])
    data = (root / "good.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "empty_run").mkdir()
    np.save(root / "scene.npy", np.random.default_rng(1).uniform(0, 2, (50, 6)))

    tiny = tclip.random_model(tclip.TINY_ARCH).state_dict()  # a real open_clip ResNet CLIP (ModifiedResNet)
    torch.save(tiny, root / "clip_tiny.pt")
    no_layer4 = {k: v for k, v in tiny.items() if not k.startswith("visual.layer4.")}
    torch.save(no_layer4, root / "clip_no_layer4.pt")
    other_pos = dict(tiny)
    other_pos[POS_KEY] = torch.zeros(8 * 8 + 1, tiny[POS_KEY].shape[1])  # a 256-pixel input's 8x8 grid
    torch.save(other_pos, root / "clip_other_pos.pt")
    rn50 = open_clip.create_model("RN50", device="meta").state_dict()  # the reference: open_clip's own RN50
    openai_key = next(k for k in rn50 if k.startswith("transformer.resblocks.11."))
    torch.save(_openai_format(rn50, drop="transformer.resblocks.11."), root / "clip_rn50_openai_no_block11.pt")
    arch_key = _first_difference(own, other)
    no_tqm, _ = build_model(get_recipe("smoke_semseg", ["train.device=cpu", "model.tqm=false"]))
    extra_key = next(k for k in own if k not in no_tqm.state_dict())  # TQM's tensors: in the file, not the model
    return SimpleNamespace(
        root=root,
        arch_key=arch_key,
        arch_shapes=(tuple(own[arch_key].shape), tuple(other[arch_key].shape)),
        extra_key=extra_key,
        layer4_key=next(k for k in tiny if k.startswith("visual.layer4.")),
        openai_key=openai_key,
        pos_shapes=(tuple(tiny[POS_KEY].shape), tuple(other_pos[POS_KEY].shape)),
    )


def _predict(b: SimpleNamespace, checkpoint: str) -> list[str]:
    return ["predict", str(b.root / checkpoint), str(b.root / "scene.npy"), "--out", str(b.root / "pred" / "x.npy")]


def _clip(b: SimpleNamespace, weights: str, arch: str = "t4p-tiny") -> list[str]:
    return ["pretrain", "smoke_pretrain", f"model.clip.arch={arch}", f"model.clip.weights={b.root / weights}",
            f"train.out_dir={b.root / 'out_clip'}", "train.device=cpu"]


def _show(override: str) -> Callable[[SimpleNamespace], list[str]]:
    return lambda b: ["config", "show", "smoke_semseg", override]


@dataclass(frozen=True)
class Case:
    argv: Callable[[SimpleNamespace], list[str]]
    names: Callable[[SimpleNamespace], list[str]]  # what the one error line must contain
    entry: str = "t4p"  # or a sweep script: "ablation", "search"


CASES: dict[str, Case] = {
    "checkpoint-truncated": Case(lambda b: _predict(b, "truncated.pt"),
                                 lambda b: [str(b.root / "truncated.pt"), "truncated"]),
    "checkpoint-random-bytes": Case(lambda b: _predict(b, "random.pt"),
                                    lambda b: [str(b.root / "random.pt"), "not a PyTorch checkpoint"]),
    "checkpoint-dir-without-file": Case(lambda b: _predict(b, "empty_run"),
                                        lambda b: [str(b.root / "empty_run"), "checkpoint.pt"]),
    "checkpoint-foreign": Case(lambda b: _predict(b, "clip_tiny.pt"),
                               lambda b: [str(b.root / "clip_tiny.pt"), "not a t4p checkpoint", "'model'"]),
    "checkpoint-other-architecture": Case(
        lambda b: ["evaluate", "smoke_semseg", str(b.root / "other_arch.pt"), "train.device=cpu",
                   f"train.out_dir={b.root / 'out_eval'}"],
        lambda b: [str(b.root / "other_arch.pt"), repr(b.arch_key), str(b.arch_shapes[0]), str(b.arch_shapes[1])]),
    "checkpoint-extra-tensor": Case(
        lambda b: ["evaluate", "smoke_semseg", str(b.root / "good.pt"), "model.tqm=false", "train.device=cpu",
                   f"train.out_dir={b.root / 'out_eval'}"],
        lambda b: [str(b.root / "good.pt"), repr(b.extra_key), "is not in the model"]),
    "clip-missing-file": Case(lambda b: _clip(b, "nowhere/RN50.pt"), lambda b: [str(b.root / "nowhere" / "RN50.pt")]),
    "clip-missing-layer": Case(lambda b: _clip(b, "clip_no_layer4.pt"),
                               lambda b: [str(b.root / "clip_no_layer4.pt"), repr(b.layer4_key), "missing",
                                          "model.clip.arch='t4p-tiny'"]),
    "clip-openai-format-missing-layer": Case(
        lambda b: _clip(b, "clip_rn50_openai_no_block11.pt", arch="RN50"),
        lambda b: [str(b.root / "clip_rn50_openai_no_block11.pt"), repr(b.openai_key), "missing",
                   "model.clip.arch='RN50'"]),
    "clip-other-pos-embedding": Case(lambda b: _clip(b, "clip_other_pos.pt"),
                                     lambda b: [str(b.root / "clip_other_pos.pt"), repr(POS_KEY),
                                                f"expected shape {b.pos_shapes[0]}", f"found {b.pos_shapes[1]}"]),
    "config-nan-lr": Case(_show("optim.lr=nan"), lambda b: ["'optim.lr'", "finite", "nan"]),
    "config-inf": Case(_show("loss.tau=inf"), lambda b: ["'loss.tau'", "finite", "inf"]),
    "config-nan-voxel-size": Case(_show("data.voxel_size=nan"), lambda b: ["'data.voxel_size'", "finite", "nan"]),
    "config-eval-every-0": Case(
        lambda b: ["finetune", "smoke_semseg", "train.eval_every=0", f"train.out_dir={b.root / 'out_ft'}"],
        lambda b: ["'train.eval_every'", ">= 1", "got 0"]),
    "config-exp-every-0": Case(_show("optim.exp_every=0"), lambda b: ["'optim.exp_every'", ">= 1", "got 0"]),
    "config-frame-skip-0": Case(_show("data.frame_skip=0"), lambda b: ["'data.frame_skip'", ">= 1", "got 0"]),
    "config-negative-voxel-size": Case(_show("data.voxel_size=-0.05"),
                                       lambda b: ["'data.voxel_size'", "positive", "-0.05"]),
    "config-zero-depth-tolerance": Case(_show("data.corr_depth_tol=0"),
                                        lambda b: ["'data.corr_depth_tol'", "positive", "0.0"]),
    "config-zero-image-height": Case(_show("data.image_height=0"), lambda b: ["'data.image_height'", ">= 1", "got 0"]),
    "config-fraction-1": Case(_show("data.val_fraction=1.0"), lambda b: ["'data.val_fraction'", "[0, 1)", "1.0"]),
    "config-unknown-key": Case(_show("optim.lrr=0.1"), lambda b: ["'optim.lrr'", "optim.lr"]),
    "sweep-unknown-row": Case(
        lambda b: ["--recipe", "smoke_semseg", "--rows", "T5-1,T5-99", "--dry-run",
                   "--stage-store", str(b.root / "stages"), "--storage-path", str(b.root / "ray")],
        lambda b: ["sweep.rows", "'T5-99'", "T5-1"], entry="ablation"),
    "sweep-credentials-in-tracking-uri": Case(
        lambda b: ["--recipe", "smoke_semseg", "--rows", "T5-1", "--dry-run", "--tracking-uri",
                   "https://alice:pw1234@mlflow.example.org", "--storage-path", str(b.root / "ray")],
        lambda b: ["'tracking.uri'", "credentials", "MLFLOW_TRACKING_USERNAME"], entry="ablation"),
    "sweep-storage-path-uri": Case(  # issue 18: was turned into a local path ./s3:/bucket/x
        lambda b: ["--recipe", "smoke_semseg", "--rows", "T5-1", "--dry-run", "--storage-path", "s3://bucket/x"],
        lambda b: ["'sweep.storage_path'", "'s3://bucket/x'", "file system path"], entry="ablation"),
    "sweep-stage-store-uri": Case(
        lambda b: ["--recipe", "smoke_semseg", "--dry-run", "--storage-path", str(b.root / "ray"),
                   "--stage-store", "gs://bucket/stages"],
        lambda b: ["'sweep.stage_store'", "'gs://bucket/stages'", "file system path"], entry="search"),
    "sweep-unparsable-param": Case(
        lambda b: ["--recipe", "smoke_semseg", "--param", "optim.lr=log:abc:0.3", "--dry-run",
                   "--storage-path", str(b.root / "ray")],
        lambda b: ["--param", "'optim.lr=log:abc:0.3'", "log:LO:HI"], entry="search"),
}


def _script_main(name: str) -> Callable[[list[str]], int]:
    spec = importlib.util.spec_from_file_location(f"sweeps_{name}", ROOT / "sweeps" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


ENTRIES: dict[str, tuple[str, Callable[[], Callable[[list[str]], int]]]] = {
    "t4p": ("t4p", lambda: main),
    "ablation": ("ablation.py", lambda: _script_main("ablation")),
    "search": ("search.py", lambda: _script_main("search")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(name, bad, capsys, monkeypatch):
    monkeypatch.delenv("T4P_DEBUG", raising=False)
    monkeypatch.chdir(bad.root)  # nothing a sweep might write lands in the repository
    case = CASES[name]
    prog, entry = ENTRIES[case.entry]
    code = entry()(case.argv(bad))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "file an issue" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err  # one error line, the last thing printed
    for fragment in case.names(bad):
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "T4P_DEBUG"}
    return subprocess.run([sys.executable, "-m", "t4p.cli", *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)


def test_real_process_exit_code_2_and_debug_traceback(bad):
    argv = _predict(bad, "random.pt")
    plain = _cli(*argv)
    assert plain.returncode == 2, plain.stderr
    assert "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith(f"t4p: error: checkpoint {bad.root / 'random.pt'}")
    debug = _cli("--debug", *argv)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


def test_debug_env_reraises_in_process(bad, monkeypatch):
    monkeypatch.setenv("T4P_DEBUG", "1")
    with pytest.raises(UserError, match="optim.lr"):
        main(["config", "show", "smoke_semseg", "optim.lr=nan"])
    with pytest.raises(UserError, match="T5-99"):
        _script_main("ablation")(["--recipe", "smoke_semseg", "--rows", "T5-99", "--dry-run"])


def test_a_bug_keeps_its_traceback():
    """Only user mistakes are turned into one line: any other exception propagates unchanged."""
    from t4p.errors import run_command

    def buggy(args) -> int:
        raise KeyError("a bug")

    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--debug", action="store_true")
    with pytest.raises(KeyError, match="a bug"):
        run_command(parser, buggy, [])
