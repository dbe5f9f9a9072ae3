"""The ablation report from real MLflow runs: numbers checked against numpy by hand."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from t4p.sweep.report import NOT_COMPARABLE, seeds_plan, write_report
from t4p.tracking import Tracker, default_uri

REPO = Path(__file__).resolve().parents[1]

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
    assert logged == {"report/report.md", "report/report.csv", "report/report_pairs.csv", "report/report.png"}


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


# --------------------------------------------------------------------------- statistics (issue 19)

# row -> seed -> test_miou (fraction). T5-3 lacks seed 2, T5-4 shares no seed with any other row.
MIOU = {
    "T5-1": {0: 0.400, 1: 0.420, 2: 0.410, 3: 0.430},
    "T5-2": {0: 0.405, 1: 0.434, 2: 0.408, 3: 0.440},
    "T5-3": {0: 0.450, 1: 0.472, 3: 0.479},
    "T5-4": {5: 0.500, 6: 0.510},
}
PAPER_MIOU = {"T5-1": 66.7, "T5-2": 67.0, "T5-3": 69.3, "T5-4": 70.1}  # Tables 5/6


def _sweep_by_seed(tracker, per_run: dict[str, dict[int, dict[str, float]]], sweep_id: str = "s") -> str:
    """A parent run with one FINISHED child per (row, seed) logging the given final metrics."""
    parent = tracker.open_run("sweep", {"sweep_id": sweep_id, "stage": "sweep", "sweep_kind": "ablation"})
    tracker.set_tags(parent, {"sweep_benchmark": "semseg"})
    for row, seeds in per_run.items():
        for seed, metrics in seeds.items():
            run = tracker.open_run(f"{row}-s{seed}", {"sweep_id": sweep_id, "trial": f"{row}-s{seed}"}, parent)
            tracker.set_tags(run, {"stage": "finetune", "row": row, "seed": seed})
            tracker.log_metrics(run, metrics, 4)
            tracker.finish(run)
    return parent


def _seg_sweep(tracker, miou: dict[str, dict[int, float]] = MIOU, sweep_id: str = "s") -> str:
    return _sweep_by_seed(tracker, {row: {s: {"final/test_miou": v, "final/test_macc": 0.5} for s, v in seeds.items()}
                                    for row, seeds in miou.items()}, sweep_id)


def _diffs(row: str, other: str) -> np.ndarray:
    common = sorted(set(MIOU[row]) & set(MIOU[other]))
    return np.array([MIOU[row][s] * 100 - MIOU[other][s] * 100 for s in common])


def _holm_reference(ps: list[float]) -> list[float]:
    """Holm's adjusted p-values written out: sorted ascending, (m - j + 1) * p_(j), running maximum, capped at 1."""
    order = np.argsort(ps)
    adjusted = np.empty(len(ps))
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - j) * ps[i]))
        adjusted[i] = running
    return list(adjusted)


def _seeds_reference(delta: float, sd: float) -> int | None:
    """Brute force: the first n in 3..100 where the noncentral t gives a two-sided paired t-test power >= 0.8."""
    for n in range(3, 101):
        crit, nc = sps.t.ppf(0.975, n - 1), delta / (sd / np.sqrt(n))
        lower = sps.nct.cdf(-crit, n - 1, nc)  # NaN from scipy far out in this tail (nc >~ 8), where it is ~0
        if sps.nct.sf(crit, n - 1, nc) + (0.0 if np.isnan(lower) else lower) >= 0.8:
            return n
    return None


def test_report_rows_have_confidence_intervals(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "report-ci")
    md = write_report(tracker, _seg_sweep(tracker), tmp_path / "rep")
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    miou = np.array(list(MIOU["T5-1"].values())) * 100
    lo, hi = sps.t.interval(0.95, len(miou) - 1, loc=miou.mean(), scale=sps.sem(miou))
    assert float(rows["T5-1"]["miou_ci_lo"]) == pytest.approx(lo, abs=1e-4)
    assert float(rows["T5-1"]["miou_ci_hi"]) == pytest.approx(hi, abs=1e-4)
    assert rows["T5-1"]["miou_n"] == "4" and rows["T5-3"]["miou_n"] == "3"
    assert rows["T5-1"]["mIoU 95 % CI"] == f"[{lo:.1f}, {hi:.1f}]"
    assert rows["T5-1"]["mIoU (ours)"] == f"{miou.mean():.1f} ± {miou.std(ddof=1):.1f}"  # the old column, unchanged
    line = next(x for x in md.read_text().splitlines() if x.startswith("| T5-1 |"))
    assert f"| {miou.mean():.1f} ± {miou.std(ddof=1):.1f} [{lo:.1f}, {hi:.1f}] |" in line


