"""The assignment of detected masks to ground-truth masks (the paper's Eqs. 10-14).

This is the core that every F1 in the suite comes from: ``bench.metrics``
builds its :class:`~bench.metrics.Score` on it, and ``stnn``'s tuning and
validation use it directly (``stnn`` does not import ``bench``).

Distance between a GT and a detected mask: 1 - IoU when IoU reaches the
threshold; 0 when one mask contains the other (the STNeuroNet rule); no
match otherwise (and, optionally, none when centroids are farther apart than
a gate). The assignment maximises the number of matched pairs and, among
assignments with that many, minimises the summed distance.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from datasets.errors import InputError
from datasets.masks import Masks

__all__ = ["assign", "f1_score", "RULES"]

RULES = ("stnn", "suns")


def f1_score(tp: int, n_gt: int, n_pred: int) -> tuple[float, float, float]:
    """Recall, precision and F1 with 0 (not NaN) for empty denominators."""
    recall = tp / n_gt if n_gt else 0.0
    precision = tp / n_pred if n_pred else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    return recall, precision, f1


def _admissible_pairs(gt: Masks, pred: Masks, iou: float, rule: str, centroid_gate: float | None):
    """(i, j, cost, iou) of every pair allowed to match, cost in [0, 1 - iou]."""
    i, j, inter = gt.overlaps(pred)
    a, b = gt.areas[i], pred.areas[j]
    pair_iou = inter / (a + b - inter)
    # Cost 1 - IoU; the tolerance keeps IoU exactly at the threshold admissible
    # despite rounding (e.g. 1 - 0.5 computed as 0.5000000001).
    cost = 1.0 - pair_iou
    ok = pair_iou >= iou - 1e-12
    if rule == "stnn":
        # Empty masks never match: overlaps() only lists pairs sharing pixels
        # (the authors' code let an empty mask "contain" every mask).
        contained = (inter == a) | (inter == b)
        cost = np.where(contained, 0.0, cost)
        ok |= contained
    if centroid_gate is not None:
        d = np.linalg.norm(gt.centroids[i] - pred.centroids[j], axis=1)
        ok &= d <= centroid_gate
    return i[ok], j[ok], cost[ok], pair_iou[ok]


def assign(
    gt: Masks,
    pred: Masks,
    *,
    iou: float = 0.5,
    rule: str = "stnn",
    centroid_gate: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched pairs of GT and detected masks.

    Parameters
    ----------
    gt, pred : Masks
        Over the same frame.
    iou : float
        Minimum IoU of a match, in (0, 1].
    rule : {"stnn", "suns"}
        Whether containment also matches.
    centroid_gate : float, optional
        Maximum centroid distance of a match, in pixels.

    Returns
    -------
    gt_index, pred_index, pair_iou : ndarray
        One entry per matched pair, sorted by GT index.
    """
    if not 0.0 < iou <= 1.0:
        raise InputError(f"IoU threshold must be in (0, 1], got {iou}")
    if rule not in RULES:
        raise InputError(f"matching rule must be 'stnn' or 'suns', got {rule!r}")
    if centroid_gate is not None and centroid_gate <= 0:
        raise InputError(f"centroid gate must be > 0 px, got {centroid_gate}")
    if gt.shape != pred.shape:
        raise InputError(
            f"ground truth frame {gt.shape[0]}x{gt.shape[1]} differs from the detections' frame "
            f"{pred.shape[0]}x{pred.shape[1]}"
        )
    i, j, cost, pair_iou = _admissible_pairs(gt, pred, iou, rule, centroid_gate)
    if i.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    # Solve only over masks that have an admissible partner.
    rows, ri = np.unique(i, return_inverse=True)
    cols, ci = np.unique(j, return_inverse=True)
    # A penalty above the largest possible sum of real costs (each <= 1)
    # makes the assignment maximise the number of admissible pairs first.
    penalty = float(min(rows.size, cols.size) + 1)
    mat = np.full((rows.size, cols.size), penalty)
    mat[ri, ci] = cost
    r, c = linear_sum_assignment(mat)
    real = mat[r, c] < penalty
    r, c = r[real], c[real]
    lookup = np.full((rows.size, cols.size), np.nan)
    lookup[ri, ci] = pair_iou
    gi, gj, piou = rows[r], cols[c], lookup[r, c]
    order = np.argsort(gi, kind="stable")
    return gi[order], gj[order], piou[order]
