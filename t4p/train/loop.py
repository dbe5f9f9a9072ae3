"""The one training loop, for every task (pre-training and each fine-tuning task of ``t4p.tasks``).

``run(cfg, ctx=None) -> dict`` (docs/interfaces.md). No Ray, no MLflow: a ``RunContext`` supplies
rank/world size, model wrapping (DDP), reporting and the checkpoint to resume from. What differs per
task (model, loss terms, evaluation, metric names) comes from ``t4p.tasks.get_task(train.task)``; the
loop never branches on the task's name.

Determinism and exact resume: the data order is a function of (seed, epoch) only
(``StepBatchSampler``), pixel-voxel pairs are sampled with a generator seeded by (seed, step, rank,
micro-batch), and checkpoints hold the model, optimiser, scheduler, grad scaler and all RNG states.
Resuming from a checkpoint at step s replays steps s.. exactly as the uninterrupted run does (with
``data.loader_workers=0``; worker processes draw their own augmentation seeds).

Global batch: ``train.batch_size`` is split across ``ctx.world_size`` workers and each share into
``train.grad_accum`` micro-batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from t4p.config import (
    CONFIG_FILE,
    Config,
    ConfigError,
    config_hash,
    from_json,
    to_json,
    training_differences,
    validate,
)
from t4p.data.classes import class_list
from t4p.data.datasets import PointsDataset, PretrainDataset, check_shared_cache, make_dataset, resolve_schedule
from t4p.io import write_json, write_text
from t4p.models.clip import load_clip
from t4p.models.text4point import frozen_tensor_ids, trainable_state_dict
from t4p.tasks import Task, get_task
from t4p.train.checkpoint import load_checkpoint, restore_model, rng_state, save_checkpoint, set_rng_state
from t4p.train.context import RunContext, RunContextProtocol
from t4p.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data order


class StepBatchSampler(torch.utils.data.Sampler):
    """Micro-batches of dataset indices for steps ``start_step..max_steps-1`` of this rank.

    Sample position k of the run's stream is ``perm_{k // n}[k % n]``, where ``perm_e`` is a
    permutation seeded by (seed, e). Step s takes positions [s*B, (s+1)*B); rank r takes its
    contiguous share of B / world_size, cut into ``grad_accum`` micro-batches.
    """

    def __init__(self, n: int, cfg: Config, rank: int, world_size: int, start_step: int, shuffle: bool = True) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size
        self.seed, self.shuffle = cfg.train.seed, shuffle
        self.batch, self.accum = cfg.train.batch_size, cfg.train.grad_accum
        self.start_step, self.max_steps = start_step, cfg.train.max_steps
        self.micro = micro_batch_size(cfg, world_size)
        self._perm: tuple[int, torch.Tensor] | None = None

    def index(self, k: int) -> int:
        epoch, pos = divmod(k, self.n)
        if not self.shuffle:
            return pos
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=gen))
        return int(self._perm[1][pos])

    def micro_batches(self, step: int) -> list[list[int]]:
        base = step * self.batch + self.rank * (self.batch // self.world_size)
        return [[self.index(base + a * self.micro + j) for j in range(self.micro)] for a in range(self.accum)]

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            yield from self.micro_batches(step)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.accum


def micro_batch_size(cfg: Config, world_size: int) -> int:
    b, accum = cfg.train.batch_size, cfg.train.grad_accum
    if b % (world_size * accum):
        raise ConfigError(
            f"train.batch_size={b} (global) must be divisible by world_size ({world_size}) x train.grad_accum ({accum})"
        )
    return b // (world_size * accum)


# --------------------------------------------------------------------------- models


def build_model(cfg: Config, restoring: bool = False) -> tuple[nn.Module, object | None]:
    """The model of ``cfg.train.task`` and the CLIP bundle it uses (None when it needs no CLIP);
    ``restoring``: its weights and buffers will come from a checkpoint (``Task.build_model``)."""
    task = get_task(cfg.train.task)
    bundle = None
    if task.needs_clip(cfg):
        bundle = load_clip(cfg.model.clip)
        log.info("CLIP: %s", bundle.describe())
    return task.build_model(cfg, bundle, list(class_list(cfg.data.classes).text_names), restoring), bundle


def transfer_pretrained(model: nn.Module, path: str, frozen_ids: set[int]) -> dict:
    """Initialise ``model`` from a pre-training checkpoint by parameter name and shape.

    Prints the loaded, skipped (absent here or another shape) and new parameters; raises if
    nothing matched. Returns ``{"init_config_hash", "loaded", "skipped", "new"}``.
    """
    ckpt = load_checkpoint(path, require=("model",))
    src, own = ckpt["model"], trainable_state_dict(model, frozen_ids)
    loaded = sorted(k for k, v in src.items() if k in own and own[k].shape == v.shape)
    skipped = sorted(set(src) - set(loaded))
    new = sorted(set(own) - set(loaded))
    if not loaded:
        raise ValueError(
            f"finetune.init={path}: no parameter of the checkpoint matches this model by name and shape "
            f"(checkpoint has e.g. {sorted(src)[:3]}, the model e.g. {sorted(own)[:3]})"
        )
    model.load_state_dict({k: src[k] for k in loaded}, strict=False)
    print(f"transfer from {path}: loaded {len(loaded)}, skipped {len(skipped)}, new {len(new)}")
    print("  loaded, by module: " + _by_module(loaded))  # the full list is in the returned dict
    for title, names in (("skipped", skipped), ("new", new)):
        print(f"  {title}: " + (", ".join(names) if names else "-"))
    return {"init_config_hash": ckpt.get("config_hash", ""), "loaded": loaded, "skipped": skipped, "new": new}


def _by_module(names: list[str]) -> str:
    """``backbone.unet (180), backbone.tqm (22)``: tensor counts per two-level module prefix."""
    counts: dict[str, int] = {}
    for name in names:
        prefix = ".".join(name.split(".")[:2])
        counts[prefix] = counts.get(prefix, 0) + 1
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "-"


# --------------------------------------------------------------------------- per-step randomness


def pair_generator(cfg: Config, step: int, rank: int, micro: int) -> torch.Generator:
    """The generator of one micro-batch's sampling (pixel-voxel pairs): a function of (seed, step, rank, micro)."""
    return torch.Generator().manual_seed(((cfg.train.seed * 1_000_003 + step) * 1009 + rank) * 101 + micro)


