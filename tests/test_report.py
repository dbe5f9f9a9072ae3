"""The ablation report from real MLflow runs: numbers checked against numpy by hand."""

from __future__ import annotations

import csv

import numpy as np

from t4p.sweep.report import NOT_COMPARABLE, write_report
from t4p.tracking import Tracker, default_uri

# row -> per-seed (test_miou, test_macc) fractions, as t4p.train.loop reports them
RESULTS = {"T5-1": [(0.40, 0.50), (0.44, 0.56)], "T5-5": [(0.50, 0.60), (0.53, 0.61)]}


def test_report_matches_runs(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "report-test")
    parent = tracker.open_run("sweep", {"sweep_id": "s", "stage": "sweep"})
    for row, values in RESULTS.items():
        for seed, (miou, macc) in enumerate(values):
            run = tracker.open_run(f"{row}-s{seed}", {"sweep_id": "s", "trial": f"{row}-s{seed}"}, parent)
            tracker.set_tags(run, {"stage": "finetune", "row": row, "seed": seed, "synthetic_data": "true",
                                   "clip_weights_real": "false"})
            tracker.log_metrics(run, {"final/test_miou": miou, "final/test_macc": macc, "final/step": 4}, 4)
            tracker.finish(run)
    unfinished = tracker.open_run("T5-1-s9", {"sweep_id": "s", "trial": "T5-1-s9"}, parent)
    tracker.set_tags(unfinished, {"stage": "finetune", "row": "T5-1", "seed": 9})
    tracker.log_metrics(unfinished, {"final/test_miou": 0.99}, 1)  # RUNNING: must not count

    md = write_report(tracker, parent, tmp_path / "rep")
    text = md.read_text()
    assert NOT_COMPARABLE in text.splitlines()[0]
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    for row, values in RESULTS.items():
        miou = np.array([v[0] for v in values]) * 100
        assert float(rows[row]["miou_mean"]) == np.float64(round(miou.mean(), 4))
        assert abs(float(rows[row]["miou_std"]) - np.std(miou, ddof=1)) < 1e-4
        assert rows[row]["seeds"] == "0,1"
    assert rows["T5-1"]["mIoU (ours)"] == "42.0 ± 2.8"  # (40 + 44) / 2, sqrt(8)
    assert rows["T5-1"]["mIoU (paper)"] == "66.7" and rows["T5-5"]["mIoU (paper)"] == "70.4"
    assert rows["T5-5"]["ΔmIoU vs prev (ours)"] == "+9.5"  # 51.5 - 42.0
    assert rows["T5-5"]["ΔmIoU vs prev (paper)"] == "+3.7"
    assert (tmp_path / "rep" / "report.png").stat().st_size > 1000
    logged = {a.path for a in tracker.client.list_artifacts(parent, "report")}
    assert logged == {"report/report.md", "report/report.csv", "report/report.png"}


def _sweep_with(tracker, per_run: dict[str, list[dict[str, float]]]) -> str:
    """A parent run with one FINISHED child per (row, seed) logging the given final metrics."""
    parent = tracker.open_run("sweep", {"sweep_id": "s", "stage": "sweep"})
    for row, seeds in per_run.items():
        for seed, metrics in enumerate(seeds):
            run = tracker.open_run(f"{row}-s{seed}", {"sweep_id": "s", "trial": f"{row}-s{seed}"}, parent)
            tracker.set_tags(run, {"stage": "finetune", "row": row, "seed": seed})
            tracker.log_metrics(run, metrics, 4)
            tracker.finish(run)
    return parent


def test_insseg_report_has_table2_columns(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "insseg-report")
    ins = lambda ap50, ap, prec, rec: {"final/test_map50": ap50, "final/test_map": ap, "final/test_mprec": prec,
                                       "final/test_mrec": rec, "final/test_map25": 0.9}
    parent = _sweep_with(tracker, {"T5-1": [ins(0.30, 0.10, 0.5, 0.6), ins(0.34, 0.12, 0.7, 0.6)],
                                   "T5-5": [ins(0.41, 0.20, 0.6, 0.7)]})
    md = write_report(tracker, parent, tmp_path / "rep", "insseg")
    assert "instance segmentation (paper: Table 2)" in md.read_text().splitlines()[0]
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    assert rows["T5-1"]["mAP@0.5 (ours)"] == "32.0 ± 2.8"  # (30 + 34) / 2, sqrt(8)
    assert rows["T5-1"]["mPrec (ours)"] == "60.0 ± 14.1"  # (50 + 70) / 2, sqrt(200)
    assert rows["T5-5"]["mAP (ours)"] == "20.0 ± 0.0"  # one seed: std 0
    # Table 2: Text4Point 47.3 / 62.7 / 63.9 / 68.2, SR-UNet 59.3 mAP@0.5 only
    assert rows["T5-5"]["mAP (paper)"] == "47.3" and rows["T5-5"]["mAP@0.5 (paper)"] == "62.7"
    assert rows["T5-5"]["mPrec (paper)"] == "63.9" and rows["T5-5"]["mRec (paper)"] == "68.2"
    assert rows["T5-1"]["mAP@0.5 (paper)"] == "59.3" and rows["T5-1"]["mAP (paper)"] == "n/a"
    assert rows["T5-5"]["ΔmAP@0.5 vs prev (paper)"] == "+3.4"  # 62.7 - 59.3
    assert rows["T5-5"]["ΔmAP@0.5 vs prev (ours)"] == "+9.0"  # 41 - 32


