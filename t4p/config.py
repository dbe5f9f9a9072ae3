"""Typed configuration: one object, dotted keys everywhere.

The CLI, the ablation grid, Optuna spaces and MLflow params all address settings by the
same dotted keys (``optim.lr``, ``model.tqm``). ``apply_overrides`` turns ``KEY=VALUE``
strings into typed values; ``to_flat_dict``/``from_flat_dict`` convert to and from a flat
mapping. Every error names the offending key and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from t4p.errors import UserError

SparseBackend = Literal["auto", "minkowski", "torch"]
TextSource = Literal["clip", "random"]
Task = Literal["pretrain", "semseg", "insseg", "det"]


@dataclass(frozen=True)
class TaskTraits:
    """What the layers below ``t4p.tasks`` (data, models, commands) know of a task, read here instead of
    testing its name; the task objects themselves (model, loss terms, evaluation) live in ``t4p.tasks``."""

    # False: self-supervised pre-training on RGB-D pairs (every official training scan trains, the
    # validation scans only monitor, no validation hold-out); True: starts from finetune.init, labelled points
    fine_tuning: bool
    boxes: bool  # samples carry boxes: subsampled to data.num_points, axis-aligned unless det.oriented_boxes
    config_classes: bool  # prepared labels follow data.classes (segmentation); else a fixed list


TASK_TRAITS: dict[str, TaskTraits] = {
    "pretrain": TaskTraits(fine_tuning=False, boxes=False, config_classes=False),
    "semseg": TaskTraits(fine_tuning=True, boxes=False, config_classes=True),
    "insseg": TaskTraits(fine_tuning=True, boxes=False, config_classes=True),
    "det": TaskTraits(fine_tuning=True, boxes=True, config_classes=False),
}


def task_traits(cfg: Config) -> TaskTraits:
    return TASK_TRAITS[cfg.train.task]


class ConfigError(UserError, ValueError):
    """A setting is unknown, has the wrong type, is out of range, or contradicts another setting."""


@dataclass
class DataConfig:
    dataset: Literal["synthetic", "scannet-rgbd", "scannet-sens", "s3dis-raw", "scannet-votenet", "sunrgbd"] = (
        "synthetic"
    )
    root: str = ""  # raw data on disk ("" = synthetic scenes generated under train.out_dir)
    prepared_dir: str = ""  # prepared caches (npz + manifest); "" = <train.out_dir>/prepared
    classes: Literal["scannet20", "s3dis13", "sunrgbd10", "scannet18"] = "s3dis13"
    frame_skip: int = 25  # every 25th RGB-D frame (paper, Sec. 4.1)
    image_height: int = 240
    image_width: int = 320
    voxel_size: float = 0.05  # metres: 2.5 cm pre-training / detection, 5 cm S3DIS
    corr_depth_tol: float = 0.02  # metres: a voxel projects validly if depth agrees within this
    scenes: tuple[str, ...] = ()  # explicit scene list ("" = the dataset's default split)
    train_areas: tuple[int, ...] = (1, 2, 3, 4, 6)
    val_areas: tuple[int, ...] = ()  # searches select on these, never on test_area
    # rooms/scenes of the training split held out as this run's validation split when val_areas is empty; 0 = train
    # on the whole official training split (the paper recipes). Searches use sweep.val_fraction instead.
    val_fraction: float = 0.0
    test_area: int = 5
    num_points: int = 0  # point sampling for detection (20k SUN RGB-D, 40k ScanNet); 0 = all
    label_version: Literal["v1", "v2"] = "v1"  # SUN RGB-D labels; VoteNet's numbers use v1
    augment: bool = True
    aug_flip: bool = True
    aug_rotate_z: bool = True
    aug_scale_min: float = 0.9
    aug_scale_max: float = 1.1
    aug_color_jitter: float = 0.05
    aug_rotate_max: float = 3.141592653589793  # rotation about z: U(-max, max) rad (VoteNet: pi/6 SUN, 5 deg ScanNet)
    aug_flip_y: bool = False  # also mirror y (VoteNet's ScanNet); aug_flip mirrors x
    # colour as the backbone's input features; false = a constant 1 in each of the 3 channels (VoteNet feeds no
    # colour; 3 channels keep a colour-pre-trained stem loadable; the height feature is added at the seeds)
    use_color: bool = True
    synth_scenes: int = 6
    synth_seed: int = 0
    synth_frames_per_scene: int = 8
    synth_point_density: float = 300.0  # synthetic rooms: labelled surface points per m^2 (added by data)
    loader_workers: int = 0
    # a bad unit (room, scene, .sens) of data.root: "error" = preparing caches the good units, then fails listing
    # every bad one (file and line / frame / row); "skip" = left out, listed in the cache's manifest.json (bad_units)
    on_bad: Literal["error", "skip"] = "error"


@dataclass
class ClipConfig:
    arch: str = "RN50"
    weights: str = "random-tiny"  # "random-tiny" | open_clip pretrained tag (local cache) | file path
    dense_mode: Literal["attnpool", "maskclip"] = "attnpool"  # Eq. 1 vs MaskCLIP's value-only shortcut
    template: str = "point cloud of {}."
    feature_cache: bool = True  # cache frozen dense image features per frame (fp16)
    cache_dir: str = ""  # "" = ~/.cache/t4p/clip
    fp16: bool = True  # run the frozen image encoder in fp16 on GPU


@dataclass
class ModelConfig:
    sparse_backend: SparseBackend = "auto"
    in_channels: int = 3
    stem_kernel: int = 5  # ME MinkUNet34C: 5; PointContrast Res16UNet34C: 3
    stem_channels: int = 32
    enc_planes: tuple[int, ...] = (32, 64, 128, 256)
    enc_blocks: tuple[int, ...] = (2, 3, 4, 6)
    dec_planes: tuple[int, ...] = (256, 128, 96, 96)
    dec_blocks: tuple[int, ...] = (2, 2, 2, 2)
    bn_momentum: float = 0.1
    tqm: bool = True
    text_source: TextSource = "clip"
    prompt_learning: bool = False
    n_ctx: int = 8
    ctx_init: str = "point cloud of"  # "" = N(0, 0.02^2) context vectors (CoOp)
    tqm_heads: int = 1  # not stated by the paper
    tqm_mlp_ratio: float = 4.0
    tqm_alpha_init: float = 1.0
    tqm_beta_init: float = 0.0
    decoder_2d_channels: int = 96  # g2D output width = the 3D decoder's width
    clip: ClipConfig = field(default_factory=ClipConfig)


@dataclass
class LossConfig:
    tau: float = 0.4  # Eq. 14
    max_pairs: int = 4096  # pixel-voxel pairs sampled per frame (PPKT/SLidR)
    encoder_weight: float = 1.0  # L_e
    decoder_weight: float = 1.0  # L_d
    coarse_pair_weighting: bool = False  # weight lifted encoder pairs by how many fine pairs merged
    depth: bool = True  # App. C depth loss
    depth_kind: Literal["silog", "l1"] = "silog"
    depth_weight: float = 1.0
    aux: bool = False  # Eq. 15-16
    aux_tau: float = 0.07
    aux_weight: float = 1.0
    aux_range: float = 0.0  # metres around each encoder point; 0 = the encoder voxel's own cell
    ignore_label: int = -100


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"  # momentum SGD (segmentation) or Adam (VoteNet's, the detection recipes)
    lr: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.0  # SGD dampening (PyTorch: 0; PointContrast: 0.1); the paper is silent
    weight_decay: float = 1e-4
    # exclude BatchNorm, biases and TQM alpha/beta from weight decay; the paper recipes decay every parameter
    # ("Weight decay is set to 0.0001", App. B.1), the smoke recipes keep the exclusion
    wd_exclude_norm_bias: bool = True
    schedule: Literal["exp", "poly", "cosine", "constant"] = "poly"
    exp_gamma: float = 0.99
    exp_every: int = 1000  # PointContrast applies the 0.99 decay every 1000 iterations
    poly_power: float = 0.9
    warmup_steps: int = 0
    warmup_epochs: int = 0  # > 0: warmup_steps derived from the training split's size (like train.epochs)
    grad_clip: float = 0.0  # 0 = off


@dataclass
class TrainConfig:
    task: Task = "semseg"
    max_steps: int = 60000  # used when train.epochs = 0
    # > 0: the schedule is in epochs (the paper's unit for pre-training and detection); max_steps is then
    # derived as epochs * ceil(epoch_size / batch_size) before any planning (t4p.data.datasets.resolve_schedule)
    epochs: int = 0
    epoch_size: int = 0  # derived, not set by hand: training samples per epoch the schedule was resolved on
    batch_size: int = 48  # global: split across DDP workers
    grad_accum: int = 1
    eval_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision on GPU only
    num_threads: int = 0  # torch intra-op threads; 0 = torch default
    out_dir: str = "runs"
    # a checkpoint already in train.out_dir: auto = resume it if its config trains the same thing (else an error
    # naming the differing keys), never = refuse to start over it, force = resume whatever its config
    resume: Literal["auto", "never", "force"] = "auto"
    fail_at_step: int = -1  # fault injection for tests: raise once at this step
    # fault injection for tests: the rank-0 worker process SIGKILLs itself once at this step (a run
    # resumed from a checkpoint does not; so put it after the first checkpoint); off by default
    kill_at_step: int = -1


@dataclass
class FinetuneConfig:
    init: str = ""  # pre-training checkpoint path; "" = from scratch
    # what the run evaluates on; "train" = the training split without augmentation (fitting checks only)
    eval_split: Literal["train", "val", "test"] = "test"


@dataclass
class InsSegConfig:
    """Instance segmentation (PointGroup-style offsets and clustering, Table 2)."""

    offset_weight: float = 1.0
    cluster_radius: float = 0.03
    cluster_min_points: int = 50
    # evaluation drops proposals and GT instances below this many points (the ScanNet benchmark's 100)
    min_region_size: int = 100


@dataclass
class DetConfig:
    """Detection: VoteNet on SR-UNet (t4p.models.votenet, t4p.models.votenet_loss); VoteNet's defaults where the
    paper is silent."""

    num_proposals: int = 256
    vote_radius: float = 0.3
    num_heading_bins: int = 12
    oriented_boxes: bool = True
    num_seeds: int = 1024  # seed points sampled from the backbone's per-point features (VoteNet: 1024)
    seed_sampling: Literal["fps", "random"] = "fps"  # farthest point sampling or a random subset (one point per voxel)
    # VoteNet's height feature (z above the floor, the scene's 1st z percentile), appended to each seed's feature;
    # at the seeds, not the backbone input, so the pre-trained colour-only stem still transfers
    seed_height: bool = True
    vote_nsample: int = 16  # votes grouped per proposal by the ball query of radius vote_radius (VoteNet: 16)
    mlp_width: int = 128  # width of the voting and proposal MLPs (VoteNet: 128 for the proposal module)
    vote_weight: float = 1.0  # VoteNet: loss = vote + 0.5 objectness + box + 0.1 semantic, all x 10
    objectness_weight: float = 0.5
    box_weight: float = 1.0
    sem_weight: float = 0.1
    heading_cls_weight: float = 0.1  # inside the box loss (VoteNet: 0.1 for both classifications)
    size_cls_weight: float = 0.1
    loss_scale: float = 10.0
    near_threshold: float = 0.3  # proposal within this distance (m) of a GT centre: positive
    far_threshold: float = 0.6  # beyond this: negative; in between: ignored
    objectness_neg_weight: float = 0.2  # objectness cross-entropy class weights (VoteNet: 0.2 / 0.8)
    objectness_pos_weight: float = 0.8
    nms_iou: float = 0.25  # 3D NMS at evaluation (VoteNet: 0.25, per class)
    conf_threshold: float = 0.05  # proposals below this objectness probability are dropped
    per_class_proposal: bool = True  # VoteNet's evaluation: every kept proposal scored for every class


@dataclass
class SweepConfig:
    experiment: str = "t4p-ablation"
    # what the trials fine-tune and are scored on: a train.task on one dataset (t4p.sweep.benchmarks)
    benchmark: Literal["semseg", "insseg", "det-sunrgbd", "det-scannet"] = "semseg"
    grid: str = ""  # ablation grid file (t4p.sweep.rows.load_grid); "" = the paper's Tables 5/6 + App. C
    rows: tuple[str, ...] = ()  # () = every row of the grid, in its order
    seeds: tuple[int, ...] = (0, 1, 2)
    workers_per_trial: int = 1
    gpus_per_trial: float = 0.0
    cpus_per_worker: float = 1.0
    max_concurrent: int = 0  # trials at once; 0 = as many as the cluster's CPUs/GPUs allow (per trial's request)
    checkpoints_to_keep: int = 2  # per trial, the newest ones (a resume needs only the last)
    trials: int = 16
    val_fraction: float = 0.2  # searches: data.val_fraction of their trials (unless data.val_areas is set)
    asha_grace_steps: int = 1
    storage_path: str = ""  # Ray storage ("" = ./ray_results); shared storage on multi-node
    stage_store: str = ""  # pre-training checkpoints by hash ("" = ./t4p_stages)
    max_failures: int = 2
    resume: bool = False
    dry_run: bool = False


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = ""  # "" = $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlruns/mlflow.db
    experiment: str = ""  # "" = sweep.experiment


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    insseg: InsSegConfig = field(default_factory=InsSegConfig)
    det: DetConfig = field(default_factory=DetConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- introspection


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _leaf_types(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> annotated type, for every leaf setting (computed once: the schema is static; read-only)."""
    out: dict[str, Any] = {}
    for name, tp in _field_types(cls).items():
        key = f"{prefix}{name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a section (a dataclass type, not an instance)
            out.update(_leaf_types(tp, key + "."))
        else:
            out[key] = tp
    return out