# --------------------------------------------------------------------------- the loop


@dataclass
class _State:
    step: int = 0
    history: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(cfg: Config, ctx) -> torch.device:
    if getattr(ctx, "device", None) is not None:
        return torch.device(ctx.device)
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.train.device)


def run(cfg: Config, ctx: RunContextProtocol | None = None) -> dict:
    """Train ``cfg.train.task`` to ``train.max_steps``; return (and write) the final metrics."""
    cfg = validate(cfg)
    ctx = ctx if ctx is not None else RunContext.for_config(cfg)
    if ctx.shares_data_cache:
        check_shared_cache(cfg)  # before anything reads it (the schedule, a detector's mean box sizes)
    cfg = resolve_schedule(cfg)  # train.epochs -> train.max_steps on the training split (if not yet)
    out_dir = Path(cfg.train.out_dir)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    device = pick_device(cfg, ctx)
    task = get_task(cfg.train.task)
    model, bundle = build_model(cfg)
    frozen = frozen_tensor_ids(bundle)
    transfer: dict = {}
    if task.fine_tuning and cfg.finetune.init:
        transfer = transfer_pretrained(model, cfg.finetune.init, frozen)
    model.to(device)
    frozen = frozen_tensor_ids(bundle)  # storages moved with the model
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.max_steps)
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    state = _State()
    resume_rng = None
    if ctx.resume_dir:
        ckpt = load_checkpoint(ctx.resume_dir, map_location=device)
        check_resumable(ckpt, cfg, ctx.resume_dir)
        restore_model(model, ctx.resume_dir, ckpt["model"], frozen)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        resume_rng = ckpt["rng"]  # restored right before the first step (dataset building may draw)
        state.step = int(ckpt["step"])
        state.history = [float(x) for x in ckpt["history"].tolist()]
        state.terms = {k: [float(x) for x in v.tolist()] for k, v in ckpt["terms"].items()}
        transfer = {"init_config_hash": ckpt.get("init_config_hash", "")} if not transfer else transfer
        log.info("resumed from %s at step %d", ctx.resume_dir, state.step)
    start_step = state.step
    if ctx.rank == 0:  # the resolved config this run trains under (after a refused resume: untouched); --config
        write_text(out_dir / CONFIG_FILE, to_json(cfg))  # replays it (t4p.config.read_config_file)

    class_names = list(class_list(cfg.data.classes).names)
    # make_dataset is annotated as returning a plain Dataset; it builds one of these two (sized, with a collate)
    train_ds = cast("PretrainDataset | PointsDataset", make_dataset(cfg, "train"))
    sampler = StepBatchSampler(len(train_ds), cfg, ctx.rank, ctx.world_size, start_step)
    loader = ctx.prepare_loader(
        torch.utils.data.DataLoader(
            train_ds, batch_sampler=sampler, collate_fn=train_ds.collate, num_workers=cfg.data.loader_workers
        )
    )
    eval_loader = None
    if task.fine_tuning:
        eval_ds = cast("PretrainDataset | PointsDataset", make_dataset(cfg, cfg.finetune.eval_split, augment=False))
        eval_loader = torch.utils.data.DataLoader(
            eval_ds,
            batch_sampler=_shard_batches(len(eval_ds), micro_batch_size(cfg, ctx.world_size), ctx),
            collate_fn=eval_ds.collate,
            num_workers=cfg.data.loader_workers,
        )
    core = model
    model = ctx.prepare_model(model)
    core = getattr(model, "module", core)
    model.train()

    hashes = {"config_hash": config_hash(cfg), **{k: v for k, v in transfer.items() if k == "init_config_hash"}}
    info = {**hashes, "resumed_from_step": start_step}  # where this process started: 0 unless it resumed
    metrics: dict = {"step": start_step, "epoch": _epoch(start_step, cfg, len(train_ds)), **info}
    ckpt_dir = out_dir / "checkpoint"
    it = iter(loader)
    if resume_rng is not None:
        set_rng_state(resume_rng)
    progress = _progress(ctx, start_step, cfg.train.max_steps, task.name)
    last_time = time.perf_counter()
    for step in range(start_step, cfg.train.max_steps):
        _inject_fault(cfg, step, ctx)
        terms = _train_step(model, core, it, optimizer, scheduler, scaler, cfg, step, ctx, device, task)
        state.step = step + 1
        loss = sum(terms.values())
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss} ({terms}); lower optim.lr or set optim.grad_clip")
        state.history.append(loss)
        for name, v in terms.items():
            state.terms.setdefault(name, []).append(v)
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}")
        done = state.step == cfg.train.max_steps
        if state.step % cfg.train.log_every == 0 and ctx.rank == 0:
            now = time.perf_counter()
            log.info(
                "step %d loss %.4f %s (%.2f s/step)",
                state.step,
                loss,
                _fmt(terms),
                (now - last_time) / cfg.train.log_every,
            )
            last_time = now
        do_eval = state.step % cfg.train.eval_every == 0 or done
        do_ckpt = state.step % cfg.train.checkpoint_every == 0 or done
        if do_eval or do_ckpt:
            metrics = _metrics(state, cfg, len(train_ds), optimizer, info)
            if do_eval and eval_loader is not None:
                metrics.update(evaluate(task, core, eval_loader, cfg, device, class_names))
            reported_dir = None
            if do_ckpt:
                if ctx.rank == 0:
                    _save(ckpt_dir, core, optimizer, scheduler, scaler, state, cfg, frozen, hashes)
                reported_dir = str(ckpt_dir)
            ctx.report(_numeric(metrics), reported_dir)
    progress.close()
    if start_step >= cfg.train.max_steps:
        metrics = _metrics(state, cfg, len(train_ds), optimizer, info)
    if ctx.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", metrics, indent=2)
    return metrics


