"""Statistics of per-recording scores: Wilcoxon tests, Holm correction, effect sizes.

The paper compares methods with two-sided Wilcoxon rank-sum tests on
per-video F1 (n = 10 per group); SUNS uses the paired signed-rank test. With
so few recordings the smallest attainable p-value is large (0.0020 for a
paired test on 10 recordings), so every comparison reports its exact-p floor
and an effect size beside p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats as sps

from datasets.errors import InputError

__all__ = [
    "Comparison",
    "rank_sum",
    "signed_rank",
    "holm",
    "exact_p_floor",
    "compare_methods",
    "mean_sd",
    "stars",
]


@dataclass(frozen=True)
class Comparison:
    """One two-sided test between methods ``a`` and ``b``."""

    a: str
    b: str
    test: str
    n_a: int
    n_b: int
    statistic: float
    p: float
    p_holm: float
    effect: float
    effect_name: str
    p_floor: float


def _clean(x: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence of scores")
    return arr[np.isfinite(arr)]


def rank_sum(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) test.

    Returns
    -------
    U, p, effect
        U statistic of ``a``, p-value (exact when there are no ties and both
        samples have at most 50 values, asymptotic with tie correction
        otherwise), and the rank-biserial
        correlation ``2U/(n_a n_b) - 1`` in [-1, 1] (positive: ``a`` larger).
    """
    x, y = _clean(a, "a"), _clean(b, "b")
    if x.size == 0 or y.size == 0:
        return float("nan"), float("nan"), float("nan")
    # scipy's "auto" goes exact only up to 8 values; the paper's n = 10 is small
    # enough for the exact distribution, which ties make invalid.
    ties = np.unique(np.concatenate([x, y])).size < x.size + y.size
    method = "exact" if not ties and max(x.size, y.size) <= 50 else "asymptotic"
    res = sps.mannwhitneyu(x, y, alternative="two-sided", method=method)
    effect = 2 * res.statistic / (x.size * y.size) - 1
    return float(res.statistic), float(res.pvalue), float(effect)


def signed_rank(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Two-sided Wilcoxon signed-rank test of paired scores.

    Returns
    -------
    W, p, effect
        W statistic, p-value, and the matched-pairs rank-biserial correlation
        (positive: ``a`` larger). Pairs with a NaN are dropped; all-zero
        differences give p = 1.
    """
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape:
        raise InputError(f"paired test needs equal lengths, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0, 1.0, 0.0
    res = sps.wilcoxon(x[keep], y[keep], alternative="two-sided", zero_method="wilcox")
    ranks = sps.rankdata(np.abs(nz))
    effect = (ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum()
    return float(res.statistic), float(res.pvalue), float(effect)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN), as statsmodels' ``multipletests(method='holm')``."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def exact_p_floor(n_a: int, n_b: int | None = None) -> float:
    """Smallest two-sided p a Wilcoxon test can give.

    ``exact_p_floor(n)``: signed-rank on n pairs, ``2 / 2**n``;
    ``exact_p_floor(n_a, n_b)``: rank-sum, ``2 / C(n_a + n_b, n_a)``.
    """
    if n_b is None:
        return min(1.0, 2.0 / 2**n_a) if n_a > 0 else 1.0
    if n_a <= 0 or n_b <= 0:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def compare_methods(scores: dict[str, Sequence[float]], *, paired: bool = False) -> list[Comparison]:
    """All pairwise two-sided tests between methods, Holm-corrected together.

    Parameters
    ----------
    scores : dict
        Method name -> per-recording scores (for ``paired``, in the same recording order).
    paired : bool
        Signed-rank (paired by recording) instead of rank-sum.
    """
    names = list(scores)
    raw = []
    for a, b in combinations(names, 2):
        xa, xb = scores[a], scores[b]
        if paired:
            stat, p, eff = signed_rank(xa, xb)
            n = int(np.sum(np.isfinite(np.asarray(xa, float)) & np.isfinite(np.asarray(xb, float))))
            raw.append((a, b, "signed-rank", n, n, stat, p, eff, "matched rank-biserial", exact_p_floor(n)))
        else:
            stat, p, eff = rank_sum(xa, xb)
            na, nb = _clean(xa, a).size, _clean(xb, b).size
            raw.append((a, b, "rank-sum", na, nb, stat, p, eff, "rank-biserial", exact_p_floor(na, nb)))
    adjusted = holm([r[6] for r in raw])
    return [
        Comparison(a, b, test, na, nb, stat, p, float(padj), eff, ename, floor)
        for (a, b, test, na, nb, stat, p, eff, ename, floor), padj in zip(raw, adjusted)
    ]


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample SD (ddof 1; 0 for one value) and count of the finite values."""
    x = _clean(values, "values")
    if x.size == 0:
        return float("nan"), float("nan"), 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, int(x.size)


def stars(p: float) -> str:
    """The paper's marks: ``**`` for P < 0.005, ``*`` for P < 0.05."""
    if not np.isfinite(p):
        return ""
    return "**" if p < 0.005 else "*" if p < 0.05 else ""
