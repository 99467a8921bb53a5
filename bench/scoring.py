"""Scoring a finished unit: once, against every ground truth of its recording, stored with it."""

from __future__ import annotations

from collections.abc import Sequence

from bench.metrics import match, neurofinder_combined
from datasets.masks import Masks
from datasets.records import Recording

__all__ = ["score_masks", "NF_DISTANCE_UM"]

#: The Neurofinder challenge server's centre distance.
NF_DISTANCE_UM = 5.0


def score_masks(rec: Recording, masks: Masks, rule: str, graders: Sequence[str] | None = None) -> dict[str, dict]:
    """Scores of ``masks`` against each ground truth of ``rec`` (default: all of them).

    Returns
    -------
    dict
        grader -> ``n_gt, n_pred, tp, recall, precision, f1, nf_combined`` and
        ``detected`` (indices of the ground-truth neurons matched), JSON-able.
    """
    out: dict[str, dict] = {}
    for g in rec.graders if graders is None else graders:
        gt = rec.ground_truth(g)
        s = match(gt, masks, rule=rule)
        nf = neurofinder_combined(gt, masks, threshold_px=NF_DISTANCE_UM / rec.um_per_px)
        out[g] = {
            "n_gt": int(s.n_gt),
            "n_pred": int(s.n_pred),
            "tp": int(s.tp),
            "recall": float(s.recall),
            "precision": float(s.precision),
            "f1": float(s.f1),
            "nf_combined": float(nf.combined),
            "detected": sorted(int(i) for i in s.gt_index),
        }
    return out