def check_resumable(ckpt: dict, cfg: Config, where: str) -> None:
    """Refuse to continue a checkpoint trained under another config (unless ``train.resume=force``).

    Compared: every key but ``t4p.config.RESUME_FREE_KEYS`` (bookkeeping, cadence, device, and the run's
    length, since extending ``train.max_steps`` is a legitimate resume).
    """
    diff = training_differences(from_json(ckpt["config"]), cfg)
    if not diff:
        return
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
    if cfg.train.resume == "force":
        log.warning("train.resume=force: resuming %s although the config differs (%s)", where, listed)
        return
    raise ConfigError(
        f"{where}: this checkpoint was trained under another config ({listed}); use another train.out_dir "
        "(or --fresh to start over it), or train.resume=force to continue it anyway"
    )


def _inject_fault(cfg: Config, step: int, ctx) -> None:
    """Fault injection for tests, once: only in a run that did not resume from a checkpoint."""
    if ctx.resume_dir:
        return
    if step == cfg.train.fail_at_step:
        raise RuntimeError(f"train.fail_at_step={step}: injected failure (a resumed run does not fail again)")
    if step == cfg.train.kill_at_step and ctx.rank == 0:
        log.warning("train.kill_at_step=%d: rank 0 (pid %d) SIGKILLs itself", step, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


def _train_step(model, core, it, optimizer, scheduler, scaler, cfg, step, ctx, device, task: Task) -> dict:
    """One optimiser step over ``train.grad_accum`` micro-batches; returns the mean loss terms."""
    optimizer.zero_grad(set_to_none=True)
    accum = cfg.train.grad_accum
    use_amp = scaler.is_enabled()
    sums: dict[str, float] = {}
    for a in range(accum):
        batch = next(it).to(device)
        sync = a == accum - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                out = model(batch)
            terms = task.loss_terms(core, batch, out, cfg, pair_generator(cfg, step, ctx.rank, a))
            loss = sum(terms.values()) / accum
            scaler.scale(loss).backward()
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + float(v.detach()) / accum
    if cfg.optim.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return sums


def _shard_batches(n: int, size: int, ctx) -> list[list[int]]:
    """Evaluation batches in dataset order, every rank its strided share."""
    mine = list(range(ctx.rank, n, ctx.world_size))
    return [mine[i : i + size] for i in range(0, len(mine), size)]


def _epoch(step: int, cfg: Config, n: int) -> float:
    return step * cfg.train.batch_size / max(1, n)


def _metrics(state: _State, cfg: Config, n: int, optimizer, hashes: dict) -> dict:
    window = max(1, min(cfg.train.log_every, len(state.history)))
    out = {
        "step": state.step,
        "epoch": _epoch(state.step, cfg, n),
        "loss": float(np.mean(state.history[-window:])) if state.history else float("nan"),
        "lr": optimizer.param_groups[0]["lr"],
        **hashes,
    }
    for name, values in state.terms.items():
        out[name] = float(np.mean(values[-window:]))
    return out


def evaluate(task: Task, core, eval_loader, cfg: Config, device, class_names) -> dict:
    """The task's flat scores on ``finetune.eval_split``, prefixed by the split (``test_miou``, ``test_ap50/chair``)."""
    split = cfg.finetune.eval_split
    return {f"{split}_{k}": v for k, v in task.evaluate(core, eval_loader, cfg, device, class_names).items()}


def _numeric(metrics: dict) -> dict:
    """What ``ctx.report`` receives: numbers only (hashes stay in metrics.json and the return value)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _fmt(terms: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in terms.items())


def _save(ckpt_dir: Path, core, optimizer, scheduler, scaler, state: _State, cfg: Config, frozen, hashes) -> None:
    payload = {
        "model": trainable_state_dict(core, frozen),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_state(),
        "step": state.step,
        "history": torch.tensor(state.history, dtype=torch.float64),
        "terms": {k: torch.tensor(v, dtype=torch.float64) for k, v in state.terms.items()},
        "config": to_json(cfg, flat=True),
        "config_hash": hashes["config_hash"],
        "init_config_hash": hashes.get("init_config_hash", ""),
        "task": cfg.train.task,
    }
    save_checkpoint(ckpt_dir / "checkpoint.pt", payload)


def _progress(ctx, start: int, total: int, task: str):
    return tqdm(total=total, initial=start, desc=task, disable=ctx.rank != 0, dynamic_ncols=True, leave=False)
