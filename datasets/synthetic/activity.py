"""Spiking, calcium and indicator fluorescence, generated block by block.

Spikes come in bursts (burst onsets are Poisson, each burst adds a Poisson
number of extra spikes) at per-neuron rates drawn from a log-normal with the
paper's mean of 2.9 Hz, so most neurons fire sparsely and a few fire a lot.
Calcium is the spike train filtered by a rise/decay double exponential;
fluorescence follows the indicator's Hill binding curve, which saturates for
bursts. The filters carry their state from block to block, so a movie of any
length is generated with constant memory, and block ``b`` draws its random
numbers from ``default_rng([seed, 2, b])`` only: the result does not depend on
how many blocks were generated before in the same process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter

from datasets.synthetic.anatomy import FieldOfView
from datasets.synthetic.params import Indicator, SimulationParams

__all__ = ["ActivityModel", "ActivityBlock", "calcium_decay_s"]


def _hill_dff(ind: Indicator, c: np.ndarray) -> np.ndarray:
    """Noiseless dF/F of the indicator at free calcium ``c`` (nM), 0 at the resting level."""
    rr = ind.dynamic_range - 1.0
    f = (np.maximum(c, 0.0) / ind.kd_nM) ** ind.hill
    f = f / (1.0 + f)
    x0 = (ind.resting_nM / ind.kd_nM) ** ind.hill
    f0 = x0 / (1.0 + x0)
    return rr * (f - f0) / (1.0 + rr * f0)


def _single_spike_half_decay(ind: Indicator, step_nM: float, tau_d: float, dt: float = 5e-4) -> float:
    """Half-decay time (s, from the peak) of the dF/F after one spike, in continuous time."""
    t = np.arange(0.0, 12.0 * tau_d + 10.0 * ind.rise_s, dt)
    kern = np.exp(-t / tau_d) - np.exp(-t / ind.rise_s)
    kern /= kern.max()
    dff = _hill_dff(ind, ind.resting_nM + step_nM * kern)
    k = int(np.argmax(dff))
    below = np.flatnonzero(dff[k:] <= 0.5 * dff[k])
    return float(below[0] * dt) if below.size else math.inf


@lru_cache(maxsize=64)
def calcium_decay_s(ind: Indicator, step_nM: float) -> float:
    """Calcium decay time constant (s) giving the indicator's single-spike fluorescence t_1/2.

    The Hill curve is supra-linear near rest (F ~ c^n far below K_d), so the
    fluorescence decays faster than calcium, by a factor between 1 (a spike
    much smaller than the resting level) and n (much larger). The published
    t_1/2 (GCaMP6f 0.14 s, GCaMP6s 0.55 s; Chen et al. 2013) is that of the
    fluorescence after one action potential, so the calcium decay is solved
    for, by bisection, for a spike of ``step_nM`` (the preset's nominal size).
    """
    lo, hi = 0.2 * ind.half_decay_s, 5.0 * ind.half_decay_s * max(ind.hill, 1.0)
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if _single_spike_half_decay(ind, step_nM, mid) < ind.half_decay_s:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


@dataclass
class ActivityBlock:
    """Activity of all units over one block of frames."""

    start: int
    fluorescence: np.ndarray  # (U, n) F0 * (1 + dF/F), float32
    dff: np.ndarray  # (U, n) noiseless dF/F, float32
    spike_frames: np.ndarray  # (U, n) spike counts, int32
    spike_times: list  # per soma: spike times (s) in this block
    neuropil: np.ndarray  # (1 + K, n) temporal weights of the background components


@dataclass
class ActivityModel:
    """Per-unit activity parameters and the carried filter state."""

    p: SimulationParams
    seed: int
    fov: FieldOfView
    rates: np.ndarray = field(init=False)
    calcium_step: np.ndarray = field(init=False)
    _zd: np.ndarray = field(init=False, repr=False)
    _zr: np.ndarray = field(init=False, repr=False)
    _zn: np.ndarray = field(init=False, repr=False)
    _carry: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p, u = self.p, self.fov.n_units
        rng = np.random.default_rng([int(self.seed), 1])
        # Log-normal rates with the requested arithmetic mean.
        mu = math.log(p.rate_mean_hz) - 0.5 * p.rate_log_sd**2
        self.rates = np.exp(rng.normal(mu, p.rate_log_sd, u))
        self.rates[: self.fov.n_somata][self.fov.silent] = 0.0
        self.calcium_step = p.calcium_per_spike_nM * np.exp(rng.normal(-0.5 * p.calcium_log_sd**2, p.calcium_log_sd, u))
        if p.calcium_rate_exponent:
            # Neurons that fire a lot (fast-spiking, strongly buffered cells) show smaller
            # transients per spike: step ~ (rate / median rate)^-exponent.
            rel = np.where(self.rates > 0, self.rates, math.exp(mu)) / math.exp(mu)
            self.calcium_step = self.calcium_step * rel ** (-p.calcium_rate_exponent)
        ind = p.ind
        dt = 1.0 / p.fps
        # The calcium decay is calibrated so that the *fluorescence* after one spike of the
        # nominal size decays to half in the indicator's t_1/2 (see calcium_decay_s).
        self.calcium_tau_s = calcium_decay_s(ind, p.calcium_per_spike_nM)
        self._ad = math.exp(-dt / self.calcium_tau_s)
        self._ar = math.exp(-dt / ind.rise_s)
        # Normalise the double exponential so that its peak is one spike's step.
        k = np.arange(0, int(10 * p.fps) + 2)
        self._norm = 1.0 / max(float(np.max(self._ad**k - self._ar**k)), 1e-6)
        self._zd = np.zeros((u, 1))
        self._zr = np.zeros((u, 1))
        # Burst spikes that fall after the end of a block (at most 1 s after the burst onset).
        self._max_lag = int(math.ceil(p.fps)) if p.burst_isi_s > 0 else 0
        self._carry = np.zeros((u, self._max_lag + 1), np.int64)
        self._zn = np.zeros((p.n_neuropil_components, 1))
        self._an = math.exp(-dt / p.neuropil_tau_s)

    def block(self, b: int, start: int, n: int) -> ActivityBlock:
        """Activity of frames [start, start + n); blocks must be generated in order."""
        p = self.p
        rng = np.random.default_rng([int(self.seed), 2, int(b)])
        u = self.fov.n_units
        dt = 1.0 / p.fps
        onset_rate = self.rates / (1.0 + p.burst_extra_spikes)
        onsets = rng.poisson(np.broadcast_to((onset_rate * dt)[:, None], (u, n)))
        extra = rng.poisson(p.burst_extra_spikes * onsets)
        counts = onsets.astype(np.int64)
        if p.burst_isi_s > 0:
            # The extra spikes of a burst follow the first one after exponential
            # inter-spike intervals (mean burst_isi_s); those that fall beyond this
            # block are carried over to the next one.
            if self._carry.shape[1]:
                m = min(n, self._carry.shape[1])
                counts[:, :m] += self._carry[:, :m]
                rest = self._carry[:, m:]
                self._carry = np.zeros_like(self._carry)
                self._carry[:, : rest.shape[1]] = rest
            uu, ff = np.nonzero(extra)
            k = extra[uu, ff]
            if k.size:
                isi = rng.exponential(p.burst_isi_s, int(k.sum()))
                csum = np.cumsum(isi)
                first = np.cumsum(k) - k
                offset = csum - np.repeat(np.concatenate([[0.0], csum])[first], k)
                lag = np.minimum(np.floor(offset * p.fps + rng.random(offset.size)).astype(np.int64), self._max_lag)
                fr = np.repeat(ff, k) + lag
                ui = np.repeat(uu, k)
                inside = fr < n
                np.add.at(counts, (ui[inside], fr[inside]), 1)
                np.add.at(self._carry, (ui[~inside], fr[~inside] - n), 1)
        else:
            counts += extra  # the whole burst inside one frame
        # Spike times within the frame (uniform; ordered).
        n_s = self.fov.n_somata
        times = []
        sub = rng.random(int(counts[:n_s].sum()))
        pos = 0
        for i in range(n_s):
            fr = np.repeat(np.arange(n), counts[i])
            t = (start + fr + np.sort(sub[pos : pos + fr.size])) * dt if fr.size else np.zeros(0)
            # np.sort over the whole slice keeps times ordered only within a frame; sort fully.
            times.append(np.sort(t))
            pos += fr.size
        x = counts * self.calcium_step[:, None]
        d, self._zd = lfilter([1.0], [1.0, -self._ad], x, axis=1, zi=self._zd * self._ad)
        r, self._zr = lfilter([1.0], [1.0, -self._ar], x, axis=1, zi=self._zr * self._ar)
        # lfilter's zi is the next output's carried term; keep the last outputs as state.
        self._zd = d[:, -1:].copy()
        self._zr = r[:, -1:].copy()
        # Output at frame t reflects spikes up to t-1 (the rise takes part of a frame).
        calcium = self.p.ind.resting_nM + self._norm * (d - r)
        dff = _hill_dff(p.ind, calcium).astype(np.float32)
        fl = (self.fov.brightness[:, None] * (1.0 + dff)).astype(np.float32)
        # Neuropil: AR(1) processes with time constant neuropil_tau_s and unit SD.
        k = p.n_neuropil_components
        if k:
            e = rng.standard_normal((k, n)) * math.sqrt(1 - self._an**2)
            s, _ = lfilter([1.0], [1.0, -self._an], e, axis=1, zi=self._zn * self._an)
            if b == 0:
                # Start the processes in their stationary state, not at zero.
                s = s + rng.standard_normal((k, 1)) * self._an ** np.arange(1, n + 1)
            self._zn = s[:, -1:].copy()
            weights = np.vstack([np.ones((1, n)), p.neuropil_modulation * s])
        else:
            weights = np.ones((1, n))
        return ActivityBlock(start, fl, dff, counts.astype(np.int32), times, weights.astype(np.float32))
