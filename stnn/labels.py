"""Spatio-temporal training labels of STNeuroNet.

STNeuroNet learns to segment *active* neurons: a ground-truth mask is a
positive label only in frames where that neuron fires. Following the paper
(Eqs. 4-8) and the authors' labelling code (spec section 8):

1. a trace per GT mask from the binned, cropped *raw* video (not the
   homomorphic-filtered one): ``(mean over mask - 0.75 mean over neuropil) *
   area``, where the neuropil is a disk around the mask's centroid (radius
   ``ceil(5 um / px) + round(max bbox side / 2)``) minus every mask pixel;
2. baseline ``b`` and noise ``s`` = moving median and moving population SD
   over 30 s (181 frames at 6 Hz), edges reflected;
3. ``d'(t) = (trace - b) / median(s) * sqrt(tau fs / 2)``, and a Poisson
   log-likelihood matched filter with an exponential template
   ``0.15 exp(-j / (tau fs))`` over 1 s;
4. a spike at ``i`` when the filter output is the maximum within +-1 s and
   ``d'(i) >= thr``; ``thr`` starts at ``d'_min`` (Eq. 8) and is lowered by
   0.2 until the neuron has an event (optionally not below a floor);
5. the neuron is active from the spike frame for 0.5 s.

The label of a 120-frame window (what the network is trained on) is the
union of the masks of neurons active in any of its frames
(:func:`label_map`).

Masks are either a dense boolean array ``(N, H, W)`` or a SciPy sparse
matrix ``(N, H * W)`` (row-major pixels) together with ``frame_shape``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import maximum_filter1d

from datasets.errors import InputError
from datasets.traces import as_sparse_masks, dprime_threshold, extract_traces, moving_baseline, neuropil_masks

__all__ = [
    "dprime_threshold",
    "exponential_template",
    "as_sparse_masks",
    "neuropil_masks",
    "extract_traces",
    "moving_baseline",
    "EventDetection",
    "detect_events",
    "temporal_labels",
    "label_map",
    "label_volume",
]

logger = logging.getLogger(__name__)


def exponential_template(tau: float, fs: float, amplitude: float = 0.15, duration: float = 1.0) -> np.ndarray:
    """Expected dF/F of one spike: ``amplitude * exp(-j / (tau fs))``, ``j = 0 .. round(duration fs) - 1``.

    Parameters
    ----------
    tau : float
        Decay time constant (s): 0.2 for GCaMP6f, 0.8 for GCaMP6s.
    fs : float
        Frame rate (Hz).
    amplitude : float
        Peak dF/F of a single spike (authors: 0.15).
    duration : float
        Template length in seconds (authors: 1 s).

    Returns
    -------
    np.ndarray
        float64 template; ``[0.15, 0.0652, 0.0283, 0.0123, 0.0054, 0.0023]``
        for tau 0.2 s at 6 Hz.
    """
    if not (tau > 0 and fs > 0 and duration > 0):
        raise InputError(f"tau, fs and duration must be > 0, got {tau}, {fs}, {duration}")
    n = max(1, int(round(duration * fs)))
    return amplitude * np.exp(-np.arange(n) / (tau * fs))


# -- masks and traces ------------------------------------------------------------


# Trace extraction lives in datasets.traces (shared with the simulator and the PSNR analysis).


@dataclass
class EventDetection:
    """Result of :func:`detect_events`.

    Attributes
    ----------
    activity : np.ndarray
        ``(N, T)`` bool, True where the neuron is labelled active.
    spikes : list of np.ndarray
        Spike frames per neuron (0-based).
    thresholds : np.ndarray
        ``(N,)`` d' threshold finally used per neuron (NaN when none applied).
    dprime : np.ndarray
        ``(N, T)`` d' of every frame.
    likelihood : np.ndarray
        ``(N, T)`` matched-filter log-likelihood ratio.
    """

    activity: np.ndarray
    spikes: list[np.ndarray]
    thresholds: np.ndarray
    dprime: np.ndarray
    likelihood: np.ndarray


def detect_events(
    traces: np.ndarray,
    fs: float = 6.0,
    tau: float = 0.2,
    lam: float = 2.9,
    p_n: float = 0.035,
    threshold: float | None = None,
    step: float = 0.2,
    floor: float | None = None,
    amplitude: float = 0.15,
    baseline_s: float = 30.0,
    template_s: float = 1.0,
    peak_s: float = 1.0,
    active_s: float = 0.5,
    spike_frames: Sequence[Sequence[int] | None] | None = None,
) -> EventDetection:
    """Detect calcium events and mark active frames (paper Eqs. 4-8).

    Parameters
    ----------
    traces : np.ndarray
        ``(N, T)`` neuropil-corrected traces (:func:`extract_traces`).
    fs : float
        Frame rate (Hz).
    tau, lam, p_n : float
        Indicator decay (s), spike rate (1/s), false-negative probability;
        give ``threshold = d'_min`` unless ``threshold`` is set.
    threshold : float, optional
        Initial d' threshold (overrides ``dprime_threshold(fs, lam, p_n)``;
        the paper used 1.7 for Neurofinder).
    step : float
        Threshold decrement while a neuron has no event (0.2).
    floor : float, optional
        Lowest threshold tried (paper: 0.5 for Neurofinder). None: lower
        until an event appears (the authors' ABO labelling), so every neuron
        with a local maximum gets one.
    amplitude, template_s : float
        Template peak and length (0.15, 1 s).
    baseline_s : float
        Moving median/SD window (30 s: 181 frames at 6 Hz).
    peak_s : float
        Half-width of the local-maximum window (1 s: +-6 frames at 6 Hz).
    active_s : float
        Active duration from each spike (0.5 s: the spike frame and the
        next 2 at 6 Hz).
    spike_frames : sequence, optional
        Known spike frames per neuron (None entries: detect); they replace
        the detection for those neurons.

    Returns
    -------
    EventDetection
    """
    x = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    n, t = x.shape
    if not np.isfinite(x).all():
        raise InputError("traces contain non-finite values")
    thr0 = dprime_threshold(fs, lam, p_n) if threshold is None else float(threshold)
    if not step > 0:
        raise InputError(f"step must be > 0, got {step}")
    template = exponential_template(tau, fs, amplitude, template_s)
    n_tpl = template.size
    half_base = max(1, int(round(baseline_s * fs / 2)))
    w = max(1, int(round(peak_s * fs)))
    n_active = max(1, int(round(active_s * fs)))

    activity = np.zeros((n, t), dtype=bool)
    spikes: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(n)]
    thresholds = np.full(n, np.nan)
    if t == 0 or n == 0:
        return EventDetection(activity, spikes, thresholds, np.zeros((n, t)), np.zeros((n, t)))

    base, sd = moving_baseline(x, half_base)
    sigma = np.median(sd, axis=1)
    f0 = np.median(base, axis=1)
    # Extend trace and baseline by n_tpl + 1 reflected samples so that the
    # matched filter has a full template at every frame up to T.
    tail = np.arange(t - 1, t - n_tpl - 2, -1).clip(0)
    r_ext = np.concatenate([x, x[:, tail]], axis=1) - np.concatenate([base, base[:, tail]], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dprime = r_ext / sigma[:, None] * math.sqrt(0.5 * tau * fs)
    dprime[~np.isfinite(dprime)] = 0.0
    # Poisson log-likelihood ratio: L(i) = sum_j (r(i+j) + F0) ln(1 + d_j) - F0 d_j.
    log_d = np.log1p(template)
    windows = np.lib.stride_tricks.sliding_window_view(r_ext, n_tpl, axis=1)[:, : t + 1]
    lik = windows @ log_d + (f0 * (log_d.sum() - template.sum()))[:, None]

    # Candidate spikes: local maxima of L over +-w frames, with the full window inside.
    is_max = maximum_filter1d(lik, size=2 * w + 1, axis=1, mode="nearest") == lik
    cand_range = np.zeros(t + 1, dtype=bool)
    cand_range[w : max(t - w, w)] = True  # 0-based frames w .. T-1-w
    cand = is_max & cand_range[None, :]
    d_at = dprime[:, : t + 1]

    given = [None] * n if spike_frames is None else list(spike_frames)
    if len(given) != n:
        raise InputError(f"spike_frames has {len(given)} entries for {n} traces")
    for k in range(n):
        if given[k] is not None and len(given[k]) > 0:
            frames = np.unique(np.clip(np.round(np.asarray(given[k], dtype=np.float64)).astype(np.int64), 0, t - 1))
        else:
            if sigma[k] <= 0:
                logger.warning("trace %d is flat (zero noise SD): no events", k)
                continue
            idx = np.flatnonzero(cand[k])
            if idx.size == 0:
                logger.warning("trace %d has no local maximum to label (T=%d)", k, t)
                continue
            best = d_at[k, idx].max()
            # Smallest number of decrements that lets the best candidate pass;
            # the while loop fixes float rounding of the closed form.
            n_steps = max(0, math.ceil((thr0 - best) / step - 1e-9))
            thr = thr0 - n_steps * step
            while best < thr:
                n_steps += 1
                thr = thr0 - n_steps * step
            if floor is not None and thr < floor - 1e-12:
                logger.info("trace %d: no event above the threshold floor %.3g", k, floor)
                continue
            thresholds[k] = thr
            frames = idx[d_at[k, idx] >= thr]
            frames = frames[frames < t]
        spikes[k] = frames
        on = (frames[:, None] + np.arange(n_active)[None, :]).ravel()
        activity[k, on[on < t]] = True
    return EventDetection(activity, spikes, thresholds, dprime[:, :t], lik[:, :t])


def temporal_labels(
    movie: Any,
    masks: Any,
    fs: float = 6.0,
    um_per_px: float = 0.78,
    frame_shape: tuple[int, int] | None = None,
    neuropil_coef: float = 0.75,
    chunk: int = 256,
    return_details: bool = False,
    **detect_kwargs: Any,
) -> np.ndarray | tuple[np.ndarray, EventDetection]:
    """Boolean activity matrix ``(N, T)`` of the GT neurons of a movie.

    Parameters
    ----------
    movie : array-like
        ``(T, H, W)`` binned and cropped raw video (not homomorphic-filtered),
        streamed in ``chunk`` frames.
    masks : array-like or sparse
        GT masks (see :func:`as_sparse_masks`), in the movie's frame.
    fs : float
        Frame rate of ``movie`` (6 Hz after binning ABO).
    um_per_px : float
        Pixel size, for the neuropil margin.
    neuropil_coef : float
        Neuropil factor (0.75).
    chunk : int
        Frames read at once.
    return_details : bool
        Also return the :class:`EventDetection`.
    **detect_kwargs
        Passed to :func:`detect_events` (tau, lam, p_n, threshold, floor, ...).

    Returns
    -------
    np.ndarray or (np.ndarray, EventDetection)
    """
    traces = extract_traces(movie, masks, frame_shape, um_per_px, neuropil_coef, chunk=chunk)
    det = detect_events(traces, fs=fs, **detect_kwargs)
    return (det.activity, det) if return_details else det.activity


def label_volume(
    activity: np.ndarray,
    masks: Any,
    start: int = 0,
    stop: int | None = None,
    frame_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per-frame labels ``(stop - start, H, W)``: union of the masks active in each frame."""
    m, (h, w) = as_sparse_masks(masks, frame_shape)
    act = np.asarray(activity, dtype=bool)
    if act.ndim != 2 or act.shape[0] != m.shape[0]:
        raise InputError(f"activity must be (N={m.shape[0]}, T), got {act.shape}")
    sel = act[:, start:stop]
    counts = sp.csr_matrix(m.T, dtype=np.int32) @ sel.astype(np.int32)  # (H*W, t)
    return (np.asarray(counts).T > 0).reshape(sel.shape[1], h, w)


def label_map(
    activity: np.ndarray,
    masks: Any,
    start: int = 0,
    stop: int | None = None,
    frame_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """2-D label of a window of frames: the t-max of the temporal labels.

    Parameters
    ----------
    activity : np.ndarray
        ``(N, T)`` bool from :func:`temporal_labels`.
    masks : array-like or sparse
        The same masks.
    start, stop : int
        Frame window ``[start, stop)`` (e.g. a 120-frame training crop).
    frame_shape : (H, W), optional
        For sparse masks.

    Returns
    -------
    np.ndarray
        ``(H, W)`` bool: union of the masks of neurons active in any frame
        of the window.
    """
    m, (h, w) = as_sparse_masks(masks, frame_shape)
    act = np.asarray(activity, dtype=bool)
    if act.ndim != 2 or act.shape[0] != m.shape[0]:
        raise InputError(f"activity must be (N={m.shape[0]}, T), got {act.shape}")
    active = act[:, start:stop].any(axis=1)
    if not active.any():
        return np.zeros((h, w), dtype=bool)
    return (np.asarray(m[np.flatnonzero(active)].sum(axis=0)).ravel() > 0).reshape(h, w)
