"""Torch datasets over prepared caches, one per task, and ``make_dataset(cfg, split)``.

``make_dataset`` resolves the source (the synthetic scenes for ``data.dataset=synthetic``,
else ``data.root``), checks its prepared cache (complete, same settings, sources unchanged since:
``t4p.data.prepare.cache_problem``), prepares what is missing or stale (logged) unless told not to,
in which case an untrusted cache is a ``StaleCacheError``; then it picks the split's units (the
format's ``SplitRule``) and returns a dataset whose ``collate`` builds the task's batch dataclass.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from t4p.config import (
    Config,
    ConfigError,
    check_validation_split,
    epochs_resolved,
    task_traits,
    with_epoch_size,
)
from t4p.data import s3dis
from t4p.data.augment import AugmentSpec, augment_points, color_to_feats
from t4p.data.batch import DetBatch, PretrainBatch, SegBatch
from t4p.data.formats import FORMATS, formats_for_task, get_format
from t4p.data.pairs import load_pairs
from t4p.data.prepare import (
    NOT_PREPARED,
    PrepareSettings,
    cache_lock,
    cache_problem,
    load_arrays,
    prepare,
    read_manifest,
    settings_hash,
    stale_cache_error,
)
from t4p.data.prepare import StaleCacheError as StaleCacheError  # raised by make_dataset(prepare=False)
from t4p.data.synthetic import ensure_synthetic
from t4p.sparse.voxelize import voxelize

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _item_rng() -> np.random.Generator:
    """Per-item generator drawn from torch's RNG (seeded by the training loop / DataLoader workers)."""
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))


# --------------------------------------------------------------------------- pre-training pairs


class PretrainDataset(Dataset):
    """One item per prepared frame: image, depth, voxels and pixel-voxel pairs."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return load_pairs(self.files[i])

    @staticmethod
    def collate(items) -> PretrainBatch:
        coords, feats, pv, pp, pf = [], [], [], [], []
        offset = 0
        for b, p in enumerate(items):
            c = p.coords - p.coords.min(axis=0)  # non-negative per frame; rows unchanged
            coords.append(np.concatenate([np.full((len(c), 1), b, np.int32), c.astype(np.int32)], 1))
            feats.append(color_to_feats(p.feats))
            pv.append(p.pair_voxel.astype(np.int64) + offset)
            pp.append(p.pair_pixel.astype(np.int64))
            pf.append(np.full(len(p.pair_voxel), b, np.int64))
            offset += len(c)
        images = torch.from_numpy(np.stack([p.color for p in items])).permute(0, 3, 1, 2).float() / 255.0
        images = (images - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        depth = torch.from_numpy(np.stack([p.depth for p in items]).astype(np.float32))
        depth = depth[:, None]  # (B, 1, H, W)
        return PretrainBatch(
            torch.from_numpy(np.concatenate(coords)),
            torch.from_numpy(np.concatenate(feats)),
            images,
            depth,
            torch.from_numpy(np.concatenate(pv)),
            torch.from_numpy(np.concatenate(pp)),
            torch.from_numpy(np.concatenate(pf)),
            [p.frame_id for p in items],
        )


# --------------------------------------------------------------------------- segmentation / detection


def voxel_mean_color(rgb: np.ndarray, point2voxel: np.ndarray, m: int) -> np.ndarray:
    """Mean colour (M, 3) uint8 of the points in each voxel."""
    counts = np.bincount(point2voxel, minlength=m)[:, None]  # (M, 1)
    sums = np.stack([np.bincount(point2voxel, weights=rgb[:, c], minlength=m) for c in range(3)], 1)
    return np.rint(sums / np.maximum(counts, 1)).astype(np.uint8)


class PointsDataset(Dataset):
    """Rooms or scenes from a prepared cache, augmented (train) and voxelised per item."""

    def __init__(
        self,
        files: list[Path],
        voxel_size: float,
        augment: AugmentSpec | None,
        num_points: int = 0,
        with_boxes: bool = False,
        use_color: bool = True,
    ):
        self.files = files
        self.voxel_size = voxel_size
        self.augment = augment
        self.num_points = num_points
        self.with_boxes = with_boxes
        self.use_color = use_color

    def __len__(self) -> int:
        return len(self.files)

    def _feats(self, rgb: np.ndarray, point2voxel: np.ndarray, m: int) -> np.ndarray:
        """(M, 3) input features: the voxels' mean colour, or constant 1 with ``data.use_color=false``."""
        if not self.use_color:
            return np.ones((m, 3), np.float32)
        return color_to_feats(voxel_mean_color(rgb, point2voxel, m))

    def __getitem__(self, i: int) -> dict:
        return self.item(self.files[i].stem, load_arrays(self.files[i]))

    def item(self, scene_id: str, a: dict) -> dict:
        """One scene's item from its arrays (``xyz``, ``rgb``, ``labels``, ``instances``, ``boxes`` when
        detecting): sampled, augmented and voxelised as the dataset does (``t4p predict`` feeds raw scenes)."""
        xyz, rgb, labels, inst = a["xyz"], a["rgb"], a["labels"], a["instances"]
        boxes = a.get("boxes") if self.with_boxes else None
        rng = _item_rng()
        if self.num_points and len(xyz):  # point sampling for detection (20k / 40k)
            sel = rng.choice(len(xyz), self.num_points, replace=len(xyz) < self.num_points)
            xyz, rgb, labels, inst = xyz[sel], rgb[sel], labels[sel], inst[sel]
        if self.augment is not None:
            xyz, rgb, boxes = augment_points(xyz, rgb, self.augment, rng, boxes)
        vox = voxelize(xyz, self.voxel_size, labels)
        coords = vox.coords - vox.coords.min(axis=0)  # (M, 3) non-negative
        return {
            "scene_id": scene_id,
            "coords": coords,
            "feats": self._feats(rgb, vox.point2voxel, len(coords)),
            "labels": vox.labels,
            "point2voxel": vox.point2voxel,
            "point_labels": labels.astype(np.int64),
            "point_instances": inst.astype(np.int64),
            "point_xyz": xyz.astype(np.float32),
            "boxes": boxes,
        }

    def collate(self, items: list[dict]) -> SegBatch | DetBatch:
        coords, offset, p2v = [], 0, []
        for b, it in enumerate(items):
            coords.append(np.concatenate([np.full((len(it["coords"]), 1), b, np.int32), it["coords"]], 1))
            p2v.append(it["point2voxel"] + offset)
            offset += len(it["coords"])

        def cat(key):
            return torch.from_numpy(np.concatenate([it[key] for it in items]))

        fields = dict(
            coords=torch.from_numpy(np.concatenate(coords).astype(np.int32)),
            feats=cat("feats"),
            labels=cat("labels"),
            point2voxel=torch.from_numpy(np.concatenate(p2v)),
            point_labels=cat("point_labels"),
            point_instances=cat("point_instances"),
            point_xyz=cat("point_xyz"),
            scene_ids=[it["scene_id"] for it in items],
        )
        if self.with_boxes:
            return DetBatch(
                **fields, boxes=[torch.from_numpy(np.asarray(it["boxes"], np.float32)) for it in items]
            )
        return SegBatch(**fields)


