"""Streaming movie generation: blocks of frames from the field of view and the activity.

One block of ``params.block_frames`` frames is, in expected photons per pixel,

    lam = gain(x) * bleach(t) * photons_per_px * (neuropil(x, t) + sum_u S_u(x) F_u(t))

(two matrix products), shifted by the residual motion, darkened outside the
registration borders (``registration``), then detected with shot noise and
read noise and digitised to uint16 (``adc_offset + adc_gain * photons``). Block ``b`` draws its
noise from ``default_rng([seed, 3, b])``, so the movie is bit-identical for a
seed whatever the caller does with the frames. Memory is a few block-sized
float32 arrays plus O(neurons x frames) traces (~0.4 kB per frame for 100
neurons, versus 131 kB per 256x256 frame), so it does not grow with the movie.

Shot noise is exact Poisson where fewer than ``POISSON_EXACT_BELOW`` (10)
photons are expected, which at the calibrated budget (0.3-1.2 photons per
pixel per frame, as in a real movie) is almost every pixel; above it, the
normal approximation lam + sqrt(lam) z matches the Poisson law closely.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from datasets.masks import Masks
from datasets.synthetic.activity import ActivityModel
from datasets.synthetic.anatomy import FieldOfView, build_field_of_view
from datasets.synthetic.params import SimulationParams
from datasets.synthetic.registration import MotionWalk, RegistrationBorders
from datasets.synthetic.truth import active_set, dprime, psnr, trace_weights, transient_windows

__all__ = ["SimulationResult", "simulate", "POISSON_EXACT_BELOW"]

logger = logging.getLogger(__name__)

#: Expected photon counts below which shot noise is drawn exactly from a Poisson law.
POISSON_EXACT_BELOW = 10.0

#: A sink receives (first frame index, uint16 frames (n, H, W), noiseless soma dF/F (N, n)).
Sink = Callable[[int, np.ndarray, np.ndarray], None]


@dataclass
class SimulationResult:
    """Ground truth and measurements of one generated recording."""

    params: SimulationParams
    seed: int
    fov: FieldOfView
    spike_times: list  # per soma, seconds
    traces: np.ndarray  # (N, T) float32 traces measured on the noisy movie
    dprime_peak: np.ndarray  # (N,) peak d' inside true transients
    active: np.ndarray  # (N,) bool
    psnr: np.ndarray  # (N,)
    threshold: float
    overlapping: np.ndarray  # (N,) bool
    firing_rates: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def masks(self) -> Masks:
        return self.fov.masks

    @property
    def active_masks(self) -> Masks:
        return self.fov.masks.subset(np.flatnonzero(self.active))

    @property
    def silent(self) -> np.ndarray:
        return self.fov.silent

    def stats(self) -> dict:
        """Summary counts used by the realism report (JSON-able)."""
        p = self.params
        a = self.active
        areas = self.masks.areas * p.um_per_px**2
        ps = self.psnr[a]
        return {
            "n_somata": int(self.masks.n),
            "n_active": int(a.sum()),
            "n_silent": int(self.silent.sum()),
            "n_firing_below_threshold": int((~a & ~self.silent).sum()),
            "active_density_per_um2": float(a.sum() / p.area_um2),
            "median_active_area_um2": float(np.median(areas[a])) if a.any() else float("nan"),
            "active_overlap_share": float(self.overlapping[a].mean()) if a.any() else float("nan"),
            "silent_share": float(self.silent.mean()) if self.masks.n else float("nan"),
            "psnr_quartiles": [float(q) for q in np.nanpercentile(ps, [25, 50, 75])] if ps.size else [],
            "psnr_share_below_5": float(np.mean(ps < 5)) if ps.size else float("nan"),
            "psnr_share_above_20": float(np.mean(ps > 20)) if ps.size else float("nan"),
            "dprime_threshold": float(self.threshold),
        }


def detect(lam: np.ndarray, rng: np.random.Generator, read_noise: float) -> np.ndarray:
    """Detected photons (float32, same shape as ``lam``): shot noise plus Gaussian read noise.

    Exact Poisson where fewer than ``POISSON_EXACT_BELOW`` photons are expected
    (a real movie has about one photon per pixel per frame, where the normal
    law is a poor model: it would go negative), the normal approximation above,
    where it matches the Poisson law closely and is cheaper.
    """
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    low = lam < POISSON_EXACT_BELOW
    exact = rng.poisson(lam[low]).astype(np.float32)
    photons = np.sqrt(lam)
    photons *= z
    photons += lam
    photons[low] = exact
    # Read noise from an independent stream of the same generator (after the shot noise).
    photons += rng.standard_normal(lam.shape, dtype=np.float32) * np.float32(read_noise)
    return photons


def _shift_frames(lam: np.ndarray, shifts: np.ndarray, h: int, w: int) -> np.ndarray:
    v = lam.reshape(-1, h, w)
    for k, (dy, dx) in enumerate(shifts):
        if dy or dx:
            v[k] = np.roll(v[k], (int(dy), int(dx)), axis=(0, 1))
    return lam


def simulate(
    params: SimulationParams,
    seed: int,
    sink: Sink | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Generate a recording block by block, handing frames to ``sink``; return its ground truth.

    Parameters
    ----------
    params : SimulationParams
        What to simulate.
    seed : int
        Seed; the same (params, seed) give bit-identical frames.
    sink : callable, optional
        Called as ``sink(start, frames_uint16, soma_dff)`` for each block, in order.
    progress : callable, optional
        Called with the number of frames finished after each block.

    Returns
    -------
    SimulationResult
    """
    p = params
    seed = int(seed)
    if seed < 0:
        from datasets.errors import InputError

        raise InputError(f"seed={seed} is out of range; valid: a whole number >= 0")
    fov = build_field_of_view(p, seed)
    act = ActivityModel(p, seed, fov)
    h, w = p.height, p.width
    n_s = fov.n_somata
    weights = trace_weights(fov.masks, p.um_per_px)
    traces = np.zeros((n_s, p.n_frames), np.float32)
    dff_all = np.zeros((n_s, p.n_frames), np.float32)
    spikes: list[list[np.ndarray]] = [[] for _ in range(n_s)]
    spike_frames: list[list[np.ndarray]] = [[] for _ in range(n_s)]
    bleach_rate = -math.log(max(1.0 - p.bleach_per_min, 1e-6)) / (60.0 * p.fps)
    gain = fov.gain * np.float32(p.photons_per_px)
    footprints_f = fov.footprints.astype(np.float32)
    motion = MotionWalk(p, seed) if p.motion_um > 0 else None
    borders = RegistrationBorders(p, seed)
    n_blocks = -(-p.n_frames // p.block_frames)
    for b in range(n_blocks):
        start = b * p.block_frames
        n = min(p.block_frames, p.n_frames - start)
        blk = act.block(b, start, n)
        # Expected fluorescence (n, P): background components plus every unit's footprint.
        lam = blk.neuropil.T @ fov.background
        lam += (footprints_f @ blk.fluorescence).T
        t = np.arange(start, start + n)
        lam *= np.exp(-bleach_rate * t).astype(np.float32)[:, None]
        lam *= gain[None, :]
        np.maximum(lam, 0, out=lam)
        if motion is not None:
            lam = _shift_frames(lam, motion.shifts(b, n), h, w)
        if borders.active:
            # Registration margins collect no photons: offset and read noise only.
            lam *= borders.mask(b, n).reshape(n, h * w)
        photons = detect(lam, np.random.default_rng([seed, 3, b]), p.read_noise_photons)
        del lam
        photons *= np.float32(p.adc_gain)
        photons += np.float32(p.adc_offset)
        np.clip(photons, 0, 65535, out=photons)
        frames = np.rint(photons).astype(np.uint16).reshape(n, h, w)
        del photons
        soma_dff = blk.dff[:n_s]
        if sink is not None:
            sink(start, frames, soma_dff)
        traces[:, start : start + n] = weights @ frames.reshape(n, h * w).T.astype(np.float32)
        dff_all[:, start : start + n] = soma_dff
        for i in range(n_s):
            if blk.spike_times[i].size:
                spikes[i].append(blk.spike_times[i])
                spike_frames[i].append(start + np.flatnonzero(blk.spike_frames[i]))
        if progress is not None:
            progress(n)
    spike_times = [np.concatenate(s) if s else np.zeros(0) for s in spikes]
    sframes = [np.concatenate(s) if s else np.zeros(0, np.int64) for s in spike_frames]

    # Active set: d' on traces binned like the paper (30 Hz -> 6 Hz by summing).
    bf = p.bin_factor
    nb = p.n_frames // bf
    fs_b = p.fps / bf
    binned = traces[:, : nb * bf].reshape(n_s, nb, bf).sum(axis=2, dtype=np.float64)
    tau = p.ind.tau_s
    dp = dprime(binned, fs_b, tau, half_window=int(round(15 * fs_b)))
    win = transient_windows(sframes, nb, bf, max(1, int(math.ceil(fs_b * (p.ind.rise_s + 2 * p.ind.half_decay_s)))))
    thr = p.threshold
    active, peak = active_set(dp, win, thr)
    active &= ~fov.silent
    ps = psnr(traces.astype(np.float64), dff_all, p.fps, bf)
    duration = p.n_frames / p.fps
    return SimulationResult(
        params=p,
        seed=seed,
        fov=fov,
        spike_times=spike_times,
        traces=traces,
        dprime_peak=peak,
        active=active,
        psnr=ps,
        threshold=thr,
        overlapping=fov.overlapping(),
        firing_rates=np.array([s.size / duration for s in spike_times]),
    )
