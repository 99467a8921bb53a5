"""Whether a slow method fits a run's time: the rule that lets HNCcorr into ``--methods all``.

HNCcorr is left out of ``all`` (``in_default_run = False``) because one
256 x 256 recording takes minutes on two cores. Rather than a fixed yes or no,
the harness can ask :func:`admit` with the run's recordings and time budget:

    estimated seconds = sum over the run's units of
        seeds x seconds_per_seed(patch_size, averaged frames)

* ``seeds``: HNCcorr's seeder keeps the best pixel of each ``seeder_grid_size``
  block, then the top ``percentage_of_seeds`` of them:
  ``percentage_of_seeds x ceil(H / g) x ceil(W / g)`` (an upper bound: seeds
  inside cells already found are skipped);
* ``seconds_per_seed``: HNCcorr compares every pair of the ``n = patch_size ** 2``
  pixels of a seed's patch, so a seed costs ``n ** 2 x (a + b x averaged
  frames)`` with ``a`` = :data:`HNCCORR_S_PER_PAIR` and ``b`` =
  :data:`HNCCORR_S_PER_PAIR_FRAME`, fitted to CPU seconds of
  ``HNCcorr.segment`` (one BLAS thread) on a 96 x 96 crop of ``synthetic``
  syn07, 14 seeds of a 45 px patch: 18.3 s with 60 averaged frames, 24.6 s
  with 240. Checked on ``synthetic-tiny`` tiny00 with a 31 px patch and 160
  seeds: 35.9 s measured, 46 s estimated (a ``patch_size ** 2`` model would
  have said 96 s). Measured on the 2-core Intel Xeon development machine while
  other agents loaded it (wall times were 3-4 times the CPU times, so the rule
  counts CPU seconds);
* units: one per recording without tuning, one per (recording, grid point) with
  leave-one-out tuning (the harness runs every point on every recording).

The method is admitted when the estimate, scaled by ``safety`` (default 2:
machines differ, and the harness also reads and averages the movie), is at most
the budget. Examples: ``synthetic-tiny`` (2 x 96 x 96 x 600, no tuning) ~150 s,
admitted; the default run (3 x 256 x 256 x 2,400, leave-one-out on 4 points)
~8,600 s, refused (~2,150 s without tuning: refused as well).
The budget defaults to :data:`DEFAULT_BUDGET_S` (the default run's 15 minutes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from datasets.records import Recording

__all__ = [
    "DEFAULT_BUDGET_S",
    "HNCCORR_S_PER_PAIR",
    "HNCCORR_S_PER_PAIR_FRAME",
    "Admission",
    "hnccorr_seconds",
    "admit",
]

#: The default run's time (README: the main command finishes in about a quarter of an hour).
DEFAULT_BUDGET_S = 15 * 60.0
#: CPU seconds per pixel pair of one HNCcorr seed's patch, and per pair and averaged frame (module docstring).
HNCCORR_S_PER_PAIR = 2.8e-7
HNCCORR_S_PER_PAIR_FRAME = 6.1e-10


@dataclass(frozen=True)
class Admission:
    """The decision for one method, with the numbers behind it."""

    method: str
    admitted: bool
    estimate_s: float
    budget_s: float
    reason: str


def hnccorr_seconds(recording: Recording, params: dict) -> float:
    """Estimated ``HNCcorr.segment`` seconds for one recording and one parameter set (see the module docstring)."""
    h, w = recording.frame_shape
    g = max(1, int(params["seeder_grid_size"]))
    seeds = float(params["percentage_of_seeds"]) * math.ceil(h / g) * math.ceil(w / g)
    frames = math.ceil(recording.n_frames / max(1, int(params["average_frames"])))
    pairs = float(int(params["patch_size"]) ** 2) ** 2
    return seeds * pairs * (HNCCORR_S_PER_PAIR + HNCCORR_S_PER_PAIR_FRAME * frames)


def admit(
    method,
    recordings: Sequence[Recording],
    *,
    tune: str = "loo",
    max_grid: int = 12,
    budget_s: float = DEFAULT_BUDGET_S,
    safety: float = 2.0,
) -> Admission:
    """Whether ``method`` (an HNCcorr adapter) fits the run's time budget.

    Parameters
    ----------
    method : methods.hnccorr.HNCcorr
        The adapter: its ``default_params`` and ``param_grid`` give each unit's parameters.
    recordings : sequence of Recording
        The recordings the run evaluates (and tunes on).
    tune, max_grid : str, int
        As in :class:`bench.harness.RunConfig`: with ``"loo"`` every grid point runs on every recording.
    budget_s : float
        Seconds the run may spend on this method.
    safety : float
        Factor on the estimate.

    Returns
    -------
    Admission
    """
    from bench.plan import _points  # the units the harness would run: one idea in one place

    total = 0.0
    for rec in recordings:
        base = method.default_params(rec)
        total += sum(hnccorr_seconds(rec, {**base, **p}) for p in _points(method, rec, tune, max_grid))
    estimate = total * safety
    ok = estimate <= budget_s
    verdict = "within" if ok else "over"
    reason = (
        f"{method.name}: estimated {estimate:.0f} s (x{safety:g} safety) for {len(recordings)} recording(s), "
        f"{verdict} the {budget_s:.0f} s budget"
    )
    return Admission(method.name, ok, estimate, budget_s, reason)
