"""Leave-one-out tuning: a pure function over stored scores.

The paper's procedure: for each held-out recording, the parameter point with
the best mean F1 on the other recordings of its fold is chosen, and the
held-out recording is scored with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from datasets.records import Fold

__all__ = ["Choice", "choose_points"]


@dataclass(frozen=True)
class Choice:
    """The point chosen for one held-out recording."""

    fold: int
    held_out: str
    point: str  # the candidate's key
    mean_f1: float  # mean F1 over the fold's training recordings (NaN without any)
    tuned_on: tuple[str, ...]


def choose_points(f1: Mapping[str, Mapping[str, float]], folds: Sequence[Fold]) -> list[Choice]:
    """For each fold whose held-out recording has candidates, the best point on the others.

    Parameters
    ----------
    f1 : mapping
        recording name -> {point key -> F1}, in candidate order (a failed point
        scores 0; a point missing on a training recording counts as 0).
    folds : sequence of Fold

    Returns
    -------
    list of Choice
        The first best point on ties; the held-out recording's first point
        when the fold has no training recording.
    """
    out = []
    for fold in folds:
        held = fold.held_out.name
        cands = list(f1.get(held, {}))
        if not cands:
            continue  # not run yet (interrupted)
        train = tuple(r.name for r in fold.train)
        if not train:
            out.append(Choice(fold.index, held, cands[0], math.nan, train))
            continue
        means = [sum(f1.get(r, {}).get(p, 0.0) for r in train) / len(train) for p in cands]
        best = max(range(len(cands)), key=lambda i: (means[i], -i))
        out.append(Choice(fold.index, held, cands[best], means[best], train))
    return out
