"""Statistics of an ablation over seeds: is a row's difference to another row real, and how many seeds would tell?

Everything here works on plain numbers (per-seed values, in whatever unit the caller uses); the report
(``t4p.sweep.report``) decides which rows are compared and how the results are shown.

- ``summarize``: mean, sample std and a Student-t confidence interval over seeds.
- ``paired_test``: the paired t-test of two rows over the seeds both have (a seed's runs share their
  data order and initialisation, so pairing removes the seed's own effect).
- ``holm``: Holm's step-down adjustment of a family of p-values.
- ``power`` / ``seeds_needed``: how many seeds a paired t-test needs to resolve a given difference.

Conventions: ``ALPHA`` = 0.05 two-sided, power 0.8, a test needs ``MIN_N`` = 3 common seeds (with two, the
t distribution has one degree of freedom and the interval spans tens of standard deviations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
MIN_N = 3  # fewer common seeds: "n too small", no test
MAX_SEEDS = 100  # seeds_needed searches n = MIN_N .. MAX_SEEDS; beyond: None ("> 100")
_HUGE_NC = 1e3  # |noncentrality| beyond which the power is 1 to double precision (scipy's nct gives nan there)


@dataclass(frozen=True)
class Summary:
    """One row's metric over its seeds."""

    n: int
    mean: float
    std: float  # sample std (ddof = 1); 0 for one seed, NaN for none
    ci: tuple[float, float]  # 95 % Student-t interval of the mean; NaN for fewer than two seeds


def summarize(values: Sequence[float], level: float = 0.95) -> Summary:
    """Mean x̄ = Σ x_i / n, sample std s = sqrt(Σ (x_i - x̄)² / (n - 1)) and the interval
    x̄ ± t_{(1+level)/2, n-1} · s / sqrt(n)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, (math.nan, math.nan))
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, 0.0, (math.nan, math.nan))
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class Paired:
    """A paired comparison of row a with row b over their common seeds: d_i = a_i - b_i."""

    n: int  # common seeds
    delta: float  # mean of d_i (NaN without common seeds)
    sd: float  # sample std of d_i (NaN below two common seeds)
    t: float  # delta / (sd / sqrt(n)); NaN when too small
    p: float  # two-sided p-value, df = n - 1; NaN when too small

    @property
    def too_small(self) -> bool:
        return self.n < MIN_N


def paired_test(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """Paired t-test of a against b (seed -> value) over the seeds both have.

    With d_i = a_i - b_i on the n common seeds: d̄ = Σ d_i / n, s_d = sqrt(Σ (d_i - d̄)² / (n - 1)),
    t = d̄ / (s_d / sqrt(n)), p = 2 · P(T_{n-1} > |t|) (``scipy.stats.ttest_rel``). Below ``MIN_N`` common seeds
    there is no test (t, p NaN). When s_d = 0: p = 0 if d̄ ≠ 0 (t infinite, as scipy gives) and p = 1 if every
    d_i is 0 (no difference; scipy gives NaN).
    """
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    n = len(d)
    delta = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < MIN_N:
        return Paired(n, delta, sd, math.nan, math.nan)
    if sd == 0.0:  # every d_i equal: t = ±inf (p = 0), or t = 0 (p = 1) when they are all 0
        return Paired(n, delta, sd, math.copysign(math.inf, delta), 0.0) if delta else Paired(n, delta, sd, 0.0, 1.0)
    t = delta / (sd / math.sqrt(n))
    return Paired(n, delta, sd, t, float(2 * sps.t.sf(abs(t), n - 1)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; NaN entries (no test) stay NaN and are not part of the family.

    With the m tested p-values sorted p_(1) <= ... <= p_(m): p̃_(i) = max_{j <= i} min(1, (m - j + 1) · p_(j)).
    Rejecting where p̃ <= α is Holm's step-down procedure (reject while p_(k) <= α / (m - k + 1)), which holds
    the family-wise error rate at α under any dependence between the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(tested)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs when the true mean difference is delta and the
    differences' std is sd: with c = t_{1-α/2, n-1} and λ = |delta| / (sd / sqrt(n)) (the power is symmetric in
    delta's sign), power = P(T' > c) + P(T' < -c), T' ~ noncentral t(df = n - 1, λ).

    T' = (Z + λ) / sqrt(V / df) < -c needs Z < -λ, so the far tail is at most Φ(-λ): scipy's nct.cdf gives NaN
    there for λ >~ 8 (where it is below Φ(-8) ~ 1e-15), and the bound stands in for it.
    """
    crit = float(sps.t.ppf(1 - alpha / 2, n - 1))
    nc = abs(delta) / (sd / math.sqrt(n)) if sd > 0 else math.inf
    if nc > _HUGE_NC:
        return 1.0
    far = np.fmin(sps.nct.cdf(-crit, n - 1, nc), sps.norm.cdf(-nc))  # fmin ignores a NaN
    return float(sps.nct.sf(crit, n - 1, nc) + far)


def seeds_needed(delta: float, sd: float, alpha: float = ALPHA, target: float = POWER,
                 max_n: int = MAX_SEEDS) -> int | None:
    """The smallest n in MIN_N .. max_n with ``power(delta, sd, n) >= target``; None when none is (or when delta
    or sd is unknown). delta = 0 is never resolved (power stays α); sd = 0 resolves any delta ≠ 0 at MIN_N."""
    if math.isnan(delta) or math.isnan(sd) or delta == 0:
        return None
    return next((n for n in range(MIN_N, max_n + 1) if power(delta, sd, n, alpha) >= target), None)


def row_pairs(rows: Sequence[str]) -> list[tuple[str, str, str]]:
    """(row, compared with, relation) for every row after the first: the previous row and the baseline (the first
    row); the second row's previous row is the baseline, compared once."""
    out = []
    for i, row in enumerate(rows[1:], start=1):
        if i == 1:
            out.append((row, rows[0], "previous = baseline"))
        else:
            out += [(row, rows[i - 1], "previous"), (row, rows[0], "baseline")]
    return out
