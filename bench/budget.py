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
* ``seconds_per_seed``: the graph of a seed's patch has ``patch_size ** 2``
  nodes; building it (correlations over the averaged frames) and cutting it
  dominate, so the cost is taken as proportional to
  ``patch_size ** 2 x (frames / average_frames)``, with the constant
  :data:`HNCCORR_S_PER_NODE_FRAME` measured on the development machine;
* units: one per recording without tuning, one per (recording, grid point) with
  leave-one-out tuning (the harness runs every point on every recording).

The method is admitted when the estimate, scaled by ``safety`` (default 2: the
constant was measured under load and machines differ), is at most the budget.
The budget defaults to :data:`DEFAULT_BUDGET_S` (the default run's 15 minutes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from datasets.records import Recording

__all__ = ["DEFAULT_BUDGET_S", "HNCCORR_S_PER_NODE_FRAME", "Admission", "hnccorr_seconds", "admit"]

#: The default run's time (README: the main command finishes in about a quarter of an hour).
DEFAULT_BUDGET_S = 15 * 60.0
#: Seconds per (patch node x averaged frame) of one HNCcorr seed; see :func:`hnccorr_seconds`.
HNCCORR_S_PER_NODE_FRAME = 4.0e-6


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
    return seeds * int(params["patch_size"]) ** 2 * frames * HNCCORR_S_PER_NODE_FRAME


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
    from bench.harness import _points  # the units the harness would run: one idea in one place

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
