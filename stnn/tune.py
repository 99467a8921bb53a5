"""Choose the post-processing threshold and minimum area by mean training F1 (the paper's procedure).

For every probability threshold, each map is labelled and split once
(:func:`stnn.postprocess.candidate_regions` does not depend on the minimum
area); every minimum area then only re-runs the cheap fusion and clean-up
(:func:`stnn.postprocess.finalize`). This is exact, unlike the authors'
shortcut (separation with the smallest ``minArea``, then only the final
piece filter per ``minArea``).

Default grids (spec Part B section 6, with the floating-point artefact of
``np.arange(.96, 1, .02)`` removed, which added a threshold of 1.0, and the
0.95 that ``np.arange(.5, .95, .05)`` left out restored): thresholds 0.50,
0.55, ..., 0.95, 0.96, 0.98; minimum areas 15, 20, 25, 40, 55, 70, 85 px at
0.78 um/px, scaled by pixel area to other pixel sizes.

F1 comes from the suite's one matcher, :func:`datasets.matching.assign`
with the ``stnn`` rule (IoU >= 0.5 or containment; Hungarian assignment), the
same core ``bench.metrics.match`` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.matching import assign
from datasets.matching import f1_score as rates

from .postprocess import ABO_UM_PER_PX, PostprocessConfig, candidate_regions, finalize

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_MIN_AREAS_ABO",
    "TuneResult",
    "default_min_areas",
    "match_count",
    "f1_score",
    "tune",
]

logger = logging.getLogger(__name__)

#: Probability thresholds searched by default.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10)) + (0.96, 0.98)
#: Minimum areas searched by default, in px at 0.78 um/px.
DEFAULT_MIN_AREAS_ABO: tuple[float, ...] = (15, 20, 25, 40, 55, 70, 85)


def default_min_areas(um_per_px: float) -> tuple[float, ...]:
    """The default minimum-area grid in px at ``um_per_px`` (scaled by pixel area)."""
    if not um_per_px > 0:
        raise InputError(f"um_per_px must be > 0, got {um_per_px}")
    scale = (ABO_UM_PER_PX / um_per_px) ** 2
    return tuple(float(a) * scale for a in DEFAULT_MIN_AREAS_ABO)


def match_count(gt: Masks, pred: Masks, iou: float = 0.5) -> int:
    """Number of true positives under the STNeuroNet matching rule (IoU or containment)."""
    return int(assign(gt, pred, iou=iou, rule="stnn")[0].size)


def f1_score(gt: Masks, pred: Masks, iou: float = 0.5) -> tuple[float, float, float]:
    """``(recall, precision, F1)`` of ``pred`` against ``gt`` (0 where undefined)."""
    return rates(match_count(gt, pred, iou), gt.n, pred.n)


@dataclass(frozen=True)
class TuneResult:
    """Best post-processing parameters and the full F1 table.

    Attributes
    ----------
    threshold, min_area : float
        The best pair (``min_area`` in px).
    f1 : float
        Mean F1 over the recordings at the best pair.
    thresholds, min_areas : tuple of float
        The grids.
    table : np.ndarray
        ``(len(thresholds), len(min_areas), n_recordings)`` F1 values.
    recordings : tuple of str
        Names, in the table's order.
    """

    threshold: float
    min_area: float
    f1: float
    thresholds: tuple[float, ...] = ()
    min_areas: tuple[float, ...] = ()
    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)), repr=False)
    recordings: tuple[str, ...] = ()

    def __iter__(self):
        # Unpacks as (threshold, min_area, f1).
        return iter((self.threshold, self.min_area, self.f1))


def tune(
    prob_maps_by_recording: Mapping[str, np.ndarray],
    gt_by_recording: Mapping[str, Masks],
    thresholds: Sequence[float] | None = None,
    min_areas: Sequence[float] | None = None,
    um_per_px: float = ABO_UM_PER_PX,
    config: PostprocessConfig | None = None,
    iou: float = 0.5,
) -> TuneResult:
    """Grid search of ``(threshold, min_area)`` maximising the mean F1 over recordings.

    Parameters
    ----------
    prob_maps_by_recording : mapping of str to np.ndarray
        ``(n_windows, H, W)`` probability maps per recording.
    gt_by_recording : mapping of str to Masks
        Ground truth per recording (same keys, same frames).
    thresholds : sequence of float, optional
        Default :data:`DEFAULT_THRESHOLDS`.
    min_areas : sequence of float, optional
        In px; default :func:`default_min_areas` at ``um_per_px``.
    um_per_px : float
        Pixel size of the recordings.
    config : PostprocessConfig, optional
        The other post-processing parameters.
    iou : float
        Matching IoU threshold (0.5).

    Returns
    -------
    TuneResult
        Unpacks as ``(threshold, min_area, f1)``. Ties go to the higher
        threshold, then the larger minimum area (fewer, surer detections).
    """
    names = tuple(prob_maps_by_recording)
    if not names:
        raise InputError("tuning needs at least one recording")
    missing = [n for n in names if n not in gt_by_recording]
    if missing:
        raise InputError(f"no ground truth for recordings {missing}")
    thr = tuple(float(t) for t in (thresholds if thresholds is not None else DEFAULT_THRESHOLDS))
    areas = tuple(float(a) for a in (min_areas if min_areas is not None else default_min_areas(um_per_px)))
    if not thr or not areas:
        raise InputError("the threshold and minimum-area grids must not be empty")
    base = replace(config or PostprocessConfig(), um_per_px=float(um_per_px))
    table = np.zeros((len(thr), len(areas), len(names)))
    for r, name in enumerate(names):
        maps = np.asarray(prob_maps_by_recording[name])
        if maps.ndim == 2:
            maps = maps[None]
        gt = gt_by_recording[name]
        if gt.shape != maps.shape[1:]:
            raise InputError(f"recording {name}: maps are {maps.shape[1:]}, ground truth is {gt.shape}")
        for a, t in enumerate(thr):
            cfg = replace(base, threshold=t)
            cands = [candidate_regions(p, cfg) for p in maps]
            for b, m in enumerate(areas):
                pred = finalize(cands, replace(cfg, min_area=m))
                table[a, b, r] = f1_score(gt, pred, iou)[2]
    mean = table.mean(axis=2)
    # Highest mean F1; ties -> highest threshold, then largest min area (last in flattened order).
    flat = mean.ravel()
    best = int(np.flatnonzero(flat == flat.max())[-1])
    a, b = np.unravel_index(best, mean.shape)
    result = TuneResult(thr[a], areas[b], float(mean[a, b]), thr, areas, table, names)
    logger.info("tuned: threshold %.2f, min area %.1f px, mean F1 %.3f", result.threshold, result.min_area, result.f1)
    return result
