"""The paper-style ablation report: Tables 5/6 (+ App. C) with mean ± std over seeds.

Built from the MLflow child runs of one sweep (``stage=finetune``, tags ``row`` and ``seed``,
metrics ``final/...miou`` and ``final/...macc``), written as Markdown, CSV and a PNG bar chart
with error bars, and logged as artifacts of the sweep's parent run. The paper's numbers
(``ABLATION_ROWS``) sit beside ours with the deltas between consecutive rows, and a per-class section
beside the paper's per-class table (Table 1 IoU, Tables 7/8 AP@0.5). A report built on synthetic data
or random CLIP weights says so in its title. Every file is written atomically (``t4p.io``).

Statistics (``t4p.sweep.stats``): each row's mean ± std with a 95 % Student-t interval over seeds, and a
"Paired differences" section (also ``report_pairs.csv``): every row against the previous row and the baseline
(the report's first row) over their common seeds, a paired t-test, Holm's correction over all tests of one
metric (one family per headline metric), and the seeds that would resolve the paper's difference at the
observed spread. The parent run gets the same numbers as metrics (``row/<row>/<split>_<key>_mean``,
``pair/<row>_vs_<other>/<split>_<key>_delta`` ...), in the child runs' unit (fractions).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t4p.errors import UserError
from t4p.io import atomic_path, write_text
from t4p.paper import per_class_table
from t4p.sweep.benchmarks import Benchmark, benchmark
from t4p.sweep.rows import ABLATION_ROWS
from t4p.sweep.stats import (
    ALPHA,
    MAX_SEEDS,
    MIN_N,
    POWER,
    Paired,
    Summary,
    holm,
    paired_test,
    row_pairs,
    seeds_needed,
    summarize,
)

NOT_COMPARABLE = "synthetic data / random CLIP weights — not comparable to the paper"
CI_COLUMN = "95 % CI"  # "<label> 95 % CI": the CSV's interval column, shown after "mean ± std" in the Markdown
_CSV_ONLY = ("_mean", "_std", "_n", "_ci_lo", "_ci_hi", CI_COLUMN)


@dataclass
class RowResult:
    row: str
    seeds: list[int]
    values: dict[str, list[float]]  # metric label -> per seed, percent
    per_class: dict[str, list[float]] = field(default_factory=dict)  # class -> IoU / AP@0.5 per seed, percent
    per_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # metric label -> seed -> percent
    split: str = "test"  # the split its runs evaluated on (finetune.eval_split): names the parent's metrics
    paper_row: str = ""  # the paper's row its numbers are compared with (the grid row's `paper:`; "" = none)
    switches: dict[str, str] = field(default_factory=dict)  # TQM, pre-train, aux, prompt, text: as configured

    def summary(self, label: str) -> Summary:
        """n, mean, sample std and 95 % interval over seeds (std 0 for one seed; NaN when no seed reported it)."""
        return summarize(self.values.get(label, []))

    def stats(self, label: str) -> tuple[float, float]:
        """Mean and sample std over seeds (std 0 for one seed; NaN when no seed reported it)."""
        s = self.summary(label)
        return s.mean, s.std


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
    found = _final_split_value(metrics, key)
    return None if found is None else found[1]


def _final_split_value(metrics: dict[str, float], key: str) -> tuple[str, float] | None:
    """(split, value in percent) of ``final_metric``."""
    for name_key in (key, _old_name(key)):
        for prefix in ("final/", ""):
            for split in _SPLITS:
                name = f"{prefix}{split}_{name_key}"
                if name_key and name in metrics:
                    return split, float(metrics[name]) * 100.0  # the loop reports fractions; the tables use percent
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
        paper_row = tags.get("paper_row", row)  # runs logged before grid files carry no tag: their row is the paper's
        res = by_row.setdefault(row, RowResult(row, [], {m.label: [] for m in spec.metrics}, paper_row=paper_row,
                                               switches=_switches(run.data.params, paper_row)))
        seed = int(tags.get("seed", 0) or 0)
        res.seeds.append(seed)
        for m in spec.metrics:
            found = _final_split_value(metrics, m.key)
            if found is not None:
                res.split = found[0]
                res.values[m.label].append(found[1])
                res.per_seed.setdefault(m.label, {})[seed] = found[1]
        for name in classes:  # the loop's "<split>_<key>/<class>"
            value = final_metric(metrics, f"{per_class_key}/{name}")
            if value is not None:
                res.per_class.setdefault(name, []).append(value)
        flags["synthetic"] |= tags.get("synthetic_data") == "true"
        flags["random_clip"] |= tags.get("clip_weights_real") == "false"
    return [by_row[r] for r in _row_order(tracker, parent_run_id, by_row)], flags


def _row_order(tracker, parent_run_id: str, found) -> list[str]:
    """The rows found, in the grid's order as the sweep ran it (its parent's ``rows`` tag), else the paper's order;
    rows of neither last. The first is the report's baseline."""
    ran = tracker.client.get_run(parent_run_id).data.tags.get("rows", "").split(",")
    known = [r for r in dict.fromkeys([*ran, *ABLATION_ROWS]) if r in found]
    return known + sorted(r for r in found if r not in known)