def test_report_paired_differences_match_scipy_and_holm(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "report-pairs")
    md = write_report(tracker, _seg_sweep(tracker), tmp_path / "rep")
    lines = csv.DictReader((tmp_path / "rep" / "report_pairs.csv").open())
    pairs = {(r["metric"], r["row"], r["vs"]): r for r in lines}
    tested = [("T5-2", "T5-1"), ("T5-3", "T5-2"), ("T5-3", "T5-1")]  # T5-4 shares no seed: not in the family
    ps = [sps.ttest_rel(*[[MIOU[r][s] * 100 for s in sorted(set(MIOU[a]) & set(MIOU[b]))] for r in (a, b)]).pvalue
          for a, b in tested]
    for (a, b), p, p_holm in zip(tested, ps, _holm_reference(ps)):
        got, d = pairs[("mIoU", a, b)], _diffs(a, b)
        assert int(got["n"]) == len(d) and float(got["delta"]) == pytest.approx(d.mean())
        assert float(got["sd"]) == pytest.approx(d.std(ddof=1))
        assert float(got["p"]) == pytest.approx(p) and float(got["p_holm"]) == pytest.approx(p_holm)
        assert got["resolved"] == ("yes" if p_holm <= 0.05 else "no")
        paper = PAPER_MIOU[a] - PAPER_MIOU[b]
        assert float(got["paper_delta"]) == pytest.approx(paper)
        expected = _seeds_reference(paper, d.std(ddof=1))
        assert got["seeds_needed"] == (str(expected) if expected else "> 100")
    assert [pairs[("mIoU", a, b)]["resolved"] for a, b in tested] == ["no", "yes", "yes"]  # the data are built so
    assert pairs[("mIoU", "T5-2", "T5-1")]["relation"] == "previous = baseline"
    assert pairs[("mIoU", "T5-3", "T5-1")]["relation"] == "baseline"
    for b in ("T5-3", "T5-1"):
        untested = pairs[("mIoU", "T5-4", b)]
        assert untested["n"] == "0" and untested["resolved"] == "n too small" and untested["p"] == "nan"
        assert untested["seeds_needed"] == "n/a"  # no spread observed
    assert pairs[("mAcc", "T5-2", "T5-1")]["p"] == "1.0"  # every seed 50.0: no difference
    text = md.read_text()
    assert "## Paired differences" in text
    line = next(x for x in text.splitlines() if x.startswith("| T5-3 | T5-1 (baseline) |"))
    d = _diffs("T5-3", "T5-1")
    assert line.startswith(f"| T5-3 | T5-1 (baseline) | 3 | {d.mean():+.2f} | {d.std(ddof=1):.2f} |")
    assert "| yes | +2.6 |" in line
    assert "Holm" in text and "n too small" in text and "noncentral t" in text


