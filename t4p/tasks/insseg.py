"""Instance segmentation fine-tuning (Table 2): the semantic model plus PointGroup-style offsets.

Loss: cross-entropy on voxels + the auxiliary loss (Eq. 15-16, when ``loss.aux``) exactly as semantic
segmentation, plus ``insseg.offset_weight`` x (L1 + direction) offset loss. Evaluation clusters each
scene's original points (``insseg.cluster_radius``, ``insseg.cluster_min_points``) and scores them with
``t4p.tasks.instance_metrics`` (regions below ``insseg.min_region_size`` points dropped).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t4p.config import TASK_TRAITS, Config
from t4p.models.instance import Text4PointInsSeg, offset_loss, predict_scene_instances
from t4p.models.text4point import needs_text
from t4p.tasks.base import Metric, distributed, flat_scores
from t4p.tasks.instance_metrics import InstanceEvaluator, Proposals
from t4p.tasks.semseg import point_labels, semseg_terms


def insseg_terms(core: nn.Module, batch, out, cfg: Config,
                 gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Semantic terms (cross-entropy, auxiliary loss) + weighted offset terms."""
    terms = semseg_terms(core, batch, out, cfg, gen)
    w = cfg.insseg.offset_weight
    terms.update({k: w * v for k, v in offset_loss(out.offsets, batch).items()})
    return terms


def instance_evaluator(cfg: Config, class_names) -> InstanceEvaluator:
    """The evaluator of ``cfg``: proposals and GT below ``insseg.min_region_size`` points are dropped."""
    return InstanceEvaluator(list(class_names), min_region_size=cfg.insseg.min_region_size)


@torch.no_grad()
def evaluate_insseg(core: nn.Module, loader, cfg: Config, device: torch.device, class_names) -> dict:
    """Cluster every scene of ``loader`` and score AP / mPrec / mRec on its original points (nested dict)."""
    f = cfg.insseg
    ev = instance_evaluator(cfg, class_names)
    was_training = core.training
    core.eval()
    for batch in loader:
        batch = batch.to(device)
        out = core(batch)
        sample = batch.coords[batch.point2voxel, 0]  # (Np,)
        for b in range(len(batch.scene_ids)):
            mine = sample == b
            cl = predict_scene_instances(out, batch, b, f.cluster_radius, f.cluster_min_points)
            ev.add_scene(batch.point_labels[mine].cpu().numpy(), batch.point_instances[mine].cpu().numpy(),
                         Proposals.from_point_ids(cl.ids, cl.labels, cl.scores))
    core.train(was_training)
    if distributed():
        gathered: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, ev.scenes)
        ev.scenes = [s for part in gathered for s in part]
    return ev.compute()


class InsSegTask:
    name = "insseg"
    fine_tuning = TASK_TRAITS["insseg"].fine_tuning
    metrics: tuple[Metric, ...] = (
        Metric("mAP@0.5", "map50"), Metric("mAP", "map"), Metric("mPrec", "mprec"), Metric("mRec", "mrec")
    )

    def needs_clip(self, cfg: Config) -> bool:
        return needs_text(cfg)

    def build_model(self, cfg: Config, bundle, class_names: list[str], restoring: bool = False) -> nn.Module:
        return Text4PointInsSeg(cfg, bundle, class_names)

    def loss_terms(self, core, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return insseg_terms(core, batch, out, cfg, gen)

    def evaluate(self, core, loader, cfg: Config, device: torch.device, class_names: list[str]) -> dict[str, float]:
        return flat_scores(evaluate_insseg(core, loader, cfg, device, class_names))

    def predict(self, core, batch, cfg: Config) -> dict[str, np.ndarray]:
        """Semantic labels per point, and the instance proposals: ``instances`` (N,) proposal id per point
        (-1 = none), ``instance_labels`` / ``instance_scores`` (P,)."""
        out = core(batch)
        cl = predict_scene_instances(out, batch, 0, cfg.insseg.cluster_radius, cfg.insseg.cluster_min_points)
        return {"labels": point_labels(out, batch), "instances": cl.ids, "instance_labels": cl.labels,
                "instance_scores": cl.scores}


TASK = InsSegTask()
