"""Fluorescence traces of masks: extraction, neuropil regions, overlap demixing, baselines and PSNR.

One home for what the simulator's ground truth, STNeuroNet's training labels
and the benchmark's PSNR analysis all need. Traces are read from the movie in
frame chunks with one sparse weight matrix, so memory does not grow with the
number of frames.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.stats import norm

from datasets.errors import InputError

__all__ = [
    "dprime_threshold",
    "as_sparse_masks",
    "neuropil_masks",
    "annulus_masks",
    "extract_traces",
    "region_traces",
    "demix",
    "moving_baseline",
    "moving_median",
    "peak_snr",
]

logger = logging.getLogger(__name__)


def dprime_threshold(fs: float, lam: float, p_n: float) -> float:
    """Minimum discriminability ``d'_min`` (paper Eq. 8).

    ``d'_min = Phi^-1(1 - P_N) - Phi^-1(P_N * lam / (fs - lam))``.

    Parameters
    ----------
    fs : float
        Frame rate (Hz) of the traces.
    lam : float
        Mean spike rate (spikes/s); must be below ``fs``.
    p_n : float
        Tolerated false-negative probability.

    Returns
    -------
    float
        3.6539 for the ABO settings (fs 6, lam 2.9, P_N 0.035).
    """
    if not 0 < lam < fs:
        raise InputError(f"need 0 < lam < fs, got lam={lam}, fs={fs}")
    if not 0 < p_n < 1:
        raise InputError(f"p_n must be in (0, 1), got {p_n}")
    q = p_n * lam / (fs - lam)
    if not 0 < q < 1:
        raise InputError(f"p_n * lam / (fs - lam) = {q} is not a probability")
    return float(norm.ppf(1.0 - p_n) - norm.ppf(q))


def as_sparse_masks(masks: Any, frame_shape: tuple[int, int] | None = None) -> tuple[sp.csr_matrix, tuple[int, int]]:
    """Normalise masks to a boolean CSR matrix ``(N, H * W)`` and the frame shape.

    Parameters
    ----------
    masks : Masks, array-like or scipy.sparse matrix
        A :class:`datasets.masks.Masks`, a dense ``(N, H, W)`` stack (non-zero
        = inside) or a sparse ``(N, H * W)`` matrix.
    frame_shape : (H, W), optional
        Required for a bare sparse matrix.

    Returns
    -------
    (csr_matrix, (H, W))
    """
    from datasets.masks import Masks

    if isinstance(masks, Masks):
        if frame_shape is not None and tuple(frame_shape) != masks.shape:
            raise InputError(f"masks are {masks.shape} but frame_shape is {tuple(frame_shape)}")
        return masks.matrix, masks.shape
    if sp.issparse(masks):
        if frame_shape is None:
            raise InputError("sparse masks need frame_shape=(H, W)")
        h, w = (int(s) for s in frame_shape)
        if masks.shape[1] != h * w:
            raise InputError(f"sparse masks have {masks.shape[1]} columns, expected H*W = {h * w}")
        m = sp.csr_matrix(masks, dtype=bool)
        m.eliminate_zeros()
        return m, (h, w)
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise InputError(f"dense masks must be (N, H, W), got shape {arr.shape}")
    if frame_shape is not None and tuple(frame_shape) != arr.shape[1:]:
        raise InputError(f"masks are {arr.shape[1:]} but frame_shape is {tuple(frame_shape)}")
    n, h, w = arr.shape
    return sp.csr_matrix(arr.reshape(n, h * w) != 0), (h, w)


def neuropil_masks(
    masks: Any, frame_shape: tuple[int, int] | None = None, um_per_px: float = 0.78, radius_um: float = 5.0
) -> sp.csr_matrix:
    """Neuropil disk of every mask (the STNeuroNet labelling code's definition).

    A disk around the mask's rounded centroid of radius
    ``ceil(radius_um / um_per_px) + round(max(bbox h, w) / 2)`` px (halves
    rounded up, as MATLAB's ``round``), minus every mask pixel, clipped to
    the frame.

    Returns
    -------
    scipy.sparse.csr_matrix
        Boolean ``(N, H * W)``.
    """
    m, (h, w) = as_sparse_masks(masks, frame_shape)
    union = np.asarray(m.sum(axis=0)).ravel() > 0
    extra = int(math.ceil(radius_um / um_per_px - 1e-9))
    rows_out, cols_out = [], []
    for k in range(m.shape[0]):
        pix = m.indices[m.indptr[k] : m.indptr[k + 1]]
        if pix.size == 0:
            continue
        r, c = np.divmod(pix, w)
        # MATLAB round() = half away from zero; coordinates are >= 0 here.
        cr, cc = int(math.floor(r.mean() + 0.5)), int(math.floor(c.mean() + 0.5))
        side = max(r.max() - r.min() + 1, c.max() - c.min() + 1)
        radius = extra + int(math.floor(side / 2 + 0.5))
        dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        inside = dy**2 + dx**2 <= radius**2
        yy, xx = dy[inside] + cr, dx[inside] + cc
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        flat = yy[ok] * w + xx[ok]
        flat = flat[~union[flat]]
        rows_out.append(np.full(flat.size, k))
        cols_out.append(flat)
    return _region_matrix(rows_out, cols_out, m.shape[0], h * w)


def _region_matrix(rows: list, cols: list, n: int, n_pixels: int) -> sp.csr_matrix:
    """Boolean (n, n_pixels) matrix from per-region row-index and pixel-index arrays."""
    rr = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cc = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(rr.size, dtype=bool), (rr, cc)), shape=(n, n_pixels))


def annulus_masks(
    masks: Any, frame_shape: tuple[int, int] | None = None, um_per_px: float = 0.78, width_um: float = 5.0
) -> sp.csr_matrix:
    """Neuropil annulus of every mask (the paper's PSNR definition).

    Pixels within ``width_um`` of the mask (Euclidean), excluding every
    mask's pixels.

    Returns
    -------
    scipy.sparse.csr_matrix
        Boolean ``(N, H * W)``.
    """
    m, (h, w) = as_sparse_masks(masks, frame_shape)
    union = np.asarray(m.sum(axis=0)).ravel() > 0
    r = max(1, int(math.ceil(width_um / um_per_px - 1e-9)))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = dy**2 + dx**2 <= r**2
    rows_out, cols_out = [], []
    for k in range(m.shape[0]):
        pix = m.indices[m.indptr[k] : m.indptr[k + 1]]
        if pix.size == 0:
            continue
        rr, cc = np.divmod(pix, w)
        # Dilate inside the mask's padded bounding box only.
        r0, c0 = max(rr.min() - r, 0), max(cc.min() - r, 0)
        r1, c1 = min(rr.max() + r + 1, h), min(cc.max() + r + 1, w)
        box = np.zeros((r1 - r0, c1 - c0), bool)
        box[rr - r0, cc - c0] = True
        ring = ndimage.binary_dilation(box, structure=disk)
        yy, xx = np.nonzero(ring)
        flat = (yy + r0) * w + (xx + c0)
        flat = flat[~union[flat]]
        rows_out.append(np.full(flat.size, k))
        cols_out.append(flat)
    return _region_matrix(rows_out, cols_out, m.shape[0], h * w)


def _check_movie(movie: Any, hw: tuple[int, int]) -> int:
    shape = getattr(movie, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(f"movie must be (T, H, W), got shape {shape}")
    if tuple(shape[1:]) != tuple(hw):
        raise InputError(f"movie frames are {tuple(shape[1:])} but masks are {tuple(hw)}")
    return int(shape[0])


def _read(movie: Any, start: int, stop: int) -> np.ndarray:
    read = getattr(movie, "read", None)
    return np.asarray(read(start, stop) if callable(read) else movie[start:stop])


def region_traces(movie: Any, weights: sp.spmatrix, chunk: int = 256, n_frames: int | None = None) -> np.ndarray:
    """``weights @ frame`` for every frame (or the first ``n_frames``), streamed: a (K, T) float64 array.

    Parameters
    ----------
    movie : Movie or array-like
        (T, H, W); a :class:`datasets.movies.Movie` is read with ``read``.
    weights : sparse (K, H * W)
        One row of pixel weights per trace.
    chunk : int
        Frames read at once.
    n_frames : int, optional
        Only the first ``n_frames`` frames (default: all).
    """
    t = int(movie.shape[0]) if n_frames is None else min(int(n_frames), int(movie.shape[0]))
    h, w = int(movie.shape[1]), int(movie.shape[2])
    if weights.shape[1] != h * w:
        raise InputError(f"weights have {weights.shape[1]} columns, the movie frame has {h * w} pixels")
    wt = sp.csr_matrix(weights, dtype=np.float64)
    out = np.empty((wt.shape[0], t), dtype=np.float64)
    step = max(int(chunk), 1)
    for start in range(0, t, step):
        stop = min(start + step, t)
        frames = _read(movie, start, stop).astype(np.float64, copy=False).reshape(stop - start, h * w)
        if not np.isfinite(frames).all():
            raise InputError(f"the movie has non-finite values in frames {start}..{stop - 1}")
        out[:, start:stop] = wt @ frames.T
    return out


def extract_traces(
    movie: Any,
    masks: Any,
    frame_shape: tuple[int, int] | None = None,
    um_per_px: float = 0.78,
    neuropil_coef: float = 0.75,
    radius_um: float = 5.0,
    chunk: int = 256,
) -> np.ndarray:
    """Neuropil-subtracted traces ``(mean_mask - coef * mean_neuropil) * area`` (STNeuroNet labelling).

    Parameters
    ----------
    movie : Movie or array-like
        ``(T, H, W)`` (binned and cropped, not homomorphic-filtered).
    masks : Masks, array-like or sparse
        See :func:`as_sparse_masks`.
    frame_shape : (H, W), optional
        For sparse masks.
    um_per_px, radius_um : float
        Neuropil disk margin (5 um), see :func:`neuropil_masks`.
    neuropil_coef : float
        Neuropil contamination factor (0.75).
    chunk : int
        Frames read at once.

    Returns
    -------
    np.ndarray
        ``(N, T)`` float64. Empty masks give zero traces.
    """
    m, hw = as_sparse_masks(masks, frame_shape)
    _check_movie(movie, hw)
    npil = neuropil_masks(m, hw, um_per_px, radius_um)
    area = np.asarray(m.sum(axis=1), dtype=np.float64).ravel()
    n_np = np.asarray(npil.sum(axis=1), dtype=np.float64).ravel()
    if np.any(area == 0):
        logger.warning("%d empty mask(s): their traces are zero", int(np.sum(area == 0)))
    # One sparse weight matrix gives the whole neuropil-corrected trace per chunk:
    # area * (mask / area - coef * neuropil / n_np) = mask - coef * area / n_np * neuropil.
    np_weight = np.divide(neuropil_coef * area, n_np, out=np.zeros_like(area), where=n_np > 0)
    weights = sp.csr_matrix(m, dtype=np.float64) - sp.diags(np_weight) @ sp.csr_matrix(npil, dtype=np.float64)
    return region_traces(movie, weights, chunk)


def demix(sums: np.ndarray, masks: Any, frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Separate the traces of overlapping masks by linear regression.

    With ``x_j(t)`` the per-pixel signal of neuron ``j``, the summed
    fluorescence over mask ``i`` is ``S_i = sum_j |i ∩ j| x_j``; solving that
    system (least squares where singular) gives the per-pixel traces.
    Masks that overlap nothing keep ``S_i / |i|``.

    Parameters
    ----------
    sums : (N, T) array
        Summed fluorescence over each mask.
    masks : Masks, array-like or sparse
        The N masks.

    Returns
    -------
    (N, T) array of per-pixel (mean) traces.
    """
    m, _ = as_sparse_masks(masks, frame_shape)
    mi = sp.csr_matrix(m, dtype=np.float64)
    overlap = (mi @ mi.T).toarray()
    n = overlap.shape[0]
    out = np.divide(
        sums, np.diag(overlap)[:, None], out=np.zeros_like(sums, dtype=np.float64), where=np.diag(overlap)[:, None] > 0
    )
    # Connected groups of overlapping masks are solved separately (small systems).
    n_groups, labels = sp.csgraph.connected_components(sp.csr_matrix(overlap > 0), directed=False)
    for g in range(n_groups):
        idx = np.flatnonzero(labels == g)
        if idx.size < 2:
            continue
        sub = overlap[np.ix_(idx, idx)]
        out[idx] = np.linalg.lstsq(sub, sums[idx], rcond=None)[0]
    assert out.shape[0] == n
    return out


def moving_median(traces: np.ndarray, size: int) -> np.ndarray:
    """Moving median over ``size`` samples along the last axis, edges reflected."""
    x = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    size = max(1, min(int(size), x.shape[1]))
    base = np.stack([median_filter(row, size=size, mode="reflect") for row in x]) if x.size else x.copy()
    return base[0] if np.ndim(traces) == 1 else base


def moving_baseline(traces: np.ndarray, half_window: int) -> tuple[np.ndarray, np.ndarray]:
    """Moving median and moving population SD over ``2 * half_window + 1`` frames.

    Edges are reflected with the edge sample repeated (SciPy ``'reflect'``),
    as the authors' code does.

    Parameters
    ----------
    traces : np.ndarray
        ``(N, T)`` or ``(T,)``.
    half_window : int
        90 at 6 Hz (30 s window).

    Returns
    -------
    baseline, sd : np.ndarray
        Same shape as ``traces``, float64.
    """
    x = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    size = 2 * int(half_window) + 1
    # 1-D calls use SciPy's fast 1-D rank filter; the loop is over neurons only.
    base = np.stack([median_filter(row, size=size, mode="reflect") for row in x]) if x.size else x.copy()
    # Centre each row first so that E[x^2] - E[x]^2 does not lose precision.
    centre = np.median(x, axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
    xc = x - centre
    m1 = uniform_filter1d(xc, size=size, axis=1, mode="reflect")
    m2 = uniform_filter1d(xc * xc, size=size, axis=1, mode="reflect")
    sd = np.sqrt(np.clip(m2 - m1 * m1, 0.0, None))
    if np.ndim(traces) == 1:
        return base[0], sd[0]
    return base, sd


def peak_snr(delta_f: np.ndarray, fps: float, *, active_k: float = 3.0, guard_s: float = 1.0) -> np.ndarray:
    """PSNR = ΔF_peak / σ_noise, with σ_noise the SD over non-active intervals (the paper's Eq. 9).

    Active intervals are frames above ``active_k`` robust SDs (median
    absolute deviation) of the baseline-subtracted trace, widened by
    ``guard_s`` seconds on each side, so the transients' tails do not
    inflate the noise estimate.

    Parameters
    ----------
    delta_f : (N, T) or (T,) array
        Baseline-subtracted traces.
    fps : float
        Frame rate (Hz).

    Returns
    -------
    (N,) array (a scalar for one trace); NaN where no inactive frame is left.
    """
    x = np.atleast_2d(np.asarray(delta_f, dtype=np.float64))
    mad = 1.4826 * np.median(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1, keepdims=True)
    active = x > active_k * np.maximum(mad, 1e-12)
    guard = max(1, int(round(guard_s * fps)))
    active = ndimage.binary_dilation(active, structure=np.ones((1, 2 * guard + 1), bool))
    out = np.full(x.shape[0], np.nan)
    for i in range(x.shape[0]):
        quiet = x[i, ~active[i]]
        if quiet.size > 1:
            sd = quiet.std(ddof=1)
            out[i] = x[i].max() / sd if sd > 0 else np.nan
    return out[0] if np.ndim(delta_f) == 1 else out
