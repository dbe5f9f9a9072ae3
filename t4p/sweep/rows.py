"""The paper's ablation grid (Tables 5, 6 and Appendix C) as dotted overrides, in one place.

Each row says how its fine-tuning differs from the fine-tuning recipe (``s3dis_semseg`` or a
smoke recipe) and, when it starts from a pre-trained model, how that pre-training differs from
the pre-training recipe (``pretrain_scannet``). Rows whose ``pretrain`` overrides are equal share
one pre-training checkpoint: T5-3, T5-4 and T5-5 share one; T6 and C each have their own.

The sweep layer (plan, report) and the tests import ``ABLATION_ROWS``; nothing else defines these
rows. The paper's numbers for each row are in ``t4p.paper.ABLATION`` (by row id).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowSpec:
    """One row of the ablation grid."""

    name: str
    description: str
    finetune: tuple[str, ...]  # dotted overrides applied to the fine-tuning recipe
    pretrain: tuple[str, ...] | None  # overrides of the pre-training recipe; None = from scratch

    @property
    def needs_pretrain(self) -> bool:
        return self.pretrain is not None


def _finetune(tqm: bool, text: str, prompt: bool, aux: bool) -> tuple[str, ...]:
    """The four switches of Tables 5/6 as dotted fine-tuning overrides."""
    on = {True: "true", False: "false"}
    return (
        f"model.tqm={on[tqm]}",
        f"model.text_source={text}",
        f"model.prompt_learning={on[prompt]}",
        f"loss.aux={on[aux]}",
    )


def _pretrain(text: str, depth: bool) -> tuple[str, ...]:
    """A pre-training variant: TQM always on; text source and depth loss vary (Table 6, App. C)."""
    on = {True: "true", False: "false"}
    return (
        "model.tqm=true",
        f"model.text_source={text}",
        "model.prompt_learning=false",
        f"loss.depth={on[depth]}",
    )


# The pre-training every "yes" row of Table 5 shares (TQM + CLIP text + depth loss).
_PRETRAIN_CLIP = _pretrain("clip", depth=True)

ABLATION_ROWS: dict[str, RowSpec] = {
    row.name: row
    for row in (
        RowSpec(
            name="T5-1",
            description="SR-UNet34 from scratch (no TQM, no text)",
            finetune=_finetune(False, "clip", False, False),
            pretrain=None,
        ),
        RowSpec(
            name="T5-2",
            description="+ TQM with fixed CLIP text, no pre-training",
            finetune=_finetune(True, "clip", False, False),
            pretrain=None,
        ),
        RowSpec(
            name="T5-3",
            description="+ Text4Point pre-training",
            finetune=_finetune(True, "clip", False, False),
            pretrain=_PRETRAIN_CLIP,
        ),
        RowSpec(
            name="T5-4",
            description="+ auxiliary loss (Eq. 15-16)",
            finetune=_finetune(True, "clip", False, True),
            pretrain=_PRETRAIN_CLIP,
        ),
        RowSpec(
            name="T5-5",
            description="+ prompt learning (full Text4Point)",
            finetune=_finetune(True, "clip", True, True),
            pretrain=_PRETRAIN_CLIP,
        ),
        RowSpec(
            name="T6",
            description="random learnable text embeddings in pre-training and fine-tuning",
            finetune=_finetune(True, "random", False, True),
            pretrain=_pretrain("random", depth=True),
        ),
        RowSpec(
            name="C",
            description="full Text4Point pre-trained without the depth loss (App. C)",
            finetune=_finetune(True, "clip", True, True),
            pretrain=_pretrain("clip", depth=False),
        ),
    )
}
