"""The paper-style ablation report: Tables 5/6 (+ App. C) with mean ± std over seeds.

Built from the MLflow child runs of one sweep (``stage=finetune``, tags ``row`` and ``seed``,
metrics ``final/...miou`` and ``final/...macc``), written as Markdown, CSV and a PNG bar chart
with error bars, and logged as artifacts of the sweep's parent run. The paper's numbers
(``ABLATION_ROWS``) sit beside ours with the deltas between consecutive rows, and a per-class section
beside the paper's per-class table (Table 1 IoU, Tables 7/8 AP@0.5). A report built on synthetic data
or random CLIP weights says so in its title. Every file is written atomically (``t4p.io``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t4p.io import atomic_path, write_text
from t4p.paper import per_class_table
from t4p.sweep.benchmarks import Benchmark, benchmark
from t4p.sweep.rows import ABLATION_ROWS

NOT_COMPARABLE = "synthetic data / random CLIP weights — not comparable to the paper"


@dataclass
class RowResult:
    row: str
    seeds: list[int]
    values: dict[str, list[float]]  # metric label -> per seed, percent
    per_class: dict[str, list[float]] = field(default_factory=dict)  # class -> IoU / AP@0.5 per seed, percent

    def stats(self, label: str) -> tuple[float, float]:
        """Mean and sample std over seeds (std 0 for one seed; NaN when no seed reported it)."""
        values = self.values.get(label, [])
        if not values:
            return math.nan, math.nan
        arr = np.asarray(values, dtype=np.float64)
        return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


_SPLITS = ("test", "val", "train")  # the split a fine-tuning run evaluated on (finetune.eval_split)


# Detection metrics as runs logged them before issue 16 ("map@0.5", stored by MLflow as "map_0.5")
_OLD_METRIC_NAMES = {"map50": "map_0.5", "map25": "map_0.25", "ap50/": "ap_0.5/", "ap25/": "ap_0.25/"}


def _old_name(key: str) -> str | None:
    for new, old in _OLD_METRIC_NAMES.items():
        if key == new or (new.endswith("/") and key.startswith(new)):
            return old + key[len(new):]
    return None


def final_metric(metrics: dict[str, float], key: str) -> float | None:
    """The run's final ``<split>_<key>`` in percent: ``final/<split>_<key>``, else the last ``<split>_<key>``.

    The fallback covers a trial resumed from its final checkpoint, whose fit had nothing left to report;
    runs logged before the metric rename are read under their old names.
    """
    for name_key in (key, _old_name(key)):
        for prefix in ("final/", ""):
            for split in _SPLITS:
                name = f"{prefix}{split}_{name_key}"
                if name_key and name in metrics:
                    return float(metrics[name]) * 100.0  # the loop reports fractions; the tables use percent
    return None


def collect(tracker, parent_run_id: str, spec: Benchmark) -> tuple[list[RowResult], dict[str, bool]]:
    """Per-row results of one sweep's finished fine-tuning runs, and the flags for the title."""
    runs = [
        r for r in tracker.find_runs(**{"mlflow.parentRunId": parent_run_id, "stage": "finetune"})
        if r.info.status == "FINISHED"
    ]
    by_row: dict[str, RowResult] = {}
    flags = {"synthetic": False, "random_clip": False}
    table, per_class = spec.per_class_table, spec.per_class
    classes, per_class_key = (table["classes"], per_class.key) if table and per_class else ((), "")
    for run in sorted(runs, key=lambda r: (r.data.tags.get("row", ""), int(r.data.tags.get("seed", 0) or 0))):
        tags, metrics = run.data.tags, run.data.metrics
        row = tags.get("row", "")
        res = by_row.setdefault(row, RowResult(row, [], {m.label: [] for m in spec.metrics}))
        res.seeds.append(int(tags.get("seed", 0) or 0))
        for m in spec.metrics:
            value = final_metric(metrics, m.key)
            if value is not None:
                res.values[m.label].append(value)
        for name in classes:  # the loop's "<split>_<key>/<class>"
            value = final_metric(metrics, f"{per_class_key}/{name}")
            if value is not None:
                res.per_class.setdefault(name, []).append(value)
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


def _paper(spec: Benchmark, row: str, label: str) -> float:
    value = spec.paper.get(row, {}).get(label)
    return math.nan if value is None else value


