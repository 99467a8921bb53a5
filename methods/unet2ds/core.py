"""Summary image, training target, post-processing and a small F1 for UNet2DS.

* Summary image: the temporal mean of the whole movie (read in chunks),
  standardised to zero mean and unit SD (:func:`summary_image`), as in
  deep-calcium's ``_summarize_series`` at commit 2b15d1b.
* Training target (:func:`target_mask`): deep-calcium's ``_summarize_mask``,
  the union of the neuron masks less every pixel claimed by two or more masks
  and less the 3x3 neighbourhoods where two different neurons touch, so that
  adjacent neurons stay separate components. (Their loop deletes pixels while
  it scans, so its result depends on the scan order; this is the
  order-independent version of the same rule.)
* Post-processing (:func:`probability_to_masks`): deep-calcium rounds the
  probability map (threshold 0.5) and splits it into connected components
  (``skimage.measure.label``, 8-connectivity) for its Neurofinder
  submission. Here the threshold is a parameter (chosen on the training set
  by ``train``) and components smaller than ``min_area_px`` are dropped
  (deep-calcium has no size filter: ``min_area_px = 0``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from datasets.masks import Masks
from datasets.matching import assign
from datasets.matching import f1_score as rates
from methods.unet2ds.model import normalize_summary

__all__ = ["summary_image", "target_mask", "probability_to_masks", "simple_f1"]

_EIGHT = np.ones((3, 3), bool)


def summary_image(movie, chunk: int = 256) -> tuple[np.ndarray, int]:
    """The standardised mean image of a movie and the number of frames read."""
    acc = np.zeros(movie.frame_shape, np.float64)
    n = 0
    for block in movie.chunks(chunk):
        acc += block.sum(axis=0, dtype=np.float64)
        n += block.shape[0]
    return normalize_summary(acc / max(n, 1)), n


def target_mask(masks: Masks) -> np.ndarray:
    """Binary (H, W) training target: single-owner pixels away from neuron-neuron borders."""
    h, w = masks.shape
    count = np.asarray(masks.matrix.sum(axis=0)).reshape(h, w)
    labels = masks.to_label_image() if masks.n else np.zeros((h, w), np.int64)
    single = count == 1
    lab = np.where(single, labels, 0).astype(np.int64)
    big = np.iinfo(np.int64).max
    hi = ndi.maximum_filter(lab, footprint=_EIGHT, mode="constant", cval=0)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, big), footprint=_EIGHT, mode="constant", cval=big)
    conflict = single & (lo < hi)  # a single-owner pixel whose 3x3 neighbourhood holds two neurons
    removed = ndi.binary_dilation(conflict, structure=_EIGHT)
    return (single & ~removed).astype(np.uint8)


def probability_to_masks(prob: np.ndarray, threshold: float = 0.5, min_area_px: float = 0.0) -> Masks:
    """Threshold a probability map, split it into 8-connected components, drop the small ones."""
    binary = np.asarray(prob) >= threshold
    labels, n = ndi.label(binary, structure=_EIGHT)
    if n and min_area_px > 0:
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        small = areas < min_area_px
        small[0] = False
        labels[small[labels]] = 0
    return Masks.from_label_image(labels)


def simple_f1(gt: Masks, pred: Masks, iou: float = 0.5) -> float:
    """F1 under the suite's matching rule (IoU >= ``iou`` or containment), for validation during training.

    Uses :func:`datasets.matching.assign`, the core that ``bench.metrics.match`` is built on
    (``methods`` does not import ``bench``).
    """
    tp = assign(gt, pred, iou=iou, rule="stnn")[0].size
    return rates(tp, gt.n, pred.n)[2]
