"""Ground truth of a synthetic recording: which somata are *active*, and their PSNR.

A soma is active when at least one of its true transients reaches the paper's
discriminability threshold in the *noisy* movie: traces are extracted from
the movie with the authors' recipe (mask mean minus 0.75 x a neuropil disk,
times the area), binned to ~6 Hz by summing frames, and

    d'(t) = (trace - moving median) / median(moving SD) * sqrt(0.5 tau fs)

(spec section 8; 181-bin windows, reflected edges). Only frames inside a true
transient of the soma count, so a silent soma can never become ground truth
through noise or a neighbour's activity.

The formulas are those of ``stnn.labels`` (imported lazily, because that
package imports PyTorch); a private copy is used when it is not importable.

PSNR (paper Eq. 9) is measured on the native-rate trace: the slow background
is removed with a 60 s moving median, the noise SD is taken over frames where
the soma's noiseless dF/F is below 2 % of its peak, and the peak is the
baseline-corrected value at the frame where its noiseless dF/F peaks.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import median_filter

from datasets.masks import Masks
from datasets.traces import dprime_threshold, neuropil_masks
from datasets.traces import moving_baseline as _moving_baseline

__all__ = ["dprime_threshold", "trace_weights", "moving_baseline", "dprime", "active_set", "psnr"]


def trace_weights(masks: Masks, um_per_px: float, neuropil_coef: float = 0.75) -> sp.csr_matrix:
    """Sparse (N, H*W) weights W with W @ frame = (mask mean - coef * neuropil mean) * area."""
    m = sp.csr_matrix(masks.matrix, dtype=np.float64)
    npil = sp.csr_matrix(neuropil_masks(masks, um_per_px=um_per_px, radius_um=5.0), dtype=np.float64)
    area = np.asarray(m.sum(axis=1)).ravel()
    n_np = np.asarray(npil.sum(axis=1)).ravel()
    coef = np.divide(neuropil_coef * area, n_np, out=np.zeros_like(area), where=n_np > 0)
    return sp.csr_matrix(m - sp.diags(coef) @ npil).astype(np.float32)


def moving_baseline(traces: np.ndarray, half_window: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`datasets.traces.moving_baseline`, always 2-D."""
    b, sd = _moving_baseline(np.atleast_2d(traces), half_window)
    return np.atleast_2d(b), np.atleast_2d(sd)


def dprime(binned: np.ndarray, fs: float, tau_s: float, half_window: int = 90) -> np.ndarray:
    """d'(t) of binned traces (N, T_b): (x - median) / median_t(SD) * sqrt(0.5 tau fs)."""
    base, sd = moving_baseline(binned, half_window)
    sigma = np.median(sd, axis=1, keepdims=True)
    sigma = np.where(sigma > 0, sigma, np.inf)
    return (binned - base) / sigma * math.sqrt(0.5 * tau_s * fs)


def transient_windows(spike_frames: list[np.ndarray], n_bins: int, bin_factor: int, length_bins: int) -> np.ndarray:
    """Bool (N, n_bins): bins from each spike's bin to length_bins after it."""
    out = np.zeros((len(spike_frames), n_bins), bool)
    for i, fr in enumerate(spike_frames):
        if len(fr) == 0:
            continue
        b0 = np.unique(np.asarray(fr) // bin_factor)
        for k in range(length_bins + 1):
            idx = b0 + k
            out[i, idx[idx < n_bins]] = True
    return out


def active_set(dp: np.ndarray, windows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(active bool (N,), peak d' inside true transients (N,), -inf when none)."""
    peak = np.where(windows, dp, -np.inf).max(axis=1) if dp.shape[1] else np.full(dp.shape[0], -np.inf)
    return peak >= threshold, peak


def psnr(traces: np.ndarray, dff: np.ndarray, fps: float, bin_factor: int) -> np.ndarray:
    """Per-soma PSNR (paper Eq. 9) of native-rate traces (N, T) given noiseless dF/F (N, T).

    The 60 s moving median is computed on bin means (a 60 s window at 30 Hz is
    1,801 samples; at the bin rate it is ~360) and repeated back to full rate.
    """
    n, t = traces.shape
    if t == 0 or n == 0:
        return np.full(n, np.nan)
    nb = max(t // bin_factor, 1)
    binned = traces[:, : nb * bin_factor].reshape(n, nb, -1).mean(axis=2) if t >= bin_factor else traces
    fs_b = fps / bin_factor if t >= bin_factor else fps
    size = min(2 * int(round(30 * fs_b)) + 1, 2 * (binned.shape[1] // 2) + 1)
    base_b = np.stack([median_filter(row, size=max(size, 1), mode="reflect") for row in binned])
    rep = bin_factor if t >= bin_factor else 1
    base = np.repeat(base_b, rep, axis=1)
    if base.shape[1] < t:
        base = np.concatenate([base, np.repeat(base[:, -1:], t - base.shape[1], axis=1)], axis=1)
    x = traces - base[:, :t]
    peak_true = dff.max(axis=1, keepdims=True)
    quiet = dff <= 0.02 * np.maximum(peak_true, 1e-9)
    active = ~quiet
    out = np.full(n, np.nan)
    for i in range(n):
        q = x[i, quiet[i]]
        if q.size < 10:
            continue
        sd = q.std()
        # The measured value at the frame of the true peak: an unbiased peak (the maximum
        # over all frames would add the largest noise excursion of a long recording).
        pk = x[i, int(np.argmax(dff[i]))] if active[i].any() else x[i].max()
        out[i] = pk / sd if sd > 0 else np.nan
    return out
