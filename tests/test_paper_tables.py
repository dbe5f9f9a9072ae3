"""The paper's tables as transcribed in t4p.paper: each row consistent with its printed summary."""

from __future__ import annotations

import numpy as np
import pytest

from t4p import paper
from t4p.data.classes import class_list
from t4p.sweep.rows import ABLATION_ROWS


@pytest.mark.parametrize("table", [paper.TABLE7, paper.TABLE8])
def test_detection_tables_rows_average_to_their_map(table):
    """Each row's mean over the classes equals its printed mAP (to the paper's rounding)."""
    for method, row in table["rows"].items():
        assert len(row) == len(table["classes"]) + 1, method
        assert np.mean(row[:-1]) == pytest.approx(row[-1], abs=0.06), method


def test_table1_rows_average_to_their_miou_and_use_the_s3dis_classes():
    assert set(paper.TABLE1["classes"]) == set(class_list("s3dis13").names)
    for method, row in paper.TABLE1["rows"].items():
        assert len(row) == 2 + 13, method
        assert np.mean(row[2:]) == pytest.approx(row[0], abs=0.06), method
    assert paper.TABLE1["rows"]["Text4Point*"][:2] == (72.2, 78.5)


def test_tables_2_5_6_and_appendix_c():
    assert paper.TABLE2["Text4Point"] == {"map": 47.3, "map50": 62.7, "mprec": 63.9, "mrec": 68.2}
    assert paper.TABLE2["SR-UNet"]["map50"] == 59.3
    # the paper's numbers, by row id; a row of our own has none (the report shows n/a)
    assert set(paper.ABLATION) == {"T5-1", "T5-2", "T5-3", "T5-4", "T5-5", "T6", "C"} <= set(ABLATION_ROWS)
    assert paper.ABLATION["T5-1"] == {"mIoU": 66.7, "mAcc": 74.4} and paper.ABLATION["T5-5"] == {"mIoU": 70.4,
                                                                                                  "mAcc": 77.3}
    assert paper.ABLATION["C"]["mIoU"] == pytest.approx(69.7) and "mAcc" not in paper.ABLATION["C"]


def test_per_class_table_layout():
    ours = {"t4p (this run)": ({n: 50.0 for n in paper.TABLE7["classes"]}, 50.0)}
    lines = paper.per_class_table(paper.TABLE7, ours).splitlines()
    assert lines[0].startswith("| Method | bed | table |") and lines[0].endswith("| mAP |")
    assert "| VoteNet+Text4Point* (paper) | 52.7 |" in lines[-2]
    assert lines[-1].startswith("| t4p (this run) | 50.0") and lines[-1].endswith("| 50.0 | 50.0 |")
    missing = paper.per_class_table(paper.TABLE7, {"x": ({"bed": 1.0}, float("nan"))}).splitlines()[-1]
    assert missing == "| x | 1.0 | " + " | ".join("-" * 1 for _ in range(10)) + " |"