# --------------------------------------------------------------------------- splits


def _norm(name: str) -> str:
    """Scene names compare without ``.sens`` and leading zeros (SUN RGB-D split files list 5051)."""
    name = Path(name).name.removesuffix(".sens")
    return (name.lstrip("0") or "0") if name.isdigit() else name


def _read_list(path: Path) -> set[str]:
    return {_norm(ln.strip()) for ln in path.read_text().splitlines() if ln.strip()}


def _find_split_file(root: Path, names: tuple[str, ...]) -> Path | None:
    for d in (root, root / "meta_data", root.parent, root.parent / "meta_data"):
        for n in names:
            if (d / n).exists():
                return d / n
    return None


def _holdout(units: list[str], split: str, fraction: float) -> list[str]:
    """Deterministic every-k-th hold-out of ``units`` for ``val``; the rest for ``train`` (all with fraction 0)."""
    if fraction <= 0:
        if split == "val":
            raise ConfigError("data.val_fraction=0: there is no hold-out to validate or test on (set it > 0)")
        return units
    if len(units) < 2:
        return units
    k = max(2, int(round(1 / fraction)))
    val = units[k // 2 :: k] or units[:1]
    return val if split == "val" else [u for u in units if u not in val]


def select_units(cfg: Config, fmt: str, src: Path, units: list[str], manifest: dict, split: str) -> list[str]:
    """The units of ``split`` (train | val | test) for the format's split convention."""
    d = cfg.data
    rule = get_format(fmt).split
    pretraining = not task_traits(cfg).fine_tuning
    if split == "val" and not pretraining:
        check_validation_split(cfg)  # a fraction of 0 would validate on training data
    if rule.by_area:
        rooms = [(manifest["units"][u]["area"], Path(u)) for u in units]
        chosen = s3dis.split_rooms(rooms, split, d.train_areas, d.val_areas, d.test_area, d.val_fraction)
        return [p.as_posix() for _, p in chosen]
    if d.scenes:
        wanted = {_norm(s) for s in d.scenes}
        return [u for u in units if _norm(u) in wanted]
    train_file = _find_split_file(src, (rule.train_file,))
    if train_file is None:
        if pretraining:  # self-supervised: every scan trains; val/test only monitor
            log.warning("%s: no %s; pre-training on every scan", src, rule.train_file)
            return units if split == "train" else _holdout(units, "val", d.val_fraction)
        if d.val_fraction <= 0:
            raise ConfigError(
                f"{src}: no split file ({rule.train_file}) and data.val_fraction=0: add the official split files "
                "or set data.val_fraction > 0 to hold out scenes for validation and test"
            )
        log.warning("%s: no split file (%s); val = test = a hold-out of the scenes", src, rule.train_file)
        return _holdout(units, "val" if split in ("val", "test") else "train", d.val_fraction)
    if split == "test" or (pretraining and split == "val"):  # pre-training monitors on val scans
        test_file = _find_split_file(src, (rule.test_file,))
        wanted = _read_list(test_file) if test_file else set()
        return [u for u in units if _norm(u) in wanted]
    wanted = _read_list(train_file)
    train = [u for u in units if _norm(u) in wanted]
    if pretraining:
        return train  # official train scenes only (the detection benchmark evaluates on val)
    return _holdout(train, split, d.val_fraction)


# --------------------------------------------------------------------------- entry point


def prepare_settings(cfg: Config, synthetic: bool = False) -> PrepareSettings:
    d = cfg.data
    return PrepareSettings(
        frame_skip=1 if synthetic else d.frame_skip,  # synthetic frames are already key frames
        image_height=d.image_height,
        image_width=d.image_width,
        voxel_size=d.voxel_size,
        corr_depth_tol=d.corr_depth_tol,
        label_version=d.label_version,
        classes=d.classes if task_traits(cfg).config_classes else "s3dis13",
        on_bad=d.on_bad,
    )


def _synthetic_format(cfg: Config) -> str:
    """The layout of the synthetic scenes a task reads: the one whose class list is ``data.classes``, else the last."""
    layouts = [n for n in formats_for_task(cfg.train.task) if FORMATS[n].synthetic_dir]
    return next((n for n in layouts if FORMATS[n].classes == cfg.data.classes), layouts[-1])


def resolve_source(cfg: Config) -> tuple[str, Path, bool]:
    """(format, source path, is synthetic) for the config's dataset and task."""
    task = cfg.train.task
    if cfg.data.dataset == "synthetic":
        root = ensure_synthetic(cfg)
        fmt = _synthetic_format(cfg)
        return fmt, root / FORMATS[fmt].synthetic_dir, True
    fmt = cfg.data.dataset
    if fmt not in formats_for_task(task):
        raise ConfigError(
            f"data.dataset={fmt!r} cannot feed train.task={task!r}; expected one of {formats_for_task(task)}"
        )
    if not cfg.data.root:
        raise ConfigError(f"data.root is empty: set it to the {fmt} data on disk")
    return fmt, Path(cfg.data.root), False


def prepared_dir(cfg: Config, fmt: str, src: Path, settings: PrepareSettings) -> Path:
    base = Path(cfg.data.prepared_dir) if cfg.data.prepared_dir else Path(cfg.train.out_dir) / "prepared"
    return base / f"{fmt}-{settings_hash(fmt, src, settings)}"


def _cache_of(cfg: Config) -> tuple[str, Path, Path, PrepareSettings]:
    """(format, source, cache folder, settings) of the config's data."""
    fmt, src, synthetic = resolve_source(cfg)
    settings = prepare_settings(cfg, synthetic)
    return fmt, src, prepared_dir(cfg, fmt, src, settings), settings


def _prepare(cfg: Config, fmt: str, src: Path, out: Path, settings: PrepareSettings, problem: str) -> dict:
    log.info("preparing %s data from %s into %s (the cache is %s)", fmt, src, out, problem)
    return prepare(fmt, src, out, settings, workers=max(1, cfg.data.loader_workers), progress=True)


def open_cache(cfg: Config, prepare_missing: bool = True) -> tuple[str, Path, Path, dict]:
    """(format, source, cache folder, manifest) of a cache that can be trusted.

    A missing, incomplete, foreign or stale cache is prepared (only the stale units) when ``prepare_missing``,
    else it is a ``StaleCacheError`` saying why.
    """
    fmt, src, out, settings = _cache_of(cfg)
    problem = cache_problem(fmt, src, out, settings)
    if problem is None:
        return fmt, src, out, read_manifest(out)
    if not prepare_missing:
        raise stale_cache_error(fmt, src, out, problem)
    return fmt, src, out, _prepare(cfg, fmt, src, out, settings, problem)


def check_shared_cache(cfg: Config) -> None:
    """The check of a sweep trial, which shares one cache with the other trials (the driver prepared it).

    A cache nobody prepared yet (data settings the driver did not warm, e.g. a searched voxel size) is
    prepared: concurrent trials take turns on the cache's lock and the later ones find the work done. A
    stale, foreign or incomplete one is a ``StaleCacheError``: re-preparing it under running trials would
    give trials of one sweep different data.
    """
    fmt, src, out, settings = _cache_of(cfg)
    problem = cache_problem(fmt, src, out, settings)
    if problem == NOT_PREPARED:
        _prepare(cfg, fmt, src, out, settings, problem)
        return
    if problem is not None:
        with cache_lock(out):  # another trial may be preparing it right now: wait for it, then look again
            problem = cache_problem(fmt, src, out, settings)
    if problem is not None:
        raise stale_cache_error(fmt, src, out, problem)


def make_dataset(cfg: Config, split: str, augment: bool = True, prepare: bool = True) -> Dataset:
    """The dataset of ``split`` (train | val | test) for ``cfg.train.task``.

    Its ``collate`` builds the task's batch dataclass. The training split is augmented (``data.augment``)
    unless ``augment=False`` (evaluating on it). ``prepare=False``: never prepare; a cache that cannot be
    trusted is a ``StaleCacheError``.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split {split!r}: expected train, val or test")
    fmt, src, out, manifest = open_cache(cfg, prepare_missing=prepare)
    units = select_units(cfg, fmt, src, list(manifest["units"]), manifest, split)
    if not units:
        raise ValueError(
            f"{src}: split {split!r} has no scenes/rooms (check data.scenes / areas / split files)"
        )
    files = [out / f for u in units for f in manifest["units"][u]["files"]]
    traits = task_traits(cfg)
    if not traits.fine_tuning:
        return PretrainDataset(files)
    d = cfg.data
    aug = augment_spec(cfg) if split == "train" and d.augment and augment else None
    return PointsDataset(
        files, d.voxel_size, aug, d.num_points if traits.boxes else 0, with_boxes=traits.boxes, use_color=d.use_color
    )


def augment_spec(cfg: Config) -> AugmentSpec:
    """The training augmentation of ``cfg``; detection without headings (ScanNet) gets axis-aligned boxes."""
    d = cfg.data
    return AugmentSpec(
        flip=d.aug_flip, rotate_z=d.aug_rotate_z, scale_min=d.aug_scale_min, scale_max=d.aug_scale_max,
        color_jitter=d.aug_color_jitter, rotate_max=d.aug_rotate_max, flip_y=d.aug_flip_y,
        axis_aligned_boxes=task_traits(cfg).boxes and not cfg.det.oriented_boxes,
    )


def resolve_schedule(cfg: Config, prepare: bool = True) -> Config:
    """``cfg`` with ``train.epochs`` / ``optim.warmup_epochs`` turned into steps on its training split.

    The split's size is read from the prepared cache's manifest (one sample per frame for pre-training,
    per room/scene for fine-tuning); ``prepare=False`` leaves ``cfg`` unresolved when no complete
    cache exists yet (``--dry-run``, ``t4p config show``). Already resolved configs come back unchanged.
    """
    if epochs_resolved(cfg):
        return cfg
    if not prepare and not _cache_ready(cfg):
        return cfg
    n = len(make_dataset(cfg, "train", prepare=prepare))  # type: ignore[arg-type]  # every dataset here is Sized
    out = with_epoch_size(cfg, n)
    log.info("train.epochs=%d over %d training samples at global batch %d: train.max_steps=%d%s",
             cfg.train.epochs, n, cfg.train.batch_size, out.train.max_steps,
             f", optim.warmup_steps={out.optim.warmup_steps}" if cfg.optim.warmup_epochs else "")
    return out


def _cache_ready(cfg: Config) -> bool:
    if cfg.data.dataset == "synthetic" or not cfg.data.root or not Path(cfg.data.root).exists():
        return False  # synthetic scenes are generated on first use; real data must be on disk
    fmt, src, synthetic = resolve_source(cfg)
    settings = prepare_settings(cfg, synthetic)
    problem = cache_problem(fmt, src, prepared_dir(cfg, fmt, src, settings), settings)
    if problem is not None:
        log.info("%s: the prepared cache of data.root is %s; train.epochs stays unresolved", src, problem)
    return problem is None
