"""Scoring detected masks against ground truth.

:func:`match` is the paper's metric (Eqs. 10-14): a distance between every
GT and detected mask, 1 - IoU for pairs with IoU at or above a threshold
(0.5), optionally 0 when one mask contains the other (the STNeuroNet rule),
infinite otherwise; a Hungarian assignment over the finite pairs gives the
true positives. :func:`neurofinder_combined` is the Neurofinder challenge's
centre-distance metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from scipy.spatial.distance import cdist

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.matching import assign, f1_score

__all__ = ["MatchOptions", "Score", "match", "CombinedScore", "neurofinder_combined", "f1_score"]

Rule = Literal["stnn", "suns"]


@dataclass(frozen=True)
class MatchOptions:
    """How masks are matched; recorded with every score.

    Attributes
    ----------
    iou : float
        Minimum IoU of a matching pair (0.5 in the paper).
    rule : {"stnn", "suns"}
        ``"stnn"``: distance 0 also when one mask contains the other (the
        STNeuroNet evaluation, Eq. 14); ``"suns"``: IoU alone.
    centroid_gate : float or None
        If set, pairs whose centroids are farther apart than this many pixels
        never match (CaImAn's comparison gates on 10 px).
    """

    iou: float = 0.5
    rule: Rule = "stnn"
    centroid_gate: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.iou <= 1.0:
            raise InputError(f"IoU threshold must be in (0, 1], got {self.iou}")
        if self.rule not in ("stnn", "suns"):
            raise InputError(f"matching rule must be 'stnn' or 'suns', got {self.rule!r}")
        if self.centroid_gate is not None and self.centroid_gate <= 0:
            raise InputError(f"centroid gate must be > 0 px, got {self.centroid_gate}")


@dataclass(frozen=True)
class Score:
    """Result of matching detected masks against ground truth.

    Attributes
    ----------
    n_gt, n_pred, tp, fp, fn : int
        Counts; tp = matched pairs.
    recall, precision, f1 : float
        TP/N_GT, TP/N_pred and their harmonic mean; 0 (never NaN) when a
        denominator is zero.
    gt_index, pred_index : ndarray of int
        Matched pairs (same length as ``tp``), sorted by GT index.
    pair_iou : ndarray of float
        IoU of each matched pair.
    fp_index, fn_index : ndarray of int
        Unmatched detections and unmatched GT masks.
    options : MatchOptions
        The matching options used.
    """

    n_gt: int
    n_pred: int
    tp: int
    recall: float
    precision: float
    f1: float
    gt_index: np.ndarray = field(repr=False)
    pred_index: np.ndarray = field(repr=False)
    pair_iou: np.ndarray = field(repr=False)
    fp_index: np.ndarray = field(repr=False)
    fn_index: np.ndarray = field(repr=False)
    options: MatchOptions = field(default_factory=MatchOptions)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_gt - self.tp

    def summary(self) -> dict:
        """Counts, rates and options as a JSON-able dict."""
        return {
            "n_gt": self.n_gt,
            "n_pred": self.n_pred,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "recall": self.recall,
            "precision": self.precision,
            "f1": self.f1,
            "mean_pair_iou": float(self.pair_iou.mean()) if self.tp else 0.0,
            **asdict(self.options),
        }


def match(
    gt: Masks,
    pred: Masks,
    *,
    iou: float = 0.5,
    rule: Rule = "stnn",
    centroid_gate: float | None = None,
) -> Score:
    """Match detected masks to ground truth and count true positives.

    The assignment maximises the number of matched pairs and, among
    assignments with that many, minimises the summed distance; only
    admissible pairs (IoU >= ``iou``, or containment under the ``stnn`` rule,
    within the centroid gate) can match.

    Parameters
    ----------
    gt, pred : Masks
        Ground truth and detections over the same frame.
    iou : float
        Minimum IoU of a match (default 0.5).
    rule : {"stnn", "suns"}
        Whether containment also matches (``"stnn"``, the paper) or IoU alone.
    centroid_gate : float, optional
        Maximum centroid distance of a match, in pixels.

    Returns
    -------
    Score

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((1, 8, 8), bool); a[0, 2:6, 2:6] = True
    >>> match(Masks.from_dense(a), Masks.from_dense(a)).f1
    1.0
    """
    opts = MatchOptions(iou=iou, rule=rule, centroid_gate=centroid_gate)
    gi, gj, piou = assign(gt, pred, iou=iou, rule=rule, centroid_gate=centroid_gate)
    tp = int(gi.size)
    recall, precision, f1 = f1_score(tp, gt.n, pred.n)
    return Score(
        n_gt=gt.n,
        n_pred=pred.n,
        tp=tp,
        recall=recall,
        precision=precision,
        f1=f1,
        gt_index=gi,
        pred_index=gj,
        pair_iou=piou,
        fp_index=np.setdiff1d(np.arange(pred.n), gj),
        fn_index=np.setdiff1d(np.arange(gt.n), gi),
        options=opts,
    )


@dataclass(frozen=True)
class CombinedScore:
    """The Neurofinder challenge's metric.

    ``combined`` is the F1 of centre matching; ``inclusion`` and
    ``exclusion`` are the mean |A∩B|/|A| and |A∩B|/|B| over matched pairs
    (A ground truth, B detection); with no match they are 0 and 1, as in the
    challenge's evaluator.
    """

    recall: float
    precision: float
    combined: float
    inclusion: float
    exclusion: float
    threshold_px: float


def neurofinder_combined(gt: Masks, pred: Masks, *, threshold_px: float = 5.0) -> CombinedScore:
    """Neurofinder's centre-distance metric.

    Each GT mask, in GT order, takes the nearest still-unmatched detected
    centre if it lies strictly closer than ``threshold_px``. The challenge
    server used 5 um: convert with the recording's pixel size.
    """
    if gt.shape != pred.shape:
        raise InputError(f"ground truth frame {gt.shape} differs from the detections' frame {pred.shape}")
    if threshold_px <= 0:
        raise InputError(f"centre-distance threshold must be > 0 px, got {threshold_px}")
    gc, pc = gt.centroids, pred.centroids
    d = cdist(gc, pc) if gt.n and pred.n else np.zeros((gt.n, pred.n))
    d[~np.isfinite(d)] = np.inf  # empty masks have no centre
    taken = np.zeros(pred.n, bool)
    pairs = []
    for g in range(gt.n):
        row = np.where(taken, np.inf, d[g])
        if row.size and row.min() < threshold_px:
            p = int(np.argmin(row))
            taken[p] = True
            pairs.append((g, p))
    recall, precision, combined = f1_score(len(pairs), gt.n, pred.n)
    if pairs:
        gi, pj = (np.asarray(x) for x in zip(*pairs))
        inter = np.asarray(gt.matrix[gi].multiply(pred.matrix[pj]).sum(axis=1)).ravel()
        inclusion = float(np.mean(inter / gt.areas[gi]))
        exclusion = float(np.mean(inter / pred.areas[pj]))
    else:
        inclusion, exclusion = 0.0, 1.0
    return CombinedScore(recall, precision, combined, inclusion, exclusion, float(threshold_px))