def test_det_report_has_per_class_table(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "det-report")
    # the loop's flat names, stored by MLflow as they are
    det = lambda m25, m50, bed: {"final/test_map25": m25, "final/test_map50": m50, "final/test_ap50/bed": bed}
    parent = _sweep_with(tracker, {"T5-1": [det(0.5, 0.2, 0.1), det(0.7, 0.4, 0.3)], "T5-5": [det(0.6, 0.3, 0.5)]})
    md = write_report(tracker, parent, tmp_path / "rep", "det-sunrgbd")
    text = md.read_text()
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    assert rows["T5-1"]["mAP@0.5 (ours)"] == "30.0 ± 14.1" and rows["T5-1"]["mAP@0.25 (ours)"] == "60.0 ± 14.1"
    assert rows["T5-1"]["mAP@0.5 (paper)"] == "31.7" and rows["T5-5"]["mAP@0.5 (paper)"] == "37.0"  # Table 7
    assert rows["T5-1"]["mAP@0.25 (paper)"] == "n/a"
    per_class = [line for line in text.splitlines() if line.startswith("| T5-1 (ours)")]
    # bed mean (10 + 30) / 2 = 20.0; the 9 other classes were not reported: "-"; mAP@0.5 mean 30.0
    assert per_class == ["| T5-1 (ours) | 20.0 | " + "- | " * 9 + "30.0 |"]
    assert "| VoteNet+Text4Point* (paper) | 52.7 | 20.2 |" in text


def test_det_runs_logged_under_the_old_metric_names_still_report(tmp_path):
    """Runs from before the metric rename stored "test_map_0.5" (MLflow's form of "test_map@0.5")."""
    tracker = Tracker(default_uri(tmp_path), "det-old-names")
    old = lambda m25, m50, bed: {"final/test_map_0.25": m25, "final/test_map_0.5": m50, "final/test_ap_0.5/bed": bed}
    parent = _sweep_with(tracker, {"T5-1": [old(0.5, 0.2, 0.1), old(0.7, 0.4, 0.3)]})
    write_report(tracker, parent, tmp_path / "rep", "det-sunrgbd")
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    assert rows["T5-1"]["mAP@0.5 (ours)"] == "30.0 ± 14.1" and rows["T5-1"]["mAP@0.25 (ours)"] == "60.0 ± 14.1"


def test_semseg_report_has_table1_per_class_iou(tmp_path):
    """The semseg report compares per-class IoU with Table 1 (the paper's SR-UNet and Text4Point* rows)."""
    tracker = Tracker(default_uri(tmp_path), "semseg-per-class")
    seg = lambda miou, chair: {"final/test_miou": miou, "final/test_macc": 0.5, "final/test_iou/chair": chair}
    parent = _sweep_with(tracker, {"T5-1": [seg(0.40, 0.20), seg(0.44, 0.30)]})
    text = write_report(tracker, parent, tmp_path / "rep", "semseg").read_text()
    lines = text.splitlines()
    assert "## Per-class IoU (layout of the paper's table; ours: mean over seeds)" in lines
    header = next(line for line in lines if line.startswith("| Method | ceiling |"))
    assert header.endswith("| clutter | mIoU |")
    # Table 1, Text4Point*: ceiling 95.6 ... clutter 63.8, mIoU 72.2 last
    assert "| Text4Point* (paper) | 95.6 | 98.6 | 87.7 | 0.0 | 36.4 | 61.4 | 80.0 | 91.0 |" in text
    assert next(line for line in lines if line.startswith("| Text4Point* (paper)")).endswith("| 63.8 | 72.2 |")
    # chair is the 8th of the 13 S3DIS classes: (20 + 30) / 2 = 25.0; mIoU mean 42.0
    assert "| T5-1 (ours) | " + "- | " * 7 + "25.0 | " + "- | " * 5 + "42.0 |" in lines
