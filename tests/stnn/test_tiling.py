"""Tiled STNeuroNet inference: receptive field, tile plans, equality with the untiled result, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from stnn import tiling
from stnn.cli import main
from stnn.infer import segment
from stnn.model import STNeuroNet
from stnn.tune import f1_score

# Captured at import: the autouse fixture of tests/conftest.py points BENCH_DATA at an empty folder.
_DATA = Path(os.environ.get("BENCH_DATA", "/nonexistent"))


@pytest.fixture(scope="module")
def small():
    """A randomly initialised STNeuroNet with one layer per dense stack (receptive field ~46 px, fast)."""
    torch.manual_seed(0)
    net = STNeuroNet(dense_layers=(1, 1, 1)).eval()
    tiling.receptive_field(net)  # measured once per module (cached)
    return net


def _movie(t, h, w, seed=0):
    return np.random.default_rng(seed).poisson(100, size=(t, h, w)).astype(np.uint16)


def test_nothing_beyond_the_receptive_field_changes_an_output(small):
    rf = tiling.receptive_field(small)
    assert 16 < rf < 100
    torch.manual_seed(1)
    x = torch.randn(1, 1, 8, 8, 256)
    moved = []
    with torch.inference_mode():
        ref = small(x)[0, :, 4]
        for p in range(128, 136):  # every phase modulo the network's stride
            for q in (p - rf - 1, p + rf + 1):
                y = x.clone()
                y[..., q] += 5.0
                assert torch.equal(small(y)[0, :, 4, p], ref[:, p])
            y = x.clone()
            y[..., p - rf : p + rf + 1] += 5.0  # inside the field
            moved.append(not torch.equal(small(y)[0, :, 4, p], ref[:, p]))
    assert any(moved)


@pytest.mark.slow
def test_published_network_receptive_field_matches_the_stored_values(monkeypatch):
    monkeypatch.setattr(tiling, "_RF_CACHE", {})
    assert tiling.receptive_field(STNeuroNet()) == 162
    assert tiling.receptive_field(STNeuroNet(tf_compat=True)) == 164
    assert tiling.tile_margin(STNeuroNet()) == 168 and tiling.min_tile(168) == 344


def test_axis_splits_partition_and_respect_the_tile():
    for length, tile, margin in [(2048, 608, 168), (1024, 1000, 168), (131, 112, 48), (4096, 1000, 168)]:
        spans = tiling._axis_splits(length, tile, margin)
        assert spans[0][2] == 0 and spans[-1][3] == length
        for (s0, s1, c0, c1), nxt in zip(spans, spans[1:] + [None]):
            assert s0 % 8 == 0 and c0 % 8 == 0 and s1 - s0 <= tile and c1 > c0
            assert s0 == max(c0 - margin, 0) and s1 == min(c1 + margin, length)
            if nxt is not None:
                assert nxt[2] == c1


@pytest.mark.parametrize("shape", [(131, 125), (136, 128)])  # sides not multiples of 8 / multiples of 8
def test_tiled_maps_and_masks_equal_untiled(small, shape):
    movie = _movie(16, *shape)
    kw = dict(fps=6.0, um_per_px=0.78, device="cpu", batch_frames=16, min_area=3)
    whole = segment(movie, small, tile=None, threshold=0.5, **kw)
    thr = float(np.quantile(whole.prob_maps, 0.9))  # random weights: make sure there are masks to compare
    whole = segment(movie, small, tile=None, threshold=thr, **kw)
    tiled = segment(movie, small, tile=112, threshold=thr, **kw)
    assert tiled.timings.tile == 112 and tiled.timings.n_tiles == 6 and tiled.timings.tile_margin == 48
    assert whole.timings.n_tiles == 1 and whole.timings.tile == 0
    diff = np.abs(tiled.prob_maps - whole.prob_maps).max()
    assert diff <= 1e-3, diff
    assert whole.masks.n > 0
    assert f1_score(whole.masks, tiled.masks)[2] >= 0.99


@pytest.mark.slow
def test_shipped_weights_tiled_equal_untiled_on_a_synthetic_movie():
    path = _DATA / "synthetic-tiny" / "tiny00" / "movie.h5"
    if not path.is_file():
        pytest.skip(f"{path} is not present (set BENCH_DATA)")
    import h5py

    with h5py.File(path) as f:
        movie = np.tile(f["data"][:], (1, 4, 4))  # 600 x 384 x 384: 120 binned frames, four times the tiny field
    kw = dict(fps=30.0, um_per_px=0.78, device="cpu")
    whole = segment(movie, "synthetic", tile=None, **kw)
    tiled = segment(movie, "synthetic", tile=376, **kw)
    assert tiled.timings.n_tiles == 4
    assert np.abs(tiled.prob_maps - whole.prob_maps).max() <= 1e-3
    assert whole.masks.n > 0 and f1_score(whole.masks, tiled.masks)[2] >= 0.99


def test_tile_below_the_minimum_says_the_minimum(small):
    smallest = tiling.min_tile(tiling.tile_margin(small))
    with pytest.raises(InputError, match=f"minimum of {smallest} px"):
        tiling.plan_tiles((500, 500), small, smallest - 8)


def test_frame_smaller_than_one_tile_runs_untiled(small):
    plan = tiling.plan_tiles((100, 90), small, 120, memory_bytes=2**34)
    assert not plan.tiled and plan.tile == 0 and len(plan.tiles) == 1 and "untiled" in plan.reason


def test_explicit_tile_that_does_not_fit_names_the_largest_that_fits(small):
    per_voxel = tiling.bytes_per_voxel("cpu")
    free = tiling.BASE_BYTES + tiling.estimate_bytes(200, 120, 1, per_voxel)
    with pytest.raises(InputError, match="largest that fits is 200 px"):
        tiling.plan_tiles((1000, 1000), small, 400, memory_bytes=free)
    assert tiling.plan_tiles((1000, 1000), small, 200, memory_bytes=free).tile == 200


def test_auto_tile_follows_the_free_memory(small):
    per_voxel = tiling.bytes_per_voxel("cpu")
    free = int((tiling.BASE_BYTES + tiling.estimate_bytes(256, 120, 1, per_voxel)) / tiling.MEMORY_FRACTION)
    plan = tiling.plan_tiles((2048, 2048), small, "auto", memory_bytes=free)
    assert plan.tile == 256 and plan.tiled and plan.source == "auto"
    assert tiling.plan_tiles((200, 200), small, "auto", memory_bytes=free).tile == 0
    assert tiling.available_memory("cpu") > 0


class _Unreadable:
    """A movie whose frames must not be read (the tile is refused before anything runs)."""

    shape = (50, 400, 400)
    dtype = np.dtype(np.uint16)
    ndim = 3

    def __getitem__(self, key):
        raise AssertionError("the movie was read before the tile was checked")


def test_segment_refuses_a_tile_before_reading_the_movie(small, monkeypatch):
    monkeypatch.setattr(tiling, "available_memory", lambda device: 700 * 2**20)
    with pytest.raises(InputError, match=r"is free; the largest that fits is \d+ px"):
        segment(_Unreadable(), small, fps=6.0, um_per_px=1.0, device="cpu", tile=200)


def test_preprocess_chunk_keeps_pixels_per_step():
    assert tiling.preprocess_chunk((512, 512)) == 32 and tiling.preprocess_chunk((256, 256)) == 32
    assert tiling.preprocess_chunk((2048, 2048)) == 2 and tiling.preprocess_chunk((8192, 8192)) == 1


def test_cli_tile_below_minimum_exits_2(tmp_path, capsys):
    path = tmp_path / "m.npy"
    np.save(path, _movie(20, 16, 16))
    out = str(tmp_path / "o.npz")
    code = main(["segment", str(path), "--out", out, "--fps", "6", "--um-per-px", "1", "--tile", "64"])
    assert code == 2
    assert "minimum of 344 px" in capsys.readouterr().err


def test_parse_tile():
    assert tiling.parse_tile("auto") == "auto" and tiling.parse_tile("off") is None and tiling.parse_tile("512") == 512
    with pytest.raises(InputError):
        tiling.parse_tile("big")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_tiled_equals_untiled_on_cuda(small):
    free = tiling.available_memory("cuda")
    assert free > 0 and tiling.bytes_per_voxel("cuda") > 0
    net = small.to("cuda")
    movie = _movie(16, 131, 125)
    kw = dict(fps=6.0, um_per_px=0.78, device="cuda", batch_frames=16, amp=False, threshold=0.5)
    whole = segment(movie, net, tile=None, **kw)
    tiled = segment(movie, net, tile=112, **kw)
    assert tiled.timings.n_tiles == 6
    assert np.abs(tiled.prob_maps - whole.prob_maps).max() <= 1e-3
    plan = tiling.plan_tiles((4096, 4096), net, "auto", device="cuda")
    assert plan.tiled and plan.estimated_bytes <= free * tiling.MEMORY_FRACTION
    small.to("cpu")
