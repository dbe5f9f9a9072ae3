"""The paper-style ablation report: Tables 5/6 (+ App. C) with mean ± std over seeds.

Built from the MLflow child runs of one sweep (``stage=finetune``, tags ``row`` and ``seed``,
metrics ``final/...miou`` and ``final/...macc``), written as Markdown, CSV and a PNG bar chart
with error bars, and logged as artifacts of the sweep's parent run. The paper's numbers
(``ABLATION_ROWS``) sit beside ours with the deltas between consecutive rows. A report built
on synthetic data or random CLIP weights says so in its title.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t4p.train.ablation_rows import ABLATION_ROWS

NOT_COMPARABLE = "synthetic data / random CLIP weights — not comparable to the paper"


@dataclass
class RowResult:
    row: str
    miou: list[float]  # per seed, percent
    macc: list[float]
    seeds: list[int]

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float, float]:
        if not values:
            return math.nan, math.nan
        arr = np.asarray(values, dtype=np.float64)
        return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0

    @property
    def miou_stats(self) -> tuple[float, float]:
        return self._mean_std(self.miou)

    @property
    def macc_stats(self) -> tuple[float, float]:
        return self._mean_std(self.macc)


def final_metric(metrics: dict[str, float], name: str) -> float | None:
    """The run's final ``name`` (``miou``/``macc``): ``final/<split>_<name>``, else the last ``<split>_<name>``.

    The fallback covers a trial resumed from its final checkpoint, whose fit had nothing left to report.
    """
    ends = lambda k: k.lower().replace("_", "").endswith(name)
    keys = sorted(k for k in metrics if k.startswith("final/") and ends(k))
    keys = keys or sorted(k for k in metrics if "/" not in k and ends(k))
    if not keys:
        return None
    return float(metrics[keys[0]]) * 100.0  # t4p.train.loop reports fractions; the tables use percent


def collect(tracker, parent_run_id: str) -> tuple[list[RowResult], dict[str, str]]:
    """Per-row results of one sweep's finished fine-tuning runs, and the flags for the title."""
    runs = [
        r for r in tracker.find_runs(**{"mlflow.parentRunId": parent_run_id, "stage": "finetune"})
        if r.info.status == "FINISHED"
    ]
    by_row: dict[str, RowResult] = {}
    flags = {"synthetic": False, "random_clip": False}
    for run in sorted(runs, key=lambda r: (r.data.tags.get("row", ""), int(r.data.tags.get("seed", 0) or 0))):
        tags, metrics = run.data.tags, run.data.metrics
        row = tags.get("row", "")
        res = by_row.setdefault(row, RowResult(row, [], [], []))
        res.seeds.append(int(tags.get("seed", 0) or 0))
        for name, target in (("miou", res.miou), ("macc", res.macc)):
            value = final_metric(metrics, name)
            if value is not None:
                target.append(value)
        flags["synthetic"] |= tags.get("synthetic_data") == "true"
        flags["random_clip"] |= tags.get("clip_weights_real") == "false"
    order = [r for r in ABLATION_ROWS if r in by_row] + sorted(r for r in by_row if r not in ABLATION_ROWS)
    return [by_row[r] for r in order], flags


def _switches(row: str) -> dict[str, str]:
    spec = ABLATION_ROWS.get(row)
    if spec is None:
        return {"TQM": "?", "pre-train": "?", "aux": "?", "prompt": "?", "text": "?"}
    ft = dict(o.split("=", 1) for o in spec.finetune)
    yes = lambda v: "yes" if v == "true" else "-"
    return {
        "TQM": yes(ft.get("model.tqm")),
        "pre-train": "yes" if spec.needs_pretrain else "-",
        "aux": yes(ft.get("loss.aux")),
        "prompt": yes(ft.get("model.prompt_learning")),
        "text": ft.get("model.text_source", "clip") if ft.get("model.tqm") == "true" else "-",
    }


def _fmt(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def _delta(a: float, b: float) -> str:
    return "" if math.isnan(a) or math.isnan(b) else f"{a - b:+.1f}"


def table_rows(results: list[RowResult]) -> list[dict[str, str]]:
    out, prev = [], None
    for res in results:
        spec = ABLATION_ROWS.get(res.row)
        paper_miou = spec.paper_miou if spec else math.nan
        paper_macc = spec.paper_macc if spec else math.nan
        (m, s), (a, sa) = res.miou_stats, res.macc_stats
        entry = {"row": res.row, **_switches(res.row), "seeds": ",".join(map(str, res.seeds))}
        entry.update({
            "mIoU (ours)": _fmt(m, s),
            "mIoU (paper)": "n/a" if math.isnan(paper_miou) else f"{paper_miou:.1f}",
            "ΔmIoU vs prev (ours)": _delta(m, prev[0]) if prev else "",
            "ΔmIoU vs prev (paper)": _delta(paper_miou, prev[2]) if prev else "",
            "mAcc (ours)": _fmt(a, sa),
            "mAcc (paper)": "n/a" if math.isnan(paper_macc) else f"{paper_macc:.1f}",
            "ΔmAcc vs prev (ours)": _delta(a, prev[1]) if prev else "",
            "ΔmAcc vs prev (paper)": _delta(paper_macc, prev[3]) if prev else "",
            "miou_mean": f"{m:.4f}", "miou_std": f"{s:.4f}", "macc_mean": f"{a:.4f}", "macc_std": f"{sa:.4f}",
        })
        out.append(entry)
        prev = (m, a, paper_miou, paper_macc)
    return out


def title(flags: dict[str, bool]) -> str:
    base = "Text4Point ablation (Tables 5/6 + App. C layout), mean ± std over seeds"
    return f"{base} — {NOT_COMPARABLE}" if flags.get("synthetic") or flags.get("random_clip") else base


def write_markdown(path: Path, rows: list[dict[str, str]], heading: str) -> None:
    cols = [c for c in rows[0] if not c.endswith(("_mean", "_std"))] if rows else ["row"]
    lines = [f"# {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    lines += ["", "Δ columns: difference to the row above. Paper numbers: Tables 5/6 and App. C (C: mIoU only)."]
    path.write_text("\n".join(lines) + "\n")


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_chart(path: Path, results: list[RowResult], heading: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.row for r in results]
    x = np.arange(len(names))
    ours = [r.miou_stats for r in results]
    paper = [ABLATION_ROWS[r.row].paper_miou if r.row in ABLATION_ROWS else math.nan for r in results]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 4))
    ax.bar(x - 0.2, [m for m, _ in ours], 0.4, yerr=[s for _, s in ours], capsize=3, label="ours (mean ± std)")
    ax.bar(x + 0.2, paper, 0.4, label="paper")
    ax.set_xticks(x, names)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(heading, fontsize=8, wrap=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(tracker, parent_run_id: str, out_dir: str | Path) -> Path:
    """Write report.md/.csv/.png under ``out_dir``, log them to the parent run; returns the .md path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, flags = collect(tracker, parent_run_id)
    heading = title(flags)
    rows = table_rows(results)
    md, csv_path, png = out / "report.md", out / "report.csv", out / "report.png"
    write_markdown(md, rows, heading)
    write_csv(csv_path, rows)
    write_chart(png, results, heading)
    for path in (md, csv_path, png):
        tracker.log_artifact(parent_run_id, path, "report")
    return md
