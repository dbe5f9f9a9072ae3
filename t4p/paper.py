"""Every number quoted from the paper, by table and row id, in one place (percentages).

Text4Point: Bridging Text and Point Cloud via 2D Images. Readers: the report layer
(``t4p.sweep.benchmarks``, ``t4p.sweep.report``) and tests; ``tests/test_paper_tables.py`` checks the
transcription (each row's printed mean against its per-class values). Recipe hyper-parameters live
in ``t4p.recipes`` and are asserted against ``t4p config show``.
"""

from __future__ import annotations

import math

# Table 1: S3DIS Area 5 semantic segmentation (SR-UNet-family rows; * = SR-UNet backbone).
TABLE1: dict = {
    "classes": ("ceiling", "floor", "wall", "beam", "column", "window", "door", "chair", "table", "bookcase",
                "sofa", "board", "clutter"),
    "rows": {  # mIoU, mAcc, then the IoU of each class in ``classes`` order
        "SR-UNet": (68.2, 75.5, 91.5, 98.6, 84.1, 0.0, 33.0, 56.9, 64.0, 90.1, 81.7, 72.5, 76.5, 77.9, 59.6),
        "PointContrast*": (70.3, 76.9, 93.3, 98.7, 85.6, 0.1, 45.9, 54.4, 67.9, 91.6, 80.1, 74.7, 78.2, 81.5, 62.3),
        "Text4Point*": (72.2, 78.5, 95.6, 98.6, 87.7, 0.0, 36.4, 61.4, 80.0, 91.0, 81.7, 75.8, 85.0, 82.0, 63.8),
    },
}

# Table 2: S3DIS Area 5 instance segmentation.
TABLE2: dict[str, dict[str, float]] = {
    "Text4Point": {"map": 47.3, "map50": 62.7, "mprec": 63.9, "mrec": 68.2},
    "SR-UNet": {"map50": 59.3},
}

# Table 1 in the layout of Tables 7/8 (each class, then the mean): the per-class IoU section of the semseg report.
TABLE1_PER_CLASS = {
    "classes": TABLE1["classes"],
    "mean": "mIoU",
    "rows": {method: (*row[2:], row[0]) for method, row in TABLE1["rows"].items()},
}

# The ablation row (t4p.sweep.rows) each method of Tables 2, 7 and 8 is: the full model and the SR-UNet baseline.
ROW_OF_METHOD = {"Text4Point": "T5-5", "SR-UNet": "T5-1", "VoteNet+Text4Point*": "T5-5", "VoteNet* (SR-UNet)": "T5-1"}
_TABLE2_LABELS = {"map50": "mAP@0.5", "map": "mAP", "mprec": "mPrec", "mrec": "mRec"}  # report column order


def table2_by_row() -> dict[str, dict[str, float]]:
    """Table 2 by ablation row: row id -> report label (mAP@0.5, mAP, mPrec, mRec) -> the paper's number."""
    return {ROW_OF_METHOD[method]: {label: numbers[key] for key, label in _TABLE2_LABELS.items() if key in numbers}
            for method, numbers in TABLE2.items()}


def detection_by_row(table: dict) -> dict[str, dict[str, float]]:
    """Table 7 or 8 by ablation row: row id -> {"mAP@0.5": the table's last column}."""
    return {ROW_OF_METHOD[method]: {"mAP@0.5": values[-1]} for method, values in table["rows"].items()
            if method in ROW_OF_METHOD}


# Tables 5 and 6 and Appendix C: the ablation grid on S3DIS, by row id (t4p.sweep.rows). C reports the
# mIoU drop only (-0.7 from the full model), so it has no mAcc.
ABLATION: dict[str, dict[str, float]] = {
    "T5-1": {"mIoU": 66.7, "mAcc": 74.4},
    "T5-2": {"mIoU": 67.0, "mAcc": 74.9},
    "T5-3": {"mIoU": 69.3, "mAcc": 76.4},
    "T5-4": {"mIoU": 70.1, "mAcc": 76.7},
    "T5-5": {"mIoU": 70.4, "mAcc": 77.3},
    "T6": {"mIoU": 68.6, "mAcc": 74.9},
    "C": {"mIoU": 70.4 - 0.7},
}

