"""The report's statistics against independent references: scipy's own tests and intervals, Holm by hand,
power by a brute-force loop over the noncentral t, and G*Power's published sample sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from t4p.sweep.stats import (
    ALPHA,
    MAX_SEEDS,
    MIN_N,
    holm,
    paired_test,
    power,
    row_pairs,
    seeds_needed,
    summarize,
)

A = {0: 41.2, 1: 43.9, 2: 40.1, 3: 44.8, 4: 42.0}  # per seed, percent
B = {0: 42.0, 1: 45.1, 2: 40.3, 3: 46.2, 4: 43.5, 7: 50.0}  # seed 7 has no partner in A
NAN_TAIL_SD = 0.15275252316519294  # with delta 2.6, n = 3: scipy.stats.nct.cdf(-crit, 2, 29.48) is nan


def test_summary_is_mean_sample_std_and_student_t_interval():
    values = list(A.values())
    s = summarize(values)
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert s.n == 5 and s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert s.ci == pytest.approx((lo, hi))


def test_summary_of_one_and_no_value():
    one = summarize([42.0])
    assert (one.n, one.mean, one.std) == (1, 42.0, 0.0)  # the report's convention: std 0 for one seed
    assert all(math.isnan(v) for v in one.ci)  # no interval from one value
    none = summarize([])
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.std)


def test_paired_test_matches_scipy_on_common_seeds_only():
    res = paired_test(B, A)
    common = sorted(set(A) & set(B))
    a, b = np.array([A[s] for s in common]), np.array([B[s] for s in common])
    ref = sps.ttest_rel(b, a)
    assert res.n == 5
    assert res.delta == pytest.approx(np.mean(b - a)) and res.sd == pytest.approx(np.std(b - a, ddof=1))
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert not res.too_small


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_common_seeds_is_n_too_small(n):
    a = {s: float(s) for s in range(n)}
    b = {s: float(s) + 1.5 + 0.1 * s * s for s in range(n)}
    res = paired_test(b, a)
    assert res.n == n and res.too_small and math.isnan(res.p)
    assert res.delta == pytest.approx(np.mean([b[s] - a[s] for s in range(n)]))
    assert math.isnan(res.sd) if n == 1 else res.sd == pytest.approx(np.std([1.5, 1.6], ddof=1))


def test_seeds_not_shared_give_no_test():
    res = paired_test({0: 1.0, 1: 2.0, 2: 3.0}, {3: 1.0, 4: 2.0, 5: 3.0})
    assert res.n == 0 and res.too_small and math.isnan(res.delta) and math.isnan(res.p)


def test_zero_spread_of_differences():
    shifted = paired_test({0: 2.0, 1: 3.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 4.0})
    assert shifted.sd == 0.0 and shifted.t == math.inf and shifted.p == 0.0  # as scipy.stats.ttest_rel gives
    same = paired_test({0: 2.0, 1: 3.0, 2: 5.0}, {0: 2.0, 1: 3.0, 2: 5.0})
    assert same.sd == 0.0 and same.t == 0.0 and same.p == 1.0  # no difference at all (scipy: nan)


def _holm_by_hand(ps: list[float], alpha: float) -> list[bool]:
    """Holm's step-down: reject p_(1), p_(2), ... while p_(k) <= alpha / (m - k + 1), then stop."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    rejected = [False] * len(ps)
    for k, i in enumerate(order):
        if ps[i] > alpha / (len(ps) - k):
            break
        rejected[i] = True
    return rejected


def test_holm_known_answer():
    ps = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.06
    assert holm(ps) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p <= ALPHA for p in holm(ps)] == _holm_by_hand(ps, ALPHA) == [True, False, False, True]


def test_holm_leaves_untested_out_of_the_family():
    adjusted = holm([0.02, math.nan, 0.04, 0.9])
    assert math.isnan(adjusted[1])
    assert adjusted[0] == pytest.approx(0.06) and adjusted[2] == pytest.approx(0.08)  # m = 3
    assert adjusted[3] == pytest.approx(0.9)


def test_holm_caps_at_one_and_agrees_with_the_step_down_on_random_lists():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ps = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 12))))
        assert [p <= ALPHA for p in holm(ps)] == _holm_by_hand(ps, ALPHA)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def _power_reference(delta: float, sd: float, n: int) -> float:
    crit = sps.t.ppf(1 - ALPHA / 2, n - 1)
    nc = delta / (sd / math.sqrt(n))
    lower = sps.nct.cdf(-crit, n - 1, nc)  # scipy gives NaN far out in this tail (nc >~ 8), where it is ~0
    return sps.nct.sf(crit, n - 1, nc) + (0.0 if np.isnan(lower) else lower)


@pytest.mark.parametrize("delta,sd", [(0.3, 0.5), (-0.8, 1.1), (3.7, 2.0), (0.5, 0.2), (2.6, NAN_TAIL_SD)])
def test_seeds_needed_matches_a_brute_force_loop(delta, sd):
    assert power(delta, sd, 12) == pytest.approx(_power_reference(delta, sd, 12))
    expected = next((n for n in range(MIN_N, MAX_SEEDS + 1) if _power_reference(delta, sd, n) >= 0.8), None)
    assert seeds_needed(delta, sd) == expected


def test_seeds_needed_gpower_table():
    """G*Power (one-sample / matched-pairs t, two-tailed, alpha 0.05, power 0.8): d = 0.5 -> 34 (actual power
    0.808), d = 0.8 -> 15, d = 1.0 -> 10."""
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(0.8, 1.0) == 15 and seeds_needed(-1.0, 1.0) == 10
    assert power(0.5, 1.0, 34) == pytest.approx(0.8078, abs=1e-4)


def test_seeds_needed_edge_cases():
    assert seeds_needed(0.1, 5.0) is None  # more than MAX_SEEDS
    assert seeds_needed(0.0, 1.0) is None  # no effect is never resolved
    assert seeds_needed(0.4, 0.0) == MIN_N  # no spread: the smallest testable n
    assert seeds_needed(0.4, 1e-9) == MIN_N  # huge noncentrality (scipy's nct gives nan there)
    assert power(2.6, NAN_TAIL_SD, 3) == 1.0  # nc 29.5: scipy's nct.cdf of the lower tail is nan there
    assert seeds_needed(math.nan, 1.0) is None and seeds_needed(0.4, math.nan) is None


def test_row_pairs_previous_and_baseline():
    assert row_pairs(["T5-1", "T5-2", "T5-3"]) == [
        ("T5-2", "T5-1", "previous = baseline"), ("T5-3", "T5-2", "previous"), ("T5-3", "T5-1", "baseline")]
    assert row_pairs(["T5-1"]) == []