def test_parent_run_logs_row_and_pair_metrics(tmp_path):
    tracker = Tracker(default_uri(tmp_path), "report-parent-metrics")
    parent = _seg_sweep(tracker)
    write_report(tracker, parent, tmp_path / "rep")
    logged = tracker.client.get_run(parent).data.metrics
    assert not any("@" in k for k in logged)
    miou = np.array(list(MIOU["T5-1"].values()))
    assert logged["row/T5-1/test_miou_mean"] == pytest.approx(miou.mean())  # fractions, as the child runs log
    assert logged["row/T5-1/test_miou_std"] == pytest.approx(miou.std(ddof=1))
    assert logged["row/T5-1/test_miou_n"] == 4 and logged["row/T5-3/test_miou_n"] == 3
    assert logged["row/T5-2/test_macc_mean"] == pytest.approx(0.5)
    d = _diffs("T5-3", "T5-1")
    assert logged["pair/T5-3_vs_T5-1/test_miou_delta"] == pytest.approx(d.mean() / 100)
    assert logged["pair/T5-3_vs_T5-1/test_miou_n"] == 3
    assert logged["pair/T5-3_vs_T5-1/test_miou_resolved"] == 1.0
    assert logged["pair/T5-2_vs_T5-1/test_miou_resolved"] == 0.0
    ps = [float(r["p_holm"]) for r in csv.DictReader((tmp_path / "rep" / "report_pairs.csv").open())
          if r["metric"] == "mIoU" and r["row"] == "T5-3" and r["vs"] == "T5-1"]
    assert logged["pair/T5-3_vs_T5-1/test_miou_p_holm"] == pytest.approx(ps[0])
    assert logged["pair/T5-4_vs_T5-1/test_miou_resolved"] == 0.0  # untested: not resolved
    assert "pair/T5-4_vs_T5-1/test_miou_p_holm" not in logged


def test_baseline_is_the_first_row_of_the_sweeps_grid(tmp_path):
    """The parent run's ``rows`` tag (the grid's order as run) orders the report: its first row is the baseline."""
    tracker = Tracker(default_uri(tmp_path), "report-order")
    parent = _seg_sweep(tracker)
    tracker.set_tags(parent, {"rows": "T5-3,T5-1,T5-2,T5-4"})
    md = write_report(tracker, parent, tmp_path / "rep")
    rows = [r["row"] for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())]
    assert rows == ["T5-3", "T5-1", "T5-2", "T5-4"]
    pairs = [(r["row"], r["vs"], r["relation"]) for r in csv.DictReader((tmp_path / "rep" / "report_pairs.csv").open())
             if r["metric"] == "mIoU"]
    assert pairs[:3] == [("T5-1", "T5-3", "previous = baseline"), ("T5-2", "T5-1", "previous"),
                         ("T5-2", "T5-3", "baseline")]
    assert "| T5-1 | T5-3 (previous = baseline) | 3 |" in md.read_text()


def test_seeds_plan_from_the_newest_finished_pilot(tmp_path):
    """``ablation.py --dry-run --seeds-from``: the seeds each row pair needs, from the newest FINISHED pilot sweep."""
    tracker = Tracker(default_uri(tmp_path), "pilot")
    older = _seg_sweep(tracker, {"T5-1": {0: 0.1, 1: 0.5, 2: 0.3}, "T5-2": {0: 0.6, 1: 0.1, 2: 0.2}}, "old")
    tracker.finish(older)
    tracker.finish(_seg_sweep(tracker, MIOU, "pilot"))
    _seg_sweep(tracker, {"T5-1": {0: 0.9}}, "running")  # newer, still RUNNING: not a finished pilot
    text = seeds_plan(Tracker.existing(tracker.uri, "pilot"))
    need = {(a, b): _seeds_reference(PAPER_MIOU[a] - PAPER_MIOU[b], _diffs(a, b).std(ddof=1))
            for a, b in [("T5-2", "T5-1"), ("T5-3", "T5-2"), ("T5-3", "T5-1")]}
    most = max(need.values())
    assert most == need[("T5-2", "T5-1")] and most > 3  # the small paper delta (+0.3) is the hard one
    assert f"mIoU: to resolve the paper's deltas at the observed spread you need {most} seeds" in text
    line = next(x for x in text.splitlines() if "mIoU T5-2 vs T5-1" in x)
    assert "paper Δ +0.3" in line and f"sd of Δ {_diffs('T5-2', 'T5-1').std(ddof=1):.2f}" in line
    assert line.endswith(f"-> {most} seeds")
    assert "2 pair(s) cannot be planned" in text  # T5-4 shares no seed with T5-3 or T5-1
    assert "mAcc: to resolve the paper's deltas at the observed spread you need 3 seeds" in text  # sd of Δ 0
    assert f"--seeds {','.join(map(str, range(most)))}" in text


