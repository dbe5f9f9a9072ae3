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