def table_rows(results: list[RowResult], spec: Benchmark) -> list[dict[str, str]]:
    """One dict per row: switches, then per metric ours / paper / deltas to the row above; CSV extras last."""
    out, prev = [], None
    for res in results:
        entry = {"row": res.row, **_switches(res.row), "seeds": ",".join(map(str, res.seeds))}
        raw = {}
        for m in spec.metrics:
            (mean, std), paper = res.stats(m.label), _paper(spec, res.row, m.label)
            entry[f"{m.label} (ours)"] = _fmt(mean, std)
            entry[f"{m.label} (paper)"] = "n/a" if math.isnan(paper) else f"{paper:.1f}"
            entry[f"Δ{m.label} vs prev (ours)"] = _delta(mean, prev[m.label][0]) if prev else ""
            entry[f"Δ{m.label} vs prev (paper)"] = _delta(paper, prev[m.label][1]) if prev else ""
            raw[m.label] = (mean, paper)
            entry.update({f"{m.key}_mean": f"{mean:.4f}", f"{m.key}_std": f"{std:.4f}"})
        out.append(entry)
        prev = raw
    return out


def per_class_markdown(results: list[RowResult], spec: Benchmark) -> list[str]:
    """Per-class IoU / AP@0.5 in the layout of the paper's per-class table: its methods, then our rows (means)."""
    assert spec.per_class_table is not None and spec.per_class is not None
    ours = {f"{res.row} (ours)": ({n: float(np.mean(v)) for n, v in res.per_class.items() if v},
                                  res.stats(spec.metrics[0].label)[0]) for res in results}
    heading = f"## Per-class {spec.per_class.label} (layout of the paper's table; ours: mean over seeds)"
    return ["", heading, "", *per_class_table(spec.per_class_table, ours).splitlines()]


TITLES = {
    "semseg": "Text4Point ablation (Tables 5/6 + App. C layout), S3DIS semantic segmentation",
    "insseg": "Text4Point ablation, S3DIS instance segmentation (paper: Table 2)",
    "det-sunrgbd": "Text4Point ablation, VoteNet detection on SUN RGB-D (paper: Table 7)",
    "det-scannet": "Text4Point ablation, VoteNet detection on ScanNet (paper: Table 8)",
}


def title(flags: dict[str, bool], spec: Benchmark) -> str:
    base = f"{TITLES[spec.name]}, mean ± std over seeds"
    return f"{base} — {NOT_COMPARABLE}" if flags.get("synthetic") or flags.get("random_clip") else base


def write_markdown(path: Path, rows: list[dict[str, str]], heading: str, spec: Benchmark,
                   extra: Sequence[str] = ()) -> None:
    cols = [c for c in rows[0] if not c.endswith(("_mean", "_std"))] if rows else ["row"]
    lines = [f"# {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    lines += ["", f"Δ columns: difference to the row above. Paper numbers: {spec.paper_source}; n/a where the "
              "paper has no such row or metric.", *extra]
    write_text(path, "\n".join(lines) + "\n")


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    text = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, text.getvalue())


def write_chart(path: Path, results: list[RowResult], heading: str, spec: Benchmark) -> None:
    """Bars of the task's first metric per row (ours: mean ± std over seeds) beside the paper's."""
    import matplotlib  # optional heavy dependency: only when a chart is drawn

    matplotlib.use("Agg")  # before pyplot: no display on cluster nodes
    import matplotlib.pyplot as plt

    label = spec.metrics[0].label
    names = [r.row for r in results]
    x = np.arange(len(names))
    ours = [r.stats(label) for r in results]
    paper = [_paper(spec, r.row, label) for r in results]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 4))
    ax.bar(x - 0.2, [m for m, _ in ours], 0.4, yerr=[s for _, s in ours], capsize=3, label="ours (mean ± std)")
    ax.bar(x + 0.2, paper, 0.4, label="paper")
    ax.set_xticks(x, names)
    ax.set_ylabel(f"{label} (%)")
    ax.set_title(heading, fontsize=8, wrap=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:  # the suffix tells matplotlib the format
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_report(tracker, parent_run_id: str, out_dir: str | Path, bench: str = "semseg") -> Path:
    """Write report.md/.csv/.png under ``out_dir`` for the benchmark ``bench`` (``sweep.benchmark``), log them to
    the parent run; returns the .md path."""
    spec = benchmark(bench)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, flags = collect(tracker, parent_run_id, spec)
    heading = title(flags, spec)
    rows = table_rows(results, spec)
    extra = per_class_markdown(results, spec) if spec.per_class_table and spec.per_class else []
    md, csv_path, png = out / "report.md", out / "report.csv", out / "report.png"
    write_markdown(md, rows, heading, spec, extra)
    write_csv(csv_path, rows)
    write_chart(png, results, heading, spec)
    for path in (md, csv_path, png):
        tracker.log_artifact(parent_run_id, path, "report")
    return md
