"""Whether a slow method fits a run's time: the rule that lets HNCcorr into ``--methods all``.

A method with ``in_default_run = False`` (HNCcorr: minutes per recording on
two cores) is not dropped from ``--methods all`` outright. The run asks
:func:`admit` with its recordings, tuning and time budget:

    estimate = safety x sum over the method's units of method.estimate_s(recording, params)

* units: one per recording without tuning, one per (recording, grid point)
  with leave-one-out tuning (the harness runs every point on every recording);
* ``estimate_s``: the method's own time model (:meth:`methods.base.Method.estimate_s`;
  HNCcorr's counts seeds and pixel pairs per seed);
* ``safety`` (default 2): machines differ, and the harness also reads and
  averages the movie.

The method runs when the estimate is at most the budget, :data:`DEFAULT_BUDGET_S`
(the default run's 15 minutes); either way the decision and its numbers are a
note in the run's report. A method without a time model is not admitted.
Examples for HNCcorr: ``synthetic-tiny`` (2 x 96 x 96 x 600, no tuning) ~150 s,
admitted; the default run (3 x 256 x 256 x 2,400, leave-one-out on 4 points), refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasets.records import Recording

__all__ = ["DEFAULT_BUDGET_S", "Admission", "admit"]

#: The default run's time (README: the main command finishes in about a quarter of an hour).
DEFAULT_BUDGET_S = 15 * 60.0


@dataclass(frozen=True)
class Admission:
    """The decision for one method, with the numbers behind it."""

    method: str
    admitted: bool
    estimate_s: float
    budget_s: float
    reason: str


def admit(
    method,
    recordings: Sequence[Recording],
    *,
    tune: str = "loo",
    max_grid: int = 12,
    budget_s: float = DEFAULT_BUDGET_S,
    safety: float = 2.0,
) -> Admission:
    """Whether ``method`` fits the run's time budget.

    Parameters
    ----------
    method : methods.base.Method
        The adapter: its ``default_params``, ``param_grid`` and ``estimate_s`` give each unit's time.
    recordings : sequence of Recording
        The recordings the run evaluates (and tunes on).
    tune, max_grid : str, int
        As in :class:`bench.plan.RunConfig`: with ``"loo"`` every grid point runs on every recording.
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
        for point in _points(method, rec, tune, max_grid):
            est = method.estimate_s(rec, {**method.default_params(rec), **point})
            if est is None:
                return Admission(method.name, False, float("nan"), budget_s,
                                 f"{method.name}: no time model to check it against the {budget_s:.0f} s budget")
            total += est
    estimate = total * safety
    ok = estimate <= budget_s
    verdict = "within" if ok else "over"
    reason = (
        f"{method.name}: estimated {estimate:.0f} s (x{safety:g} safety) for {len(recordings)} recording(s), "
        f"{verdict} the {budget_s:.0f} s budget"
    )
    return Admission(method.name, ok, estimate, budget_s, reason)
