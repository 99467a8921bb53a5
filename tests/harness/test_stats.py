import numpy as np
import pytest
from scipy import stats as sps

from bench.stats import compare_methods, exact_p_floor, holm, mean_sd, rank_sum, signed_rank, stars

A = [0.841, 0.822, 0.863, 0.854, 0.835, 0.876, 0.817, 0.848, 0.869, 0.850]  # no ties: exact tests
B = [0.721, 0.752, 0.703, 0.744, 0.715, 0.736, 0.767, 0.698, 0.729, 0.740]


def test_rank_sum_matches_scipy_and_floor():
    u, p, eff = rank_sum(A, B)
    ref = sps.mannwhitneyu(A, B, alternative="two-sided", method="exact")
    assert (u, p) == (ref.statistic, ref.pvalue)
    assert eff == 1.0  # every A above every B
    tied = rank_sum([1, 1, 2], [3, 4, 4])[1]
    assert tied == pytest.approx(sps.mannwhitneyu([1, 1, 2], [3, 4, 4], method="asymptotic").pvalue)
    assert p == pytest.approx(exact_p_floor(10, 10))  # complete separation hits the exact floor
    assert exact_p_floor(10, 10) == pytest.approx(2 / 184756)


def test_signed_rank_matches_scipy_and_floor():
    w, p, eff = signed_rank(A, B)
    ref = sps.wilcoxon(A, B)
    assert (w, p) == (ref.statistic, ref.pvalue)
    assert eff == 1.0
    assert exact_p_floor(10) == pytest.approx(0.001953125)  # 2 / 2**10, the paper's n = 10
    assert exact_p_floor(9) == pytest.approx(0.00390625)
    assert signed_rank([1, 2], [1, 2]) == (0.0, 1.0, 0.0)


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    ref = multitest.multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), ref)
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02)


def test_compare_methods_corrects_all_pairs():
    c = compare_methods({"a": A, "b": B, "c": [x - 0.01 for x in A]})
    assert len(c) == 3
    raw = [x.p for x in c]
    np.testing.assert_allclose([x.p_holm for x in c], holm(raw))
    paired = compare_methods({"a": A, "b": B}, paired=True)
    assert paired[0].test == "signed-rank" and paired[0].p_floor == pytest.approx(2 / 1024)


def test_mean_sd_and_stars():
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    assert mean_sd([np.nan])[2] == 0
    assert (stars(0.001), stars(0.01), stars(0.2), stars(np.nan)) == ("**", "*", "", "")
