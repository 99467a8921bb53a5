"""What motion correction leaves in a movie: residual motion and dark, ragged registration borders.

A registered real movie keeps a small residual jitter of the field of view,
and the margins that the registration shifted out of the scanned field are
filled with nothing (no photons: offset and read noise only). Their edge is
ragged: it differs from row to row (non-rigid, piecewise registration) and
from frame to frame (each frame's own shift). In a real Neurofinder training
movie the column means rise from the dark level (5-8 counts) to the interior
(~140) over about 8 columns, around 13 px from the left and 10 px from the
right edge (``real-movie-stats.md``).

The edge of each border is ``width + ragged * (a(line) + EDGE_TIME_SHARE * b(t))``
with ``a`` a smooth unit-SD profile along the border (drawn once from
``default_rng([seed, 5])``) and ``b`` a slow unit-SD AR(1) process in time
(block ``k`` draws from ``default_rng([seed, 5, k])``, its state carried from
block to block), so the borders are deterministic for a seed and cost O(pixels
of one block). The edge moves little in time: pixels that a moving edge turns
on and off together correlate with their neighbours almost perfectly, and
the real movie's correlation image (99th percentile 0.26 although about 3 %
of its pixels lie in the ramp of a border) shows that its edges are mostly
static.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi

from datasets.synthetic.params import SimulationParams

__all__ = ["RegistrationBorders", "MotionWalk"]

#: Correlation time (frames) of the frame-to-frame part of the border edge.
_EDGE_TAU_FRAMES = 20.0
#: SD of the frame-to-frame movement of an edge, as a share of ``border_ragged_px``.
EDGE_TIME_SHARE = 0.15


class RegistrationBorders:
    """Per-frame mask of the pixels that the registration left inside the field of view."""

    def __init__(self, p: SimulationParams, seed: int) -> None:
        self.p = p
        self.seed = int(seed)
        self.widths = np.array([p.border_left_px, p.border_right_px, p.border_top_px, p.border_bottom_px])
        self.active = bool(self.widths.any())
        rng = np.random.default_rng([self.seed, 5])
        # One smooth profile per side, along the border (rows for left/right, columns for top/bottom).
        self.profiles = [self._profile(rng, n) for n in (p.height, p.height, p.width, p.width)]
        self._a = math.exp(-1.0 / _EDGE_TAU_FRAMES)
        self._state = np.zeros(4)

    @staticmethod
    def _profile(rng: np.random.Generator, n: int) -> np.ndarray:
        f = ndi.gaussian_filter1d(rng.standard_normal(n), sigma=max(n / 24, 1.0), mode="wrap")
        sd = f.std()
        return (f - f.mean()) / (sd if sd > 0 else 1.0)

    def _jitter(self, b: int, n: int) -> np.ndarray:
        """(n, 4) unit-SD AR(1) processes, stationary from the first frame."""
        rng = np.random.default_rng([self.seed, 5, int(b)])
        e = rng.standard_normal((n, 4)) * math.sqrt(1 - self._a**2)
        out = np.empty((n, 4))
        s = rng.standard_normal(4) if b == 0 else self._state
        for k in range(n):
            s = self._a * s + e[k]
            out[k] = s
        self._state = s
        return out

    def mask(self, b: int, n: int) -> np.ndarray:
        """Bool (n, H, W): True inside the registered field of view for the block's frames."""
        p = self.p
        h, w = p.height, p.width
        jit = self._jitter(b, n)
        r = p.border_ragged_px
        cols = np.arange(w)[None, None, :]
        rows = np.arange(h)[None, :, None]
        # edge[s][t, line]: width of side s on that line of frame t (px).
        edge = [
            np.rint(self.widths[s] + r * (self.profiles[s][None, :] + EDGE_TIME_SHARE * jit[:, s : s + 1])).clip(0)
            for s in range(4)
        ]
        inside = (cols >= edge[0][:, :, None]) & (cols < w - edge[1][:, :, None])
        inside &= (rows >= edge[2][:, None, :]) & (rows < h - edge[3][:, None, :])
        return inside


class MotionWalk:
    """Residual motion after registration: a slow, bounded random walk of integer shifts (px)."""

    def __init__(self, p: SimulationParams, seed: int) -> None:
        self.seed = int(seed)
        self.amplitude_px = p.motion_um / p.um_per_px
        self._pos = np.zeros(2)

    def shifts(self, b: int, n: int) -> np.ndarray:
        """Integer (dy, dx) of each of the block's n frames; block ``b`` draws from ``default_rng([seed, 4, b])``."""
        m = self.amplitude_px
        rng = np.random.default_rng([self.seed, 4, int(b)])
        steps = rng.normal(0, 0.15 * m, (n, 2))
        walk = np.empty((n, 2))
        pos = self._pos
        for k in range(n):
            pos = np.clip(0.98 * pos + steps[k], -m, m)
            walk[k] = pos
        self._pos = pos
        return np.round(walk).astype(int)
