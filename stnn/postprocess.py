"""STNeuroNet post-processing: probability maps -> one set of neuron masks.

The paper's procedure (Part A, "Inference and post-processing"), in order:

1. binarise each per-window probability map at ``threshold`` (``p >= thr``);
2. per map, label 4-connected components; a component larger than the
   average neuron area (107.5 um^2 for ABO) is split with a watershed on its
   (smoothed) distance transform;
3. drop regions with area <= ``min_area`` px (strict ``>`` keeps, as the
   authors' code);
4. fuse across windows: masks whose centres of mass are closer than 4 um are
   one neuron, and the member whose area is closest to the group's mean area
   is kept;
5. remove every mask ``m_i`` with ``|m_i & m_j| / |m_j| > 0.75`` for another
   mask ``m_j`` (``m_i`` encompasses another neuron);
6. split each final mask into 8-connected pieces and keep the pieces with
   more than ``min_area`` px.

Deviations from the authors' MATLAB code (spec Part B section 6), on purpose:

* a map with a single connected component yields it (their ``max(CC) > 1``
  test returned nothing for such a map);
* the watershed runs with the component as its mask, so there is no
  background basin and no basin label is skipped (they dropped label 1,
  assuming it was the background, which loses a neuron when it was not);
* the fusion radius is the paper's 4 um everywhere (their code used 5 px in
  the matching step and sqrt(5) px in a second duplicate pass, and its
  matching stored indices into a reduced list); groups are the connected
  components of the "closer than 4 um, from different windows" graph;
* encompassing masks are removed from the largest down, and a mask is only
  removed for covering a mask that is still kept, so two near-identical masks
  that cover each other lose only the larger one (their final pass removed
  both);
* pieces smaller than 10 px (``bwareaopen``) need no separate pass: step 6
  keeps only pieces > ``min_area``.

All areas are in pixels; :meth:`PostprocessConfig.for_pixel_size` converts
physical sizes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from datasets.errors import InputError
from datasets.masks import Masks

__all__ = [
    "PostprocessConfig",
    "ABO_UM_PER_PX",
    "ABO_AVG_AREA_UM2",
    "DEFAULT_MIN_AREA_PX",
    "candidate_regions",
    "finalize",
    "postprocess",
    "fuse_windows",
    "remove_encompassing",
    "split_pieces",
]

logger = logging.getLogger(__name__)

#: Pixel size of the ABO recordings, the reference for the px defaults (um).
ABO_UM_PER_PX = 0.78
#: Average ABO neuron area (paper), above which a component is split (um^2).
ABO_AVG_AREA_UM2 = 107.5
#: Minimum area of the authors' "All" ABO network (px at 0.78 um/px).
DEFAULT_MIN_AREA_PX = 75.0
#: Probability threshold of the authors' "All" ABO network.
DEFAULT_THRESHOLD = 0.98

_FOUR = ndi.generate_binary_structure(2, 1)
_EIGHT = ndi.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class PostprocessConfig:
    """Parameters of :func:`postprocess` (areas in px, distances in um).

    Attributes
    ----------
    threshold : float
        Probability threshold, ``p >= threshold`` is foreground (tuned on the
        training set; default: the authors' ABO optimum 0.98).
    min_area : float
        Regions and final pieces need ``area > min_area`` px (authors' ABO
        optimum 75 px at 0.78 um/px).
    um_per_px : float
        Pixel size, for the um quantities below.
    avg_area_um2 : float
        Components larger than this are split by the watershed (107.5 um^2
        for ABO; the authors' code used round(pi (5.85/0.78)^2) = 177 px =
        107.7 um^2).
    merge_distance_um : float
        Masks of different windows whose centres are closer than this are
        one neuron (4 um).
    encompass_ratio : float
        ``theta_p``: a mask covering more than this fraction of another mask
        is removed (0.75).
    smooth_px : int
        Width of the box filter applied to the distance transform before the
        watershed (authors: 5x5, zero padding). 0 or 1: no smoothing.
    h_maxima : float
        Markers of the watershed: regional maxima of the smoothed distance
        (``0``, what MATLAB's ``watershed`` on ``-D`` uses) or h-maxima of
        height ``h`` px (fewer, more robust markers).
    """

    threshold: float = DEFAULT_THRESHOLD
    min_area: float = DEFAULT_MIN_AREA_PX
    um_per_px: float = ABO_UM_PER_PX
    avg_area_um2: float = ABO_AVG_AREA_UM2
    merge_distance_um: float = 4.0
    encompass_ratio: float = 0.75
    smooth_px: int = 5
    h_maxima: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.threshold <= 1.0):
            raise InputError(f"threshold must be within [0, 1], got {self.threshold}")
        if not (self.min_area >= 0):
            raise InputError(f"min_area must be >= 0 px, got {self.min_area}")
        if not (self.um_per_px > 0 and self.avg_area_um2 > 0 and self.merge_distance_um >= 0):
            raise InputError(
                "um_per_px and avg_area_um2 must be > 0 and merge_distance_um >= 0, got "
                f"{self.um_per_px}, {self.avg_area_um2}, {self.merge_distance_um}"
            )
        if not (0.0 < self.encompass_ratio <= 1.0):
            raise InputError(f"encompass_ratio must be within (0, 1], got {self.encompass_ratio}")
        if self.smooth_px < 0 or self.h_maxima < 0:
            raise InputError(f"smooth_px and h_maxima must be >= 0, got {self.smooth_px}, {self.h_maxima}")

    @classmethod
    def for_pixel_size(
        cls,
        um_per_px: float,
        threshold: float = DEFAULT_THRESHOLD,
        min_area_at_abo: float = DEFAULT_MIN_AREA_PX,
        **kwargs,
    ) -> PostprocessConfig:
        """Config with ``min_area`` scaled from px at 0.78 um/px to px at ``um_per_px``.

        The authors scaled their ABO minimum areas the same way for
        Neurofinder (``minA * (0.78 / px)^2``).
        """
        if not um_per_px > 0:
            raise InputError(f"um_per_px must be > 0, got {um_per_px}")
        return cls(
            threshold=threshold,
            min_area=min_area_at_abo * (ABO_UM_PER_PX / um_per_px) ** 2,
            um_per_px=um_per_px,
            **kwargs,
        )

    @property
    def avg_area_px(self) -> float:
        """Average neuron area in px."""
        return self.avg_area_um2 / self.um_per_px**2

    @property
    def merge_distance_px(self) -> float:
        """Fusion radius in px."""
        return self.merge_distance_um / self.um_per_px


# -- per-window segmentation -------------------------------------------------------


def _watershed_component(comp: np.ndarray, smooth_px: int, h: float) -> np.ndarray:
    """Split one binary component (cropped with a margin) into basins; ridge pixels get 0."""
    from skimage.morphology import h_maxima, local_maxima
    from skimage.segmentation import watershed

    dist = ndi.distance_transform_edt(comp)
    if smooth_px > 1:
        # Zero padding as MATLAB imfilter; the crop margin keeps the frame edge out of it.
        dist = ndi.uniform_filter(dist, size=int(smooth_px), mode="constant", cval=0.0)
    dist[~comp] = 0.0
    peaks = h_maxima(dist, h) if h > 0 else local_maxima(dist, connectivity=2)
    markers, n_markers = ndi.label(np.asarray(peaks, bool) & comp, structure=_EIGHT)
    if n_markers <= 1:
        return comp.astype(np.int32)
    # 8-connected flooding as MATLAB's watershed; the ridge line (label 0) is dropped as theirs.
    return watershed(-dist, markers, mask=comp, connectivity=2, watershed_line=True).astype(np.int32)


def candidate_regions(prob: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """Label image of the candidate regions of one probability map (steps 1-2, no area filter).

    Parameters
    ----------
    prob : np.ndarray
        ``(H, W)`` neuron probability.
    config : PostprocessConfig
        Uses ``threshold``, ``avg_area_um2``/``um_per_px``, ``smooth_px``, ``h_maxima``.

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32, 0 = background, regions 1..n (disjoint). The area
        filter is left to :func:`finalize`, so that tuning can re-use one
        labelling for every ``min_area``.
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise InputError(f"a probability map must be 2-D (H, W), got shape {prob.shape}")
    binary = prob >= config.threshold
    labels, n = ndi.label(binary, structure=_FOUR)
    if n == 0:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(areas[1:] > config.avg_area_px) + 1
    if big.size == 0:
        return labels.astype(np.int32)
    out = labels.astype(np.int32)
    next_label = n + 1
    margin = max(int(config.smooth_px), 1)
    slices = ndi.find_objects(labels)
    h, w = labels.shape
    for lab in big:
        sl = slices[lab - 1]
        r0, r1 = max(sl[0].start - margin, 0), min(sl[0].stop + margin, h)
        c0, c1 = max(sl[1].start - margin, 0), min(sl[1].stop + margin, w)
        comp = labels[r0:r1, c0:c1] == lab
        # Pad so that the distance transform sees background beyond the frame edge too.
        padded = np.pad(comp, margin)
        basins = _watershed_component(padded, config.smooth_px, config.h_maxima)[margin:-margin, margin:-margin]
        n_b = int(basins.max())
        if n_b <= 1:
            continue
        view = out[r0:r1, c0:c1]
        view[comp] = 0  # ridge pixels become background, as MATLAB's watershed
        # Basin 1 keeps the component's label; the others get new labels.
        new = np.where(basins == 1, lab, np.where(basins > 1, basins - 2 + next_label, 0))
        view[comp & (basins > 0)] = new[comp & (basins > 0)]
        next_label += n_b - 1
    return _relabel(out)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive labels 1..n (drops labels that vanished)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def _window_masks(labels: np.ndarray) -> Masks:
    return Masks.from_label_image(labels)


# -- fusion and clean-up ----------------------------------------------------------


def fuse_windows(masks: Masks, window: np.ndarray, merge_px: float) -> np.ndarray:
    """Indices of the masks kept after fusing duplicates across windows.

    Masks of *different* windows whose centres of mass are closer than
    ``merge_px`` are linked; each connected group keeps the member whose area
    is closest to the group's mean area (ties: the earliest). Masks of one
    window are never linked directly, since one map's regions are distinct.

    Parameters
    ----------
    masks : Masks
        All windows' masks, concatenated.
    window : np.ndarray
        ``(N,)`` window index of each mask.
    merge_px : float
        Strict distance threshold in px.

    Returns
    -------
    np.ndarray
        Sorted indices into ``masks``.
    """
    n = masks.n
    if n <= 1 or merge_px <= 0:
        return np.arange(n)
    cent = masks.centroids
    pairs = cKDTree(cent).query_pairs(r=merge_px, output_type="ndarray")
    if pairs.size:
        d = np.linalg.norm(cent[pairs[:, 0]] - cent[pairs[:, 1]], axis=1)
        pairs = pairs[(d < merge_px) & (window[pairs[:, 0]] != window[pairs[:, 1]])]
    if pairs.size == 0:
        return np.arange(n)
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    areas = masks.areas.astype(np.float64)
    mean_area = np.bincount(group, weights=areas, minlength=n_groups) / np.bincount(group, minlength=n_groups)
    gap = np.abs(areas - mean_area[group])
    # lexsort: by group, then gap, then index -> the first row of each group is its keeper.
    order = np.lexsort((np.arange(n), gap, group))
    first = np.ones(n, bool)
    first[1:] = group[order][1:] != group[order][:-1]
    return np.sort(order[first])


def remove_encompassing(masks: Masks, ratio: float = 0.75) -> np.ndarray:
    """Indices of the masks kept after removing masks that encompass another one.

    ``m_i`` is removed when ``|m_i & m_j| / |m_j| > ratio`` for a kept
    ``m_j`` (``j != i``). Masks are visited from the largest down, so of two
    masks covering each other only the larger goes (the authors' final pass
    removed both).

    Returns
    -------
    np.ndarray
        Sorted indices into ``masks``.
    """
    n = masks.n
    if n <= 1:
        return np.arange(n)
    i, j, inter = masks.overlaps(masks)
    off = i != j
    i, j, inter = i[off], j[off], inter[off]
    covers = inter / masks.areas[j] > ratio
    i, j = i[covers], j[covers]
    if i.size == 0:
        return np.arange(n)
    covered_by_i: dict[int, list[int]] = {}
    for a, b in zip(i.tolist(), j.tolist()):
        covered_by_i.setdefault(a, []).append(b)
    keep = np.ones(n, bool)
    for a in sorted(covered_by_i, key=lambda k: (-masks.areas[k], -k)):
        if any(keep[b] for b in covered_by_i[a]):
            keep[a] = False
    return np.flatnonzero(keep)


def split_pieces(masks: Masks, min_area: float) -> Masks:
    """Split every mask into 8-connected pieces and keep pieces with area > ``min_area``."""
    h, w = masks.shape
    coords: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(masks.n):
        r, c = masks.coordinates(k)
        if r.size <= min_area:
            continue
        r0, c0 = r.min(), c.min()
        box = np.zeros((r.max() - r0 + 1, c.max() - c0 + 1), bool)
        box[r - r0, c - c0] = True
        lab, n_pieces = ndi.label(box, structure=_EIGHT)
        if n_pieces == 1:
            coords.append((r, c))
            continue
        sizes = np.bincount(lab.ravel(), minlength=n_pieces + 1)
        for p in np.flatnonzero(sizes[1:] > min_area) + 1:
            pr, pc = np.nonzero(lab == p)
            coords.append((pr + r0, pc + c0))
    return Masks.from_coordinates(coords, (h, w)) if coords else Masks.empty((h, w))


def finalize(candidates: Sequence[np.ndarray | Masks], config: PostprocessConfig) -> Masks:
    """Steps 3-6: area filter, fusion across windows, encompassing removal, piece split.

    Parameters
    ----------
    candidates : sequence of label images or Masks
        One per window, from :func:`candidate_regions`.
    config : PostprocessConfig
        Uses ``min_area``, ``merge_distance_um``, ``encompass_ratio``.

    Returns
    -------
    Masks
    """
    if len(candidates) == 0:
        raise InputError("no probability maps to post-process")
    per_window = [c if isinstance(c, Masks) else _window_masks(c) for c in candidates]
    shape = per_window[0].shape
    mats, wins = [], []
    for k, m in enumerate(per_window):
        if m.shape != shape:
            raise InputError(f"window {k} is {m.shape}, window 0 is {shape}")
        sel = np.flatnonzero(m.areas > config.min_area)
        mats.append(m.matrix[sel])
        wins.append(np.full(sel.size, k))
    allm = Masks(sp.vstack(mats, format="csr"), shape)
    window = np.concatenate(wins)
    if allm.n == 0:
        return Masks.empty(shape)
    kept = fuse_windows(allm, window, config.merge_distance_px)
    fused = allm.subset(kept)
    kept2 = remove_encompassing(fused, config.encompass_ratio)
    final = split_pieces(fused.subset(kept2), config.min_area)
    logger.debug(
        "post-processing: %d regions -> %d after fusion -> %d after overlap removal -> %d pieces",
        allm.n,
        fused.n,
        kept2.size,
        final.n,
    )
    return final


def postprocess(prob_maps: np.ndarray, config: PostprocessConfig | None = None, **overrides) -> Masks:
    """Neuron masks from a stack of per-window probability maps.

    Parameters
    ----------
    prob_maps : np.ndarray
        ``(n_windows, H, W)`` (or one ``(H, W)`` map) of neuron probabilities.
    config : PostprocessConfig, optional
        Defaults to the ABO values; ``overrides`` replace single fields
        (e.g. ``threshold=0.9, min_area=40``).

    Returns
    -------
    Masks
        Over the ``(H, W)`` frame of the maps.
    """
    cfg = config or PostprocessConfig()
    if overrides:
        cfg = replace(cfg, **overrides)
    maps = np.asarray(prob_maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise InputError(f"probability maps must be (n_windows, H, W), got shape {maps.shape}")
    if not np.isfinite(maps).all():
        raise InputError("probability maps hold non-finite values")
    return finalize([candidate_regions(p, cfg) for p in maps], cfg)


def disk_area_px(diameter_um: float, um_per_px: float) -> float:
    """Area in px of a disk of the given diameter (helper for configs)."""
    return math.pi * (diameter_um / 2 / um_per_px) ** 2