def valid_keys() -> list[str]:
    return sorted(_leaf_types())


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a comma-separated list of {typing.get_args(tp)[0].__name__}"
    return getattr(tp, "__name__", str(tp))


# --------------------------------------------------------------------------- conversion


def _convert(key: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (a string from the CLI or an already-typed value) to ``tp``."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise bad
        return tuple(_convert(key, item_tp, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(tp, types.UnionType):  # pragma: no cover - no unions in the schema today
        raise bad
    raise bad


# --------------------------------------------------------------------------- renamed keys

# Old dotted key -> today's (issue 16 split ``finetune`` into ``finetune``, ``insseg`` and ``det`` and renamed
# ``sweep.task``). Saved configs, checkpoints and sweep state files written before still load: every old key is
# translated with a FutureWarning (shown to users by default, unlike DeprecationWarning).
_INSSEG_KEYS = ("offset_weight", "cluster_radius", "cluster_min_points", "min_region_size")
_DET_KEYS = ("num_proposals", "vote_radius", "num_heading_bins", "oriented_boxes", "num_seeds", "seed_sampling",
             "seed_height", "vote_nsample")
_DET_PREFIXED_KEYS = ("mlp_width", "vote_weight", "objectness_weight", "box_weight", "sem_weight",
                      "heading_cls_weight", "size_cls_weight", "loss_scale", "near_threshold", "far_threshold",
                      "objectness_neg_weight", "objectness_pos_weight", "nms_iou", "conf_threshold",
                      "per_class_proposal")
RENAMED_KEYS: dict[str, str] = {
    **{f"finetune.{k}": f"insseg.{k}" for k in _INSSEG_KEYS},
    **{f"finetune.{k}": f"det.{k}" for k in _DET_KEYS},
    **{f"finetune.det_{k}": f"det.{k}" for k in _DET_PREFIXED_KEYS},
    "sweep.task": "sweep.benchmark",
}
# ``finetune.det_optimizer`` chose detection's optimiser only (every config carried "adam"): it becomes
# ``optim.name`` for detection configs and is dropped for the others (which always ran SGD).
DET_OPTIMIZER_KEY = "finetune.det_optimizer"


def _renamed(key: str) -> str:
    new = RENAMED_KEYS.get(key)
    if new is None:
        return key
    warnings.warn(f"config key {key!r} is now {new!r} (the old name still loads)", FutureWarning, stacklevel=3)
    return new


def migrate_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """A copy of a flat dotted config with old key names translated (``RENAMED_KEYS``); one warning lists them."""
    out = {RENAMED_KEYS.get(k, k): v for k, v in flat.items() if k != DET_OPTIMIZER_KEY}
    old = sorted(k for k in flat if k in RENAMED_KEYS)
    if DET_OPTIMIZER_KEY in flat:
        old.append(DET_OPTIMIZER_KEY)
        if flat.get("train.task") == "det" and "optim.name" not in flat:
            out["optim.name"] = flat[DET_OPTIMIZER_KEY]
    if old:
        moves = ", ".join(f"{k} -> {RENAMED_KEYS.get(k, 'optim.name (detection only)')}" for k in old)
        warnings.warn(f"this config uses {len(old)} old key names, translated: {moves}", FutureWarning, stacklevel=3)
    return out


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set one dotted key on ``cfg`` in place, with type conversion."""
    types_by_key = _leaf_types()
    if key == DET_OPTIMIZER_KEY:  # an explicit override: the user means detection's optimiser
        warnings.warn(f"config key {key!r} is now 'optim.name'", FutureWarning, stacklevel=2)
        key = "optim.name"
    key = _renamed(key)
    if key not in types_by_key:
        raise _unknown_key(key)
    *path, leaf = key.split(".")
    obj: Any = cfg
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, leaf, _convert(key, types_by_key[key], value))


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Return a copy of ``cfg`` with ``KEY=VALUE`` overrides applied and validated."""
    out = _copy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=0.05")
        key, value = item.split("=", 1)
        set_value(out, key.strip(), value.strip())
    validate(out)
    return out


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``Config`` -> {"optim.lr": 0.1, ...} (tuples kept as tuples)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def from_flat_dict(flat: dict[str, Any], base: Config | None = None) -> Config:
    """Inverse of ``to_flat_dict``; missing keys keep ``base``'s (default: Config()) values."""
    cfg = base if base is not None else Config()
    cfg = _copy(cfg)
    for key, value in migrate_flat(flat).items():
        set_value(cfg, key, value)
    return cfg


def from_json(text: str, base: Config | None = None) -> Config:
    """A config from JSON, flat (``to_json(cfg, flat=True)``: checkpoints) or nested (``to_json(cfg)``: the
    ``config.json`` artifact of an MLflow run); old key names load (``RENAMED_KEYS``)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"a config in JSON must be an object, got {type(data).__name__}")
    return from_flat_dict(_flatten(data), base)


CONFIG_FILE = "config.json"  # what the loop writes into train.out_dir and tracking logs as an artifact


def read_config_file(path: str | os.PathLike, base: Config | None = None) -> Config:
    """A logged config (``--config``): a ``config.json`` (nested or flat, ``from_json``) or a run folder
    holding one; its keys replace ``base``'s (default ``Config()``). Errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config file {path} does not exist or cannot be read ({err.strerror})") from err
    try:
        return from_json(text, base)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a JSON config (line {err.lineno} column {err.colno}: {err.msg})") from err
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _copy(cfg: Config) -> Config:
    def rebuild(obj: Any) -> Any:
        kwargs = {
            f.name: rebuild(getattr(obj, f.name))
            if dataclasses.is_dataclass(getattr(obj, f.name))
            else getattr(obj, f.name)
            for f in dataclasses.fields(obj)
        }
        return type(obj)(**kwargs)

    return rebuild(cfg)


def to_json(cfg: Config, flat: bool = False) -> str:
    data = to_flat_dict(cfg) if flat else dataclasses.asdict(cfg)
    return json.dumps(data, indent=2, sort_keys=flat)


def config_hash(cfg: Config, keys_prefixes: tuple[str, ...] = ()) -> str:
    """Stable short hash of the settings under ``keys_prefixes`` (all settings if empty)."""
    flat = to_flat_dict(cfg)
    chosen = {k: v for k, v in flat.items() if not keys_prefixes or k.startswith(keys_prefixes)}
    blob = json.dumps(chosen, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- resuming

# Keys that do not change what a run trains: a checkpoint may be resumed under other values (a longer
# train.max_steps extends the run). Exact keys, or whole sections when they end with ".".
RESUME_FREE_KEYS = (
    "tracking.", "sweep.",  # bookkeeping
    "train.max_steps", "train.epochs", "train.epoch_size",  # extending a run
    "train.eval_every", "train.checkpoint_every", "train.log_every", "finetune.eval_split",  # cadence, what is shown
    "train.device", "train.num_threads", "data.loader_workers", "model.sparse_backend",  # where and how fast
    "train.out_dir", "train.resume", "data.prepared_dir", "model.clip.cache_dir", "model.clip.feature_cache",
    "train.fail_at_step", "train.kill_at_step",  # fault injection (tests)
)


def _resume_free(key: str) -> bool:
    return any(key.startswith(k) if k.endswith(".") else key == k for k in RESUME_FREE_KEYS)


def training_differences(saved: Config, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Keys (not in ``RESUME_FREE_KEYS``) whose values differ: ``{key: (saved value, this value)}``."""
    a, b = to_flat_dict(saved), to_flat_dict(cfg)
    return {k: (a.get(k), b[k]) for k in sorted(b) if not _resume_free(k) and a.get(k) != b[k]}


# --------------------------------------------------------------------------- validation


# Ranges of single settings, by dotted key (every float setting must also be finite; every ``*_every``
# cadence is >= 1, see ``_range_rules``): (keys, test, what was expected).
_POSITIVE = ("data.voxel_size", "data.corr_depth_tol", "loss.tau", "loss.aux_tau", "optim.lr", "train.batch_size",
             "train.grad_accum", "insseg.min_region_size", "sweep.workers_per_trial", "sweep.checkpoints_to_keep")
_AT_LEAST_ONE = ("data.frame_skip", "data.image_height", "data.image_width")
_NON_NEGATIVE = ("loss.aux_range", "sweep.gpus_per_trial", "sweep.max_concurrent")
_FRACTIONS = ("data.val_fraction", "sweep.val_fraction")


def _range_rules() -> tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...]:
    every = tuple(k for k in valid_keys() if k.endswith("_every"))  # train.eval_every, optim.exp_every, ...
    floats = tuple(k for k, tp in _leaf_types().items() if tp is float)
    return (
        (floats, math.isfinite, "a finite number"),
        (_POSITIVE, lambda v: v > 0, "a positive value"),
        ((*_AT_LEAST_ONE, *every), lambda v: v >= 1, ">= 1"),
        (_NON_NEGATIVE, lambda v: v >= 0, ">= 0"),
        (_FRACTIONS, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    )


def check_ranges(cfg: Config) -> None:
    """Each setting on its own: finite floats, positive sizes, cadences >= 1, fractions in [0, 1)."""
    flat = to_flat_dict(cfg)
    for keys, ok, expected in _range_rules():
        for key in keys:
            if not ok(flat[key]):
                raise ConfigError(f"config key {key!r}: expected {expected}, got {flat[key]}")


def _uri_password(value: str) -> str | None:
    try:
        return urlsplit(value).password
    except ValueError:  # not a URI (e.g. an unbalanced '[')
        return None


def check_uri_has_no_credentials(where: str, value: str) -> None:
    """No ``user:password@host`` inside a URI: it would be logged with every run (MLflow params, the config
    artifact, checkpoints), and a redacted URI saved there could never be replayed, so credentials come from
    the environment instead. ``where`` names the setting; the message never repeats the secret."""
    if "@" in value and _uri_password(value) is not None:
        raise ConfigError(
            f"{where}: the URI holds credentials (user:password@host), which would be logged with every run; "
            "remove them and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (a tracking server) or "
            "use the storage SDK's own credentials (AWS_* variables, GOOGLE_APPLICATION_CREDENTIALS)"
        )


def check_no_credentials(cfg: Config) -> None:
    """``check_uri_has_no_credentials`` for every string setting (``tracking.uri``, ``sweep.storage_path``, ...)."""
    for key, value in to_flat_dict(cfg).items():
        if isinstance(value, str):
            check_uri_has_no_credentials(f"config key {key!r}", value)


def check_shared_paths(cfg: Config) -> None:
    """A sweep's storage is a file system path, never a URI: the driver and the trials keep the sweep state, the
    Optuna study, stage locks, data caches and reports there with plain file operations (``os.replace``, lock
    files, sqlite), which an object store cannot give."""
    for key, value in (("sweep.storage_path", cfg.sweep.storage_path), ("sweep.stage_store", cfg.sweep.stage_store)):
        if "://" in value:
            raise ConfigError(
                f"config key {key!r}: {value!r} is a URI; expected a file system path that every node of the "
                "cluster sees (a shared mount, e.g. /mnt/t4p/ray_results on EFS/NFS: cluster/cluster.env), because "
                "sweep state, stage locks and the Optuna database need a real file system"
            )


def validate(cfg: Config) -> Config:
    """Single-setting ranges (``check_ranges``) and cross-field checks; raises ``ConfigError`` naming the keys."""
    check_ranges(cfg)
    check_no_credentials(cfg)
    check_shared_paths(cfg)
    m = cfg.model
    if m.prompt_learning and m.text_source == "random":
        raise ConfigError(
            "model.prompt_learning=true is not applicable with model.text_source=random "
            "(random embeddings have no text encoder to prompt); set model.prompt_learning=false"
        )
    if len(m.enc_planes) != 4 or len(m.enc_blocks) != 4:
        raise ConfigError("model.enc_planes and model.enc_blocks: expected 4 values each (strides 2..16)")
    if len(m.dec_planes) != 4 or len(m.dec_blocks) != 4:
        raise ConfigError("model.dec_planes and model.dec_blocks: expected 4 values each")
    if m.stem_kernel not in (3, 5):
        raise ConfigError(f"model.stem_kernel: expected 3 or 5, got {m.stem_kernel}")
    check_schedule(cfg)
    if cfg.data.test_area in cfg.data.train_areas or cfg.data.test_area in cfg.data.val_areas:
        raise ConfigError(
            f"data.test_area={cfg.data.test_area} also appears in data.train_areas/data.val_areas: "
            "the test area must stay held out"
        )
    if cfg.finetune.eval_split == "val" and task_traits(cfg).fine_tuning:
        check_validation_split(cfg)
    return cfg


def check_validation_split(cfg: Config) -> None:
    """A validation split needs ``data.val_areas`` or a ``data.val_fraction`` > 0 of the training split."""
    if not cfg.data.val_areas and cfg.data.val_fraction <= 0:
        raise ConfigError(
            "a validation split was asked for (finetune.eval_split=val or a search) but data.val_fraction=0 and "
            "data.val_areas is empty: it would be the training data itself; set data.val_fraction (e.g. 0.2) or "
            "data.val_areas"
        )


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Optimiser steps in one pass over ``num_samples``: the global batch is split over DDP workers,
    so the world size does not enter (the last, partial batch counts as a step)."""
    return max(1, math.ceil(num_samples / global_batch))


def check_schedule(cfg: Config) -> None:
    """``train.epochs`` xor ``train.max_steps`` (and ``optim.warmup_epochs`` xor ``optim.warmup_steps``).

    A config whose epochs were resolved (``train.epoch_size`` > 0) carries both, consistently.
    """
    t, o = cfg.train, cfg.optim
    for key, value in (("train.epochs", t.epochs), ("optim.warmup_epochs", o.warmup_epochs),
                       ("train.epoch_size", t.epoch_size), ("optim.warmup_steps", o.warmup_steps)):
        if value < 0:
            raise ConfigError(f"config key {key!r}: expected >= 0, got {value}")
    per_epoch = steps_per_epoch(t.epoch_size, t.batch_size) if t.epoch_size else 0
    pairs = (("train.epochs", t.epochs, "train.max_steps", t.max_steps),
             ("optim.warmup_epochs", o.warmup_epochs, "optim.warmup_steps", o.warmup_steps))
    for ekey, epochs, skey, steps in pairs:
        if epochs == 0 or steps == epochs * per_epoch:
            continue
        state = (f"resolved on train.epoch_size={t.epoch_size} it is {epochs * per_epoch}" if per_epoch
                 else "it is derived from the prepared training split at run time")
        raise ConfigError(
            f"{ekey}={epochs} and {skey}={steps} are both set ({state}): set one of them; "
            f"{ekey}=0 uses {skey}"
        )
    if t.epochs == 0 and t.max_steps <= 0:
        raise ConfigError(f"config key 'train.max_steps': expected a positive value, got {t.max_steps}")


def epochs_resolved(cfg: Config) -> bool:
    """False while an epoch-based schedule still waits for the training split's size."""
    return not (cfg.train.epochs or cfg.optim.warmup_epochs) or cfg.train.epoch_size > 0


def with_epoch_size(cfg: Config, num_samples: int) -> Config:
    """A copy of ``cfg`` with epoch-based lengths turned into steps for ``num_samples`` training samples."""
    out = _copy(cfg)
    if not (cfg.train.epochs or cfg.optim.warmup_epochs):
        return out
    if num_samples <= 0:
        raise ConfigError(f"train.epochs: the training split is empty ({num_samples} samples)")
    per_epoch = steps_per_epoch(num_samples, cfg.train.batch_size)
    out.train.epoch_size = num_samples
    if cfg.train.epochs:
        out.train.max_steps = cfg.train.epochs * per_epoch
    if cfg.optim.warmup_epochs:
        out.optim.warmup_steps = cfg.optim.warmup_epochs * per_epoch
    return validate(out)


def without_epoch_size(cfg: Config) -> Config:
    """A copy of ``cfg`` whose epoch-based lengths wait to be resolved again (another training split)."""
    out = _copy(cfg)
    if out.train.epoch_size:
        out.train.epoch_size = 0
        if out.train.epochs:
            out.train.max_steps = 0
        if out.optim.warmup_epochs:
            out.optim.warmup_steps = 0
    return out
