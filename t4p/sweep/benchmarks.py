"""The benchmarks a sweep runs (``sweep.benchmark``): a task on one dataset, its recipes and the paper's numbers.

Vocabulary: a *task* (``train.task``, ``t4p.tasks``) is what is trained and how it is scored
(semseg, insseg, det); a *benchmark* is a task on one dataset as the paper reports it. Two benchmarks
share the det task (SUN RGB-D, ScanNet). The ablation rows (``t4p.sweep.rows``) are the same for every
benchmark: they switch TQM, pre-training, the auxiliary loss, prompt learning and the text source of
the fine-tuning model, whatever its head. What differs per benchmark is the recipe, the headline
metrics (the task's, ``t4p.tasks``), and which rows the paper reports numbers for:

- ``semseg``: S3DIS Area 5 mIoU / mAcc, every row (Tables 5, 6 and App. C).
- ``insseg``: S3DIS Area 5 instance segmentation, Table 2: full Text4Point (= row T5-5) and the
  SR-UNet baseline (= T5-1, mAP@0.5 only).
- ``det-sunrgbd`` / ``det-scannet``: VoteNet mAP@0.5, Tables 7 / 8 (their last column): VoteNet on
  SR-UNet (= T5-1) and VoteNet + Text4Point (= T5-5), with per-class AP@0.5 in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from t4p import paper
from t4p.config import Config, ConfigError
from t4p.tasks import Metric, get_task


@dataclass(frozen=True)
class Benchmark:
    name: str
    train_task: str  # train.task of its recipes (t4p.tasks)
    classes: str  # data.classes of its recipes
    recipe: str
    demo_recipe: str
    demo_overrides: tuple[str, ...]
    paper: dict[str, dict[str, float]]  # row -> metric label -> the paper's number (percent)
    paper_source: str
    # the paper's per-class table (layout of Tables 7/8) for the report's per-class section, and the task's
    # per-class metric it compares with ("<split>_<key>/<class>": iou for semseg, ap50 for det)
    per_class_table: dict | None = field(default=None)
    per_class: Metric | None = field(default=None)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The task's headline metrics; the first one is the search metric and the chart's."""
        return get_task(self.train_task).metrics

    @property
    def search_metric(self) -> str:
        return f"val_{self.metrics[0].key}"


# `make demo` (issue 19): 60 fine-tuning steps at lr 0.5 bring the from-scratch row to ~35 % mIoU on the held-out
# synthetic rooms (seeds 0/1 out of Ray: 36.5 / 33.1; 40 steps: 34.1 / 22.8; lr 0.3, 60 steps: 32.9 / 28.6;
# the 8 steps of the other demos gave 5-14 %); the demo job then takes ~12 min on 2 idle cores.
_SEMSEG_DEMO = ("train.max_steps=60", "optim.lr=0.5", "train.eval_every=60", "train.checkpoint_every=60")
_IOU = Metric("IoU", "iou")
_AP50 = Metric("AP@0.5", "ap50")
_DET_DEMO = ("data.classes=scannet18", "det.oriented_boxes=false")

BENCHMARKS: dict[str, Benchmark] = {
    spec.name: spec
    for spec in (
        Benchmark(
            name="semseg", train_task="semseg", classes="s3dis13", recipe="s3dis_semseg", demo_recipe="smoke_semseg",
            demo_overrides=_SEMSEG_DEMO, paper=paper.ABLATION, paper_source="Tables 5/6 and App. C (C: mIoU only)",
            per_class_table=paper.TABLE1_PER_CLASS, per_class=_IOU,
        ),
        Benchmark(
            name="insseg", train_task="insseg", classes="s3dis13", recipe="s3dis_insseg", demo_recipe="smoke_insseg",
            demo_overrides=(),
            paper=paper.table2_by_row(),
            paper_source="Table 2 (S3DIS Area 5): Text4Point = T5-5, SR-UNet = T5-1",
        ),
        Benchmark(
            name="det-sunrgbd", train_task="det", classes="sunrgbd10", recipe="votenet_sunrgbd",
            demo_recipe="smoke_det", demo_overrides=(), paper=paper.detection_by_row(paper.TABLE7),
            per_class_table=paper.TABLE7, per_class=_AP50,
            paper_source="Table 7 (SUN RGB-D v1): VoteNet+Text4Point* = T5-5, VoteNet* (SR-UNet) = T5-1",
        ),
        Benchmark(
            name="det-scannet", train_task="det", classes="scannet18", recipe="votenet_scannet",
            demo_recipe="smoke_det", demo_overrides=_DET_DEMO, paper=paper.detection_by_row(paper.TABLE8),
            per_class_table=paper.TABLE8, per_class=_AP50,
            paper_source="Table 8 (ScanNet v2): VoteNet+Text4Point* = T5-5, VoteNet* (SR-UNet) = T5-1",
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(f"sweep.benchmark={name!r}: expected one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def check_benchmark(cfg: Config) -> Benchmark:
    """The fine-tuning config must train what ``sweep.benchmark`` names; errors say which key disagrees."""
    spec = benchmark(cfg.sweep.benchmark)
    if cfg.train.task != spec.train_task:
        raise ConfigError(f"sweep.benchmark={spec.name} needs a recipe with train.task={spec.train_task} (e.g. "
                          f"{spec.recipe} or {spec.demo_recipe}); this one has train.task={cfg.train.task}")
    if cfg.data.classes != spec.classes:
        raise ConfigError(f"sweep.benchmark={spec.name} needs data.classes={spec.classes}; got {cfg.data.classes}")
    return spec