def _ablation_main():
    spec = importlib.util.spec_from_file_location("sweeps_ablation", REPO / "sweeps" / "ablation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_seeds_from_an_unknown_experiment_is_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch):
    tracker = Tracker(default_uri(tmp_path), "pilot")
    main = _ablation_main()
    argv = ["--recipe", "smoke_semseg", "--tracking-uri", tracker.uri, "--seeds-from", "nope"]
    assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "ablation.py: error: no experiment 'nope'" in err and "pilot" in err
    assert tracker.client.get_experiment_by_name("nope") is None
    assert main(argv) == 2  # planning only
    assert "--seeds-from plans seeds for a --dry-run" in capsys.readouterr().err
    assert main(["--recipe", "smoke_semseg", "--tracking-uri", f"sqlite:///{tmp_path}/none/mlflow.db",
                 "--seeds-from", "pilot", "--dry-run"]) == 2
    assert "no tracking store" in capsys.readouterr().err and not (tmp_path / "none").exists()
    tracker.finish(_seg_sweep(tracker, MIOU, "pilot"))
    monkeypatch.chdir(tmp_path / "mlruns")  # a dry run writes nothing; were it to, not into the repository
    assert main([*argv[:-1], "pilot", "--rows", "T5-1,T5-2", "--seeds", "0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning" in out.lower() and "you need" in out and "pilot sweep" in out


def test_chart_shows_each_rows_per_seed_delta_to_the_baseline(tmp_path):
    """The chart's data: per seed, row minus baseline (T5-1) over common seeds, in points; seed 2 of T5-5 has no
    baseline run, so it is left out."""
    from t4p.sweep.benchmarks import benchmark
    from t4p.sweep.report import baseline_deltas, collect

    tracker = Tracker(default_uri(tmp_path), "chart")
    seg = lambda miou: {"final/test_miou": miou, "final/test_macc": 0.5}
    parent = _sweep_with(tracker, {"T5-1": [seg(0.40), seg(0.44)], "T5-5": [seg(0.50), seg(0.47), seg(0.90)]})
    results, _ = collect(tracker, parent, benchmark("semseg"))
    deltas = dict(baseline_deltas(results, "mIoU"))
    assert deltas["T5-1"] == [0.0, 0.0]
    assert np.allclose(deltas["T5-5"], [50 - 40, 47 - 44])
    write_report(tracker, parent, tmp_path / "rep", "semseg")
    assert (tmp_path / "rep" / "report.png").stat().st_size > 1000


def test_user_rows_are_compared_with_the_paper_row_they_name_and_show_their_own_switches(tmp_path):
    """A grid row's `paper:` reference (the run's paper_row tag) picks the paper's numbers, not the row's name;
    the switch columns come from the run's own config (MLflow params)."""
    tracker = Tracker(default_uri(tmp_path), "user-grid")
    parent = tracker.open_run("sweep", {"sweep_id": "s", "stage": "sweep"})
    rows = {"mine": ("T5-4", {"model.tqm": "True", "loss.aux": "False", "model.prompt_learning": "False",
                              "model.text_source": "random", "finetune.init": "/stages/k"}),
            "T5-1": ("", {"model.tqm": "False", "loss.aux": "True", "model.prompt_learning": "False",
                          "model.text_source": "clip", "finetune.init": ""})}
    for row, (paper_row, params) in rows.items():
        run = tracker.open_run(f"{row}-s0", {"sweep_id": "s", "trial": f"{row}-s0"}, parent)
        tracker.set_tags(run, {"stage": "finetune", "row": row, "seed": 0, "paper_row": paper_row})
        tracker.log_params(run, params)
        tracker.log_metrics(run, {"final/test_miou": 0.5, "final/test_macc": 0.6}, 4)
        tracker.finish(run)
    write_report(tracker, parent, tmp_path / "rep", "semseg")
    out = {r["row"]: r for r in csv.DictReader((tmp_path / "rep" / "report.csv").open())}
    assert out["mine"]["mIoU (paper)"] == "70.1"  # Table 5, row T5-4
    assert out["T5-1"]["mIoU (paper)"] == "n/a"  # named like a paper row, but references none
    assert (out["mine"]["TQM"], out["mine"]["pre-train"], out["mine"]["aux"], out["mine"]["text"]) == (
        "yes", "yes", "-", "random")
    assert (out["T5-1"]["TQM"], out["T5-1"]["pre-train"], out["T5-1"]["aux"], out["T5-1"]["text"]) == (
        "-", "-", "yes", "-")
