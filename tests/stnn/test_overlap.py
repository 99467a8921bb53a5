"""Tile margins measured on the movie (stnn.overlap): the search, re-cut plans, bad input, shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets.errors import InputError
from stnn import tiling
from stnn.cli import main
from stnn.overlap import MARGIN_TOL, SAFETY_PX, measure_margin
from stnn.tiling import parse_margin
from stnn.tune import f1_score


def _box(radius: int):
    """A forward pass whose output pixel is the mean of a (2r+1)^2 box of the time-averaged input."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        img = x.mean(dim=2)
        return F.avg_pool2d(img, 2 * radius + 1, stride=1, padding=radius, count_include_pad=True)[:, 0]

    return forward


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    return torch.rand(1, 1, 4, 520, 520) + 1.0  # positive: a cut context always changes a box mean


def _load(data):
    return lambda rows, cols: data[..., rows, cols]


@pytest.mark.parametrize(("radius", "passing"), [(20, 32), (45, 48), (70, 80)])
def test_the_smallest_margin_that_covers_the_reach_plus_one_stride_is_chosen(data, radius, passing):
    check = measure_margin(_box(radius), _load(data), (520, 520), exact=168)
    assert check.source == "measured" and check.margin == passing + SAFETY_PX
    assert check.tried[passing] <= MARGIN_TOL and check.max_dp == check.tried[passing]
    # Every smaller candidate cut the box and was refused; nothing beyond the passing one ran.
    assert all(v > MARGIN_TOL for m, v in check.tried.items() if m < passing)
    assert max(check.tried) == passing
    assert "measured on the movie" in check.note and "+8 px of safety" in check.note


def test_the_safety_step_never_passes_the_receptive_field(data):
    check = measure_margin(_box(20), _load(data), (520, 520), exact=40, candidates=(32,))
    assert check.source == "measured" and check.margin == 40


def test_a_reach_beyond_every_candidate_keeps_the_receptive_field(data):
    check = measure_margin(_box(150), _load(data), (520, 520), exact=168)
    assert check.source == "receptive field" and check.margin == 168
    assert set(check.tried) == {32, 40, 48, 56, 64, 80, 96, 128}


def test_a_frame_smaller_than_the_probe_is_not_measured():
    def never(*_):
        raise AssertionError("nothing may be read or run")

    check = measure_margin(never, never, (300, 900), exact=168)
    assert check.source == "receptive field" and check.margin == 168 and "smaller than the 400-px probe" in check.note


def test_with_margin_recuts_the_same_tile_into_fewer_tiles(monkeypatch):
    net = torch.nn.Identity()
    monkeypatch.setitem(tiling._RF_CACHE, tiling._arch_key(net), 162)
    plan = tiling.plan_tiles((2048, 2048), net, 608, memory_bytes=2**40)
    assert plan.margin == 168 and plan.margin_source == "receptive field" and len(plan.tiles) == 49
    cut = tiling.with_margin(plan, 64, "measured", "probe")
    assert cut.tile == 608 and cut.margin == 64 and len(cut.tiles) == 16 and cut.margin_note == "probe"
    assert cut.processed_fraction < plan.processed_fraction / 2
    cover = np.zeros((2048, 2048), np.int32)
    for t in cut.tiles:
        cover[t.core_rows, t.core_cols] += 1
        assert t.rows.stop - t.rows.start <= 608 and t.rows.start % 8 == 0 and t.cols.start % 8 == 0
    assert (cover == 1).all()
    with pytest.raises(InputError, match="does not fit a 608-px tile"):
        tiling.with_margin(plan, 304, "explicit")
    explicit = tiling.plan_tiles((2048, 2048), net, 200, memory_bytes=2**40, margin=64)
    assert explicit.margin == 64 and explicit.margin_source == "explicit" and explicit.tiled


def test_parse_margin_and_its_bad_input():
    assert parse_margin("auto") == "auto" and parse_margin("EXACT") == "exact" and parse_margin("64") == 64
    assert parse_margin(None) == "auto" and parse_margin(48) == 48
    for bad in ("12", "0", "-8", "wide"):
        with pytest.raises(InputError, match="tile margin must be"):
            parse_margin(bad)


def test_cli_bad_tile_margin_exits_2(tmp_path, capsys):
    path = tmp_path / "m.npy"
    np.save(path, np.ones((20, 16, 16), np.uint16))
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(path), "--out", str(tmp_path / "o.npz"), "--fps", "6", "--um-per-px", "1",
              "--tile-margin", "12"])
    assert exc.value.code == 2
    assert "multiple of 8" in capsys.readouterr().err


@pytest.mark.slow
def test_shipped_weights_with_the_measured_margin_equal_untiled_at_488():
    """The issue's acceptance: 488x488, float32, |dp| <= 1e-3 and mask F1 >= 0.99, with a margin measured here."""
    from datasets.synthetic.params import SimulationParams
    from datasets.synthetic.simulate import simulate
    from stnn.infer import segment

    frames = []
    simulate(SimulationParams(height=488, width=488, n_frames=600), 5, lambda s, f, d: frames.append(f))
    movie = np.concatenate(frames)
    kw = dict(fps=30.0, um_per_px=0.78, device="cpu", precision="fp32")
    whole = segment(movie, "synthetic", tile=None, **kw)
    tiled = segment(movie, "synthetic", tile=352, tile_margin="auto", **kw)
    t = tiled.timings
    assert t.tile_margin_source.startswith("measured") and t.tile_margin < 168, t.tile_margin_source
    assert t.n_tiles > 1
    # The probe is work on this movie: in the pipeline's time, not in the initialisation.
    assert t.margin_probe_s > 0 and whole.timings.margin_probe_s == 0
    assert t.process_s == pytest.approx(t.preprocess_s + t.margin_probe_s + t.network_s + t.postprocess_s)
    assert np.abs(tiled.prob_maps - whole.prob_maps).max() <= 1e-3
    assert whole.masks.n > 0 and f1_score(whole.masks, tiled.masks)[2] >= 0.99
