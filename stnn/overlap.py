"""How far tiles must overlap, measured on the movie being segmented.

The receptive field (:func:`stnn.tiling.receptive_field`, 162 px for the
published network) bounds the reach of *any* weights: no output pixel sees
farther. Trained weights reach much less in effect: the coarse levels that
make the field so wide contribute little far from the centre, so the
probability of a pixel barely moves when the context beyond a few tens of
pixels is cut. With the shipped weights on a simulated 488x488 movie the
largest change of any probability when tiles overlap by ``m`` px on each side
was 0.23 (16 px), 0.042 (32), 0.0012 (48), 4.1e-4 (56), 4.3e-5 (64) and
6.0e-7 (96) (``tests/benchmarks/test_tile_margin_bench.py``). A margin of 64 px instead of 168 cuts the pixels a
608-px tile recomputes from 2.7x to 1.3x of the frame at 1024x1024.

Such a margin is a property of the weights *and* the data, so it is measured
on the movie itself, before the tiled run (:func:`measure_margin`): a square
probe from the middle of the first window, with the full receptive field
around a core, gives the exact probabilities of the core; the same core with
only ``m`` px of context around it, for growing ``m``, gives the probabilities
a tile with that margin would compute. The smallest ``m`` whose largest change
stays within ``tol`` (default 1e-4, ten times below the 1e-3 that the tiled
maps must keep) is found, and one stride (8 px) more is used: one probe can
miss the worst place of the frame (shipped weights on a simulated 488x488
movie: 5.4e-5 on the probe at 56 px, but 1.3e-3 somewhere in the tiled frame;
the change falls about tenfold per 8 px). None below the receptive field ->
the receptive field. The probe runs in float32, whatever precision the movie runs in, so
that it measures the context and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .tiling import ALIGN

__all__ = ["MARGIN_TOL", "PROBE_CORE", "CANDIDATES", "SAFETY_PX", "MarginCheck", "measure_margin"]

logger = logging.getLogger(__name__)

#: Largest change of a probability allowed on the probe (the tiled maps must stay within 1e-3).
MARGIN_TOL = 1e-4
#: Side of the probe's core (px): its edges are where a cut context shows first.
PROBE_CORE = 64
#: Margins tried, smallest first (multiples of the network's stride).
CANDIDATES = (32, 40, 48, 56, 64, 80, 96, 128)
#: Added to the smallest margin that passes on the probe (one stride): the probe is one place of the frame.
SAFETY_PX = ALIGN


@dataclass(frozen=True)
class MarginCheck:
    """The margin chosen for a tiled run and the evidence for it.

    Attributes
    ----------
    margin : int
        Overlap on each side of a tile's core (px).
    source : str
        ``'measured'`` (on the movie), ``'receptive field'`` (the exact
        bound) or ``'explicit'`` (given by the caller).
    max_dp : float
        Largest change of a probability on the probe at the smallest margin
        that passed, ``margin - SAFETY_PX`` (NaN when nothing was measured).
    tried : dict
        ``{margin: max_dp}`` for every candidate run.
    note : str
        One line for people.
    """

    margin: int
    source: str
    max_dp: float = float("nan")
    tried: dict[int, float] | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready; candidate margins as strings)."""
        d = asdict(self)
        d["tried"] = {str(k): v for k, v in (self.tried or {}).items()}
        return d


def measure_margin(
    forward: Callable[[torch.Tensor], torch.Tensor],
    load: Callable[[slice, slice], torch.Tensor],
    frame: tuple[int, int],
    exact: int,
    *,
    tol: float = MARGIN_TOL,
    core: int = PROBE_CORE,
    candidates: tuple[int, ...] = CANDIDATES,
) -> MarginCheck:
    """Smallest tile margin whose probabilities stay within ``tol`` of the exact ones on a probe.

    Parameters
    ----------
    forward : callable
        ``forward(x)`` -> neuron probabilities ``(1, h, w)`` of a whitened
        window ``(1, 1, T, h, w)`` (float32 network).
    load : callable
        ``load(rows, cols)`` -> the whitened first window of that region.
    frame : (int, int)
        Frame height and width.
    exact : int
        The receptive-field margin (multiple of 8): the upper bound.
    tol : float
        Largest change of a probability accepted.
    core : int
        Side of the probe's core (multiple of 8).
    candidates : tuple of int
        Margins tried, smallest first; those >= ``exact`` are skipped.

    Returns
    -------
    MarginCheck
        The smallest passing candidate plus :data:`SAFETY_PX` (at most
        ``exact``); ``source='receptive field'`` when the frame is too small
        for a probe or no candidate passes.
    """
    h, w = (int(s) for s in frame)
    side = core + 2 * exact
    if h < side or w < side:
        return MarginCheck(exact, "receptive field", note=f"frame {h}x{w} smaller than the {side}-px probe")
    # The probe starts on a multiple of 8, as every tile does (stride alignment).
    r0 = (h - side) // 2 // ALIGN * ALIGN
    c0 = (w - side) // 2 // ALIGN * ALIGN
    x = load(slice(r0, r0 + side), slice(c0, c0 + side))
    with torch.inference_mode():
        ref = forward(x)[..., exact : exact + core, exact : exact + core]
        tried: dict[int, float] = {}
        for m in sorted(c for c in candidates if c < exact):
            lo, hi = exact - m, exact + core + m
            p = forward(x[..., lo:hi, lo:hi])[..., m : m + core, m : m + core]
            tried[m] = float((p - ref).abs().max())
            logger.debug("tile margin %d px: max |dp| %.2e on the probe", m, tried[m])
            if tried[m] <= tol:
                margin = min(m + SAFETY_PX, exact)
                note = (
                    f"measured on the movie: max |dp| {tried[m]:.1e} <= {tol:.0e} at {m} px on a {side}-px probe, "
                    f"+{margin - m} px of safety"
                )
                return MarginCheck(margin, "measured", tried[m], tried, note)
    note = f"no margin below the receptive field kept max |dp| <= {tol:.0e} on the movie"
    return MarginCheck(exact, "receptive field", 0.0, tried, note)