# Per-class AP@0.5 (Table 7: SUN RGB-D v1, 10 classes; Table 8: ScanNet v2, 18 classes); the last value is the mAP.
TABLE7 = {
    "classes": ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf", "bathtub"),
    "rows": {
        "VoteNet": (47.3, 19.7, 41.4, 54.1, 58.6, 5.2, 13.6, 35.0, 4.6, 49.9, 32.9),
        "VoteNet* (SR-UNet)": (47.8, 19.6, 48.1, 54.6, 60.0, 6.3, 15.8, 27.3, 5.4, 32.1, 31.7),
        "VoteNet+PPKT*": (52.1, 17.6, 50.3, 52.3, 58.1, 6.2, 13.0, 43.7, 9.4, 36.6, 33.9),
        "VoteNet+PointContrast*": (50.5, 19.4, 51.8, 54.9, 57.4, 7.5, 16.2, 37.0, 5.9, 47.6, 34.8),
        "VoteNet+Text4Point*": (52.7, 20.2, 52.5, 52.2, 64.1, 6.6, 15.4, 43.0, 8.4, 54.7, 37.0),
    },
}
TABLE8 = {
    "classes": ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
                "desk", "curtain", "refrigerator", "showercurtrain", "toilet", "sink", "bathtub", "garbagebin"),
    "rows": {
        "VoteNet": (8.1, 76.1, 67.2, 68.8, 42.4, 15.3, 6.4, 28.0, 1.3, 9.5, 37.5, 11.6, 27.8, 10.0, 86.5, 16.8,
                    78.9, 11.7, 33.5),
        "VoteNet* (SR-UNet)": (9.9, 70.5, 70.0, 60.5, 43.4, 21.8, 10.5, 33.3, 0.8, 15.4, 33.3, 26.6, 39.3, 9.7,
                               74.7, 23.7, 75.8, 18.1, 35.4),
        "VoteNet+PointContrast*": (13.1, 74.7, 75.4, 61.3, 44.8, 19.8, 12.9, 32.0, 0.9, 21.9, 31.9, 27.0, 32.6,
                                   17.5, 87.4, 23.2, 80.8, 26.7, 38.0),
        "VoteNet+PPKT*": (8.0, 70.3, 72.6, 57.0, 40.3, 23.3, 11.4, 45.3, 3.5, 18.8, 38.1, 25.1, 31.3, 35.5, 86.7,
                          18.1, 87.1, 28.1, 38.9),
        "VoteNet+Text4Point*": (8.0, 72.6, 69.5, 61.3, 44.1, 21.7, 14.6, 38.2, 1.9, 13.4, 35.9, 23.7, 31.7, 53.1,
                                90.2, 26.3, 79.2, 29.3, 39.7),
    },
}
DETECTION_TABLES = {"sunrgbd10": TABLE7, "scannet18": TABLE8}

SHORT_NAMES = {"night_stand": "nightstd", "bookshelf": "bkshlf", "cabinet": "cab", "window": "wind",
               "picture": "pic", "counter": "cntr", "refrigerator": "refrig", "showercurtrain": "shower",
               "garbagebin": "garbage"}  # column headers of the per-class tables


def per_class_table(table: dict, ours: dict[str, tuple[dict[str, float], float]]) -> str:
    """Markdown in the layout of a per-class paper table (7 or 8): the paper's rows, then ``ours``.

    ``ours`` maps a row label to (class -> value in percent, mean); missing classes and NaN print ``-``.
    """
    names = table["classes"]
    mean = table.get("mean", "mAP")  # the last column's heading
    lines = ["| Method | " + " | ".join(SHORT_NAMES.get(n, n) for n in names) + f" | {mean} |",
             "|" + "---|" * (len(names) + 2)]
    for method, values in table["rows"].items():
        lines.append(f"| {method} (paper) | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    for label, (per_class, mean) in ours.items():
        values = [per_class.get(n, math.nan) for n in names] + [mean]
        lines.append(f"| {label} | " + " | ".join("-" if math.isnan(v) else f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)