def _switches(params: dict[str, str], paper_row: str) -> dict[str, str]:
    """What the row switches, read from its run's config (MLflow params); runs logged without params: the paper
    grid's row of that name."""
    if params:
        ft = {k: str(v).lower() for k, v in params.items()}
        pretrained = bool(params.get("finetune.init"))
    elif paper_row in ABLATION_ROWS:
        spec = ABLATION_ROWS[paper_row]
        ft, pretrained = dict(o.split("=", 1) for o in spec.finetune), spec.needs_pretrain
    else:
        return {"TQM": "?", "pre-train": "?", "aux": "?", "prompt": "?", "text": "?"}
    yes = lambda v: "yes" if v == "true" else "-"
    return {
        "TQM": yes(ft.get("model.tqm")),
        "pre-train": "yes" if pretrained else "-",
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


def _ci(s: Summary) -> str:
    return "n/a" if math.isnan(s.ci[0]) else f"[{s.ci[0]:.1f}, {s.ci[1]:.1f}]"


def table_rows(results: list[RowResult], spec: Benchmark) -> list[dict[str, str]]:
    """One dict per row: switches, then per metric ours / 95 % CI / paper / deltas to the row above; CSV extras
    (``<key>_mean``, ``_std``, ``_n``, ``_ci_lo``, ``_ci_hi``) last."""
    out, prev = [], None
    for res in results:
        entry = {"row": res.row, **res.switches, "seeds": ",".join(map(str, res.seeds))}
        raw = {}
        for m in spec.metrics:
            s, paper = res.summary(m.label), _paper(spec, res.paper_row, m.label)
            mean, std = s.mean, s.std
            entry[f"{m.label} (ours)"] = _fmt(mean, std)
            entry[f"{m.label} {CI_COLUMN}"] = _ci(s)
            entry[f"{m.label} (paper)"] = "n/a" if math.isnan(paper) else f"{paper:.1f}"
            entry[f"Δ{m.label} vs prev (ours)"] = _delta(mean, prev[m.label][0]) if prev else ""
            entry[f"Δ{m.label} vs prev (paper)"] = _delta(paper, prev[m.label][1]) if prev else ""
            raw[m.label] = (mean, paper)
            entry.update({f"{m.key}_mean": f"{mean:.4f}", f"{m.key}_std": f"{std:.4f}"})
            entry.update({f"{m.key}_n": str(s.n), f"{m.key}_ci_lo": f"{s.ci[0]:.4f}",
                          f"{m.key}_ci_hi": f"{s.ci[1]:.4f}"})
        out.append(entry)
        prev = raw
    return out


# --------------------------------------------------------------------------- paired differences


@dataclass(frozen=True)
class Comparison:
    """One paired test of the report: ``row`` against ``other`` on one metric (values in percent)."""

    label: str  # metric label (mIoU)
    key: str  # metric key (miou)
    row: str
    other: str
    relation: str  # previous | baseline | previous = baseline
    test: Paired
    p_holm: float  # NaN when not tested
    paper_delta: float  # the paper's row - other; NaN where the paper lacks either
    seeds: int | None  # seeds that resolve paper_delta at test.sd (None: > MAX_SEEDS or unknown)

    @property
    def resolved(self) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm <= ALPHA

    @property
    def verdict(self) -> str:
        return "n too small" if self.test.too_small else "yes" if self.resolved else "no"

    @property
    def seeds_text(self) -> str:
        if math.isnan(self.paper_delta) or math.isnan(self.test.sd):
            return "n/a"
        return f"> {MAX_SEEDS}" if self.seeds is None else str(self.seeds)


def comparisons(results: list[RowResult], spec: Benchmark) -> list[Comparison]:
    """Every row against the previous row and the baseline (``row_pairs``), per headline metric; Holm's family
    is one metric's tests (all pairs of the report), so each metric's table is corrected on its own."""
    by_row = {r.row: r for r in results}
    pairs = row_pairs([r.row for r in results])
    out = []
    for m in spec.metrics:
        tests = [paired_test(by_row[a].per_seed.get(m.label, {}), by_row[b].per_seed.get(m.label, {}))
                 for a, b, _ in pairs]
        for (a, b, relation), test, p_holm in zip(pairs, tests, holm([t.p for t in tests])):
            paper = round(_paper(spec, by_row[a].paper_row, m.label) - _paper(spec, by_row[b].paper_row, m.label),
                          9)  # 67.0 - 66.7: 0.3, not 0.29999...
            out.append(Comparison(m.label, m.key, a, b, relation, test, p_holm, paper, seeds_needed(paper, test.sd)))
    return out


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _num(x: float, fmt: str) -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


PAIRS_LEGEND = (
    f"Each row against the previous row and the baseline (the first row), over the seeds both have (n). "
    f"Δ mean: mean over those seeds of (row − vs), in points; sd of Δ: the sample std of the per-seed differences. "
    f"p (raw): two-sided paired t-test, df = n − 1; below {MIN_N} common seeds no test is made (n too small). "
    f"p (Holm): Holm's step-down correction over all tests of the same metric in this section (one family per "
    f"metric); resolved: p (Holm) ≤ {ALPHA:g}. paper Δ: the same difference in the paper. seeds for paper Δ: the "
    f"smallest number of seeds at which a paired t-test (α = {ALPHA:g}, two-sided, before Holm's correction) has "
    f"power ≥ {POWER:g} to detect the paper's Δ if the per-seed differences spread as observed here (sd of Δ; "
    f"noncentral t); > {MAX_SEEDS} when more; n/a without a paper number or with fewer than 2 common seeds."
)


def pairs_markdown(comps: list[Comparison], spec: Benchmark) -> list[str]:
    """The "Paired differences" section: one table per metric (= one Holm family), then the legend."""
    cols = ["row", "vs", "n", "Δ mean", "sd of Δ", "p (raw)", "p (Holm)", "resolved?", "paper Δ",
            "seeds for paper Δ"]
    lines = ["", "## Paired differences (over common seeds)"]
    for m in spec.metrics:
        family = [c for c in comps if c.label == m.label]
        tested = sum(not c.test.too_small for c in family)
        lines += ["", f"### {m.label} (Holm family: the {tested} tests of this metric)", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join([c.row, f"{c.other} ({c.relation})", str(c.test.n), _num(c.test.delta, "+.2f"),
                                     _num(c.test.sd, ".2f"), _p(c.test.p), _p(c.p_holm), c.verdict,
                                     _num(c.paper_delta, "+.1f"), c.seeds_text]) + " |" for c in family]
    return [*lines, "", PAIRS_LEGEND]


def pair_rows(comps: list[Comparison]) -> list[dict[str, str]]:
    """``report_pairs.csv``: one line per test, numbers at full precision (NaN where there is none)."""
    return [{"metric": c.label, "row": c.row, "vs": c.other, "relation": c.relation, "n": str(c.test.n),
             "delta": repr(c.test.delta), "sd": repr(c.test.sd), "t": repr(c.test.t), "p": repr(c.test.p),
             "p_holm": repr(c.p_holm), "resolved": c.verdict, "paper_delta": repr(c.paper_delta),
             "seeds_needed": c.seeds_text} for c in comps]


def stats_metrics(results: list[RowResult], comps: list[Comparison], spec: Benchmark) -> dict[str, float]:
    """The parent run's metrics: per row ``row/<row>/<split>_<key>_{mean,std,n}`` and per test
    ``pair/<row>_vs_<other>/<split>_<key>_{n,delta,p_holm,resolved}`` (resolved 0/1). Means, stds and deltas are
    fractions, like the child runs' ``<split>_<key>``; values that do not exist (no seed, no test) are left out."""
    split = {r.row: r.split for r in results}
    out: dict[str, float] = {}
    for res in results:
        for m in spec.metrics:
            s, name = res.summary(m.label), f"row/{res.row}/{res.split}_{m.key}"
            out[f"{name}_n"] = s.n
            out.update({f"{name}_mean": s.mean / 100, f"{name}_std": s.std / 100} if s.n else {})
    for c in comps:
        name = f"pair/{c.row}_vs_{c.other}/{split[c.row]}_{c.key}"
        out.update({f"{name}_n": c.test.n, f"{name}_resolved": float(c.resolved)})
        out.update({f"{name}_delta": c.test.delta / 100} if c.test.n else {})
        out.update({} if math.isnan(c.p_holm) else {f"{name}_p_holm": c.p_holm})
    return out


def per_class_markdown(results: list[RowResult], spec: Benchmark) -> list[str]:
    """Per-class IoU / AP@0.5 in the layout of the paper's per-class table: its methods, then our rows (means)."""
    assert spec.per_class_table is not None and spec.per_class is not None
    ours = {f"{res.row} (ours)": ({n: float(np.mean(v)) for n, v in res.per_class.items() if v},
                                  res.stats(spec.metrics[0].label)[0]) for res in results}
    heading = f"## Per-class {spec.per_class.label} (layout of the paper's table; ours: mean over seeds)"
    return ["", heading, "", *per_class_table(spec.per_class_table, ours).splitlines()]


# --------------------------------------------------------------------------- seeds from a pilot sweep


def latest_finished_sweep(tracker, kind: str = "ablation"):
    """The newest FINISHED parent run of a ``kind`` sweep in the tracker's experiment (a ``UserError`` if none)."""
    runs = [r for r in tracker.find_runs(stage="sweep", sweep_kind=kind) if r.info.status == "FINISHED"]
    if not runs:
        name = tracker.client.get_experiment(tracker.experiment_id).name
        raise UserError(f"no finished {kind} sweep in experiment {name!r} ({tracker.uri})")
    return max(runs, key=lambda r: r.info.start_time)


def sweep_benchmark(parent) -> str:
    """The benchmark a sweep ran (its tag, else its config param; the last two names: sweeps before issue 16)."""
    tags, params = parent.data.tags, parent.data.params
    return (tags.get("sweep_benchmark") or params.get("sweep.benchmark") or tags.get("sweep_task")
            or params.get("sweep.task", "semseg"))


def _plan_line(c: Comparison) -> str:
    head = f"  {c.label} {c.row} vs {c.other}: paper Δ {_num(c.paper_delta, '+.1f')}"
    if c.seeds_text == "n/a":
        why = "no paper Δ" if math.isnan(c.paper_delta) else f"{c.test.n} common seed(s): no spread observed"
        return f"{head}, {why} -> n/a"
    need = f"more than {MAX_SEEDS}" if c.seeds is None else str(c.seeds)
    return f"{head}, sd of Δ {c.test.sd:.2f} over {c.test.n} common seeds -> {need} seeds"


def _plan_summary(label: str, family: list[Comparison]) -> str:
    needs = [c.seeds for c in family if c.seeds is not None]
    beyond = sum(c.seeds is None and c.seeds_text != "n/a" for c in family)
    unknown = sum(c.seeds_text == "n/a" for c in family)
    text = (f"{label}: to resolve the paper's deltas at the observed spread you need {max(needs)} seeds" if needs
            else f"{label}: no pair can be planned")
    notes = ([f"{beyond} pair(s) need more than {MAX_SEEDS}"] if beyond else []) + (
        [f"{unknown} pair(s) cannot be planned: no paper Δ or fewer than 2 common seeds"] if unknown else [])
    return text + (f" ({'; '.join(notes)})" if notes else "")


def seeds_plan(tracker) -> str:
    """``ablation.py --dry-run --seeds-from``: from the newest finished ablation sweep of the tracker's experiment,
    the seeds each row pair needs to resolve the paper's delta at the observed spread (``stats.seeds_needed``),
    the most per metric, and a ``--seeds`` suggestion for the headline metric."""
    parent = latest_finished_sweep(tracker)
    spec = benchmark(sweep_benchmark(parent))
    results, _ = collect(tracker, parent.info.run_id, spec)
    comps = comparisons(results, spec)
    seeds = sorted({s for r in results for s in r.seeds})
    lines = [f"seeds from the pilot sweep {parent.data.tags.get('sweep_id', parent.info.run_id)} (benchmark "
             f"{spec.name}, seeds {','.join(map(str, seeds))}): per row pair, the seeds a paired t-test needs to "
             f"resolve the paper's Δ at the observed sd of the per-seed differences (power {POWER:g}, α = {ALPHA:g} "
             "two-sided, before Holm's correction)"]
    lines += [_plan_line(c) for c in comps]
    lines += [_plan_summary(m.label, [c for c in comps if c.label == m.label]) for m in spec.metrics]
    head = [c.seeds for c in comps if c.label == spec.metrics[0].label and c.seeds is not None]
    if head:
        lines.append(f"suggestion ({spec.metrics[0].label}): --seeds {','.join(map(str, range(max(head))))}")
    return "\n".join(lines)


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
    cols = [c for c in rows[0] if not c.endswith(_CSV_ONLY)] if rows else ["row"]
    lines = [f"# {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r, c) for c in cols) + " |" for r in rows]
    lines += ["", f"ours: mean ± std over seeds [95 % Student-t confidence interval of the mean; n/a below 2 seeds]. "
              f"Δ columns: difference to the row above. Paper numbers: {spec.paper_source}; n/a where the "
              "paper has no such row or metric.", *extra]
    write_text(path, "\n".join(lines) + "\n")


def _md_cell(row: dict[str, str], col: str) -> str:
    """``<label> (ours)`` gains its interval: "mean ± std [lo, hi]"."""
    ci = row.get(col.removesuffix(" (ours)") + f" {CI_COLUMN}") if col.endswith(" (ours)") else None
    return f"{row[col]} {ci}" if ci and ci != "n/a" else row[col]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    text = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, text.getvalue())


def baseline_deltas(results: list[RowResult], label: str) -> list[tuple[str, list[float]]]:
    """Per row, its per-seed differences to the baseline (the first row) over their common seeds, in points."""
    if not results:
        return []
    base = results[0].per_seed.get(label, {})
    out = []
    for res in results:
        mine = res.per_seed.get(label, {})
        out.append((res.row, [mine[s] - base[s] for s in sorted(mine) if s in base]))
    return out


def write_chart(path: Path, results: list[RowResult], heading: str, spec: Benchmark,
                comparable: bool = True) -> None:
    """What an ablation is about: each row's Δ of the first headline metric to the baseline row, one point
    per seed and the mean; the paper's Δs in their own panel, titled as not comparable when the data is
    synthetic or the CLIP weights random."""
    import matplotlib  # optional heavy dependency: only when a chart is drawn

    matplotlib.use("Agg")  # before pyplot: no display on cluster nodes
    import matplotlib.pyplot as plt

    label = spec.metrics[0].label
    deltas = baseline_deltas(results, label)
    names = [row for row, _ in deltas]
    x = np.arange(len(names))
    base = names[0] if names else "-"
    paper_rows = [r.paper_row for r in results]
    paper = [_paper(spec, row, label) - _paper(spec, paper_rows[0], label) for row in paper_rows] if results else []
    fig, (ours_ax, paper_ax) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names) + 3), 4), sharey=comparable)
    for i, (_, values) in enumerate(deltas):
        if values:
            ours_ax.scatter(np.full(len(values), x[i]), values, s=14, color="tab:blue", alpha=0.6,
                            label="one seed" if i == 0 else None)
            ours_ax.scatter([x[i]], [float(np.mean(values))], marker="_", s=400, color="tab:blue",
                            label="mean over seeds" if i == 0 else None)
    ours_ax.set_title(f"ours: Δ{label} to {base} (per seed)", fontsize=9)
    paper_ax.bar(x, [0.0 if math.isnan(v) else v for v in paper], 0.5, color="tab:orange")
    paper_title = f"paper: Δ{label} to {base}"
    paper_ax.set_title(paper_title if comparable else f"{paper_title}\n(NOT comparable: {NOT_COMPARABLE})",
                       fontsize=9)
    for ax in (ours_ax, paper_ax):
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(x, names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel(f"Δ{label} (points)")
    ours_ax.legend(fontsize=8)
    fig.suptitle(heading, fontsize=8, wrap=True)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:  # the suffix tells matplotlib the format
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_report(tracker, parent_run_id: str, out_dir: str | Path, bench: str = "semseg") -> Path:
    """Write report.md/.csv/_pairs.csv/.png under ``out_dir`` for the benchmark ``bench`` (``sweep.benchmark``), log
    them to the parent run with the statistics as its metrics (``stats_metrics``); returns the .md path."""
    spec = benchmark(bench)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, flags = collect(tracker, parent_run_id, spec)
    heading = title(flags, spec)
    rows = table_rows(results, spec)
    comps = comparisons(results, spec)
    extra = pairs_markdown(comps, spec)
    extra += per_class_markdown(results, spec) if spec.per_class_table and spec.per_class else []
    md, csv_path, pairs_path, png = out / "report.md", out / "report.csv", out / "report_pairs.csv", out / "report.png"
    write_markdown(md, rows, heading, spec, extra)
    write_csv(csv_path, rows)
    write_csv(pairs_path, pair_rows(comps))
    comparable = not (flags.get("synthetic") or flags.get("random_clip"))
    write_chart(png, results, heading, spec, comparable)
    for path in (md, csv_path, pairs_path, png):
        tracker.log_artifact(parent_run_id, path, "report")
    tracker.log_metrics(parent_run_id, stats_metrics(results, comps, spec), 0)
    return md
