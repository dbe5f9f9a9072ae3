"""The tasks a sweep runs (``sweep.task``): recipes, metrics and the paper's numbers (no Ray, no MLflow).

The ablation rows (``t4p.sweep.rows``) are the same for every task: they switch TQM,
pre-training, the auxiliary loss, prompt learning and the text source of the fine-tuning model,
whatever its head. What differs per task is the recipe, the metrics the loop reports, which
metric a search optimises, and which rows the paper reports numbers for:

- ``semseg``: S3DIS Area 5 mIoU / mAcc, every row (Tables 5, 6 and App. C).
- ``insseg``: S3DIS Area 5 instance segmentation, Table 2: full Text4Point (= row T5-5) and the
  SR-UNet baseline (= T5-1, mAP@0.5 only).
- ``det-sunrgbd`` / ``det-scannet``: VoteNet mAP@0.5, Tables 7 / 8 (their last column): VoteNet on
  SR-UNet (= T5-1) and VoteNet + Text4Point (= T5-5), with per-class AP@0.5 in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from t4p import paper
from t4p.config import Config


@dataclass(frozen=True)
class Metric:
    label: str  # column heading
    key: str  # the loop's metric after "<split>_", as MLflow stores it ("@" becomes "_")
    tune_key: str  # the same metric as Tune sees it (unsanitised)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    train_task: str  # train.task of its recipes
    classes: str  # data.classes of its recipes
    recipe: str
    demo_recipe: str
    demo_overrides: tuple[str, ...]
    metrics: tuple[Metric, ...]  # the first one is the search metric and the chart's
    paper: dict[str, dict[str, float]]  # row -> metric label -> the paper's number (percent)
    paper_source: str
    per_class_table: dict | None = field(default=None)  # det: t4p.paper.TABLE7 / 8 for the per-class AP@0.5 section

    @property
    def search_metric(self) -> str:
        return f"val_{self.metrics[0].tune_key}"


def _det_paper(table: dict) -> dict[str, dict[str, float]]:
    rows = table["rows"]
    return {"T5-1": {"mAP@0.5": rows["VoteNet* (SR-UNet)"][-1]}, "T5-5": {"mAP@0.5": rows["VoteNet+Text4Point*"][-1]}}


_INS = paper.TABLE2["Text4Point"]
_DET_METRICS = (Metric("mAP@0.25", "map_0.25", "map@0.25"), Metric("mAP@0.5", "map_0.5", "map@0.5"))
_DET_DEMO = ("data.classes=scannet18", "finetune.oriented_boxes=false")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="semseg", train_task="semseg", classes="s3dis13", recipe="s3dis_semseg", demo_recipe="smoke_semseg",
            demo_overrides=(), metrics=(Metric("mIoU", "miou", "miou"), Metric("mAcc", "macc", "macc")),
            paper=paper.ABLATION,
            paper_source="Tables 5/6 and App. C (C: mIoU only)",
        ),
        TaskSpec(
            name="insseg", train_task="insseg", classes="s3dis13", recipe="s3dis_insseg", demo_recipe="smoke_insseg",
            demo_overrides=(),
            metrics=(Metric("mAP@0.5", "map50", "map50"), Metric("mAP", "map", "map"),
                     Metric("mPrec", "mprec", "mprec"), Metric("mRec", "mrec", "mrec")),
            paper={"T5-1": {"mAP@0.5": paper.TABLE2["SR-UNet"]["map50"]},
                   "T5-5": {"mAP@0.5": _INS["map50"], "mAP": _INS["map"], "mPrec": _INS["mprec"],
                            "mRec": _INS["mrec"]}},
            paper_source="Table 2 (S3DIS Area 5): Text4Point = T5-5, SR-UNet = T5-1",
        ),
        TaskSpec(
            name="det-sunrgbd", train_task="det", classes="sunrgbd10", recipe="votenet_sunrgbd",
            demo_recipe="smoke_det", demo_overrides=(), metrics=(_DET_METRICS[1], _DET_METRICS[0]),
            paper=_det_paper(paper.TABLE7), per_class_table=paper.TABLE7,
            paper_source="Table 7 (SUN RGB-D v1): VoteNet+Text4Point* = T5-5, VoteNet* (SR-UNet) = T5-1",
        ),
        TaskSpec(
            name="det-scannet", train_task="det", classes="scannet18", recipe="votenet_scannet",
            demo_recipe="smoke_det", demo_overrides=_DET_DEMO, metrics=(_DET_METRICS[1], _DET_METRICS[0]),
            paper=_det_paper(paper.TABLE8), per_class_table=paper.TABLE8,
            paper_source="Table 8 (ScanNet v2): VoteNet+Text4Point* = T5-5, VoteNet* (SR-UNet) = T5-1",
        ),
    )
}


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"sweep.task={name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


def check_task(cfg: Config) -> TaskSpec:
    """The fine-tuning config must train what ``sweep.task`` names; errors say which key disagrees."""
    spec = task_spec(cfg.sweep.task)
    if cfg.train.task != spec.train_task:
        raise ValueError(f"sweep.task={spec.name} needs a recipe with train.task={spec.train_task} (e.g. "
                         f"{spec.recipe} or {spec.demo_recipe}); this one has train.task={cfg.train.task}")
    if cfg.data.classes != spec.classes:
        raise ValueError(f"sweep.task={spec.name} needs data.classes={spec.classes}; got {cfg.data.classes}")
    return spec
