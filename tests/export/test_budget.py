"""The rule that admits HNCcorr to '--methods all' when the run's time allows it."""

from __future__ import annotations

import numpy as np
import pytest

from bench.budget import DEFAULT_BUDGET_S, admit
from bench.plan import RunConfig, plan_run
from bench.units import WeightsCache
from datasets.movies import ArrayMovie
from datasets.records import Dataset, Recording
from methods.base import Method
from methods.hnccorr import HNCcorr


def recording(side: int, frames: int, um_per_px: float = 0.78, name: str = "") -> Recording:
    # A zero movie of the right shape, without the memory (only shapes matter to the estimate).
    movie = ArrayMovie(np.broadcast_to(np.zeros((1, side, side), np.uint16), (frames, side, side)))
    return Recording(name or f"r{side}x{frames}", movie, 30.0, um_per_px)


def test_estimate_grows_with_frame_area_and_length():
    m = HNCcorr()
    small, wide, long = recording(96, 600), recording(192, 600), recording(96, 1200)
    s, w, t = (m.estimate_s(r, m.default_params(r)) for r in (small, wide, long))
    assert w == pytest.approx(4 * s, rel=0.1)  # four times the seed blocks
    assert s < t < 1.5 * s  # the graph cut, not the frames, dominates (measured: 18.3 s vs 24.6 s for 4x frames)


def test_tiny_recordings_are_admitted_and_the_default_data_is_not():
    m = HNCcorr()
    tiny = admit(m, [recording(96, 600), recording(96, 600)], tune="none")
    assert tiny.admitted and tiny.estimate_s < DEFAULT_BUDGET_S
    # The default run: 3 synthetic test recordings of 256 x 256 x 2,400 frames, leave-one-out on a 4-point grid.
    default = admit(m, [recording(256, 2400)] * 3, tune="loo")
    assert not default.admitted and "over the 900 s budget" in default.reason
    # Leave-one-out multiplies the units by the grid; a larger budget admits it.
    points = len(m.param_grid(recording(256, 2400))["percentage_of_seeds"]) * 2
    assert default.estimate_s == pytest.approx(points * admit(m, [recording(256, 2400)] * 3, tune="none").estimate_s)
    assert admit(m, [recording(256, 2400)] * 3, tune="loo", budget_s=10 * default.estimate_s).admitted


def test_a_method_without_a_time_model_is_not_admitted():
    class Quiet(Method):
        name = "quiet"

    verdict = admit(Quiet(), [recording(96, 600)], tune="none")
    assert not verdict.admitted and "no time model" in verdict.reason


@pytest.mark.parametrize(("side", "included"), [(96, True), (256, False)])
def test_all_adds_hnccorr_only_when_it_fits_and_says_why_in_the_notes(tmp_path, side, included):
    if not HNCcorr().is_available()[0]:
        pytest.skip("hnccorr is not installed")
    ds = Dataset("budget", [recording(side, 600 if side == 96 else 2400, name=f"r{i}") for i in range(3)])
    config = RunConfig("budget", (), tune="none", if_time_allows=("hnccorr",))
    plan = plan_run(config, ds, list(ds.recordings), WeightsCache(tmp_path))
    assert ("hnccorr" in plan.adapters) is included
    assert len([u for u in plan.units if u.method == "hnccorr"]) == (3 if included else 0)
    (note,) = [n for n in plan.notes if n.startswith("hnccorr: estimated")]
    assert ("included in 'all'" in note) is included and ("left out of 'all'" in note) is (not included)


def test_only_methods_with_a_time_model_wait_for_admission():
    from bench.plan import slow_methods

    slow = slow_methods()
    assert "stnn-online" not in slow  # out of 'all' for another reason than time: named only
    assert ("hnccorr" in slow) is HNCcorr().is_available()[0]
