"""The HNCcorr adapter with the real package (skipped when hnccorr is not installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench.metrics import match
from datasets.errors import InputError
from datasets.movies import ArrayMovie
from datasets.records import Recording
from methods._compat import numpy_with_aliases
from methods.hnccorr import HNCcorr, average_frames
from tests.methods.test_suite2p import synthetic_recording

TINY_CENTRES = [(8, 9), (9, 23), (23, 15)]


def tiny_recording() -> Recording:
    return synthetic_recording(shape=(32, 32), n_frames=600, centres=TINY_CENTRES, seed=1, um_per_px=1.2)


def test_default_params_follow_the_pixel_size():
    rec = tiny_recording()
    p = HNCcorr().default_params(rec)
    # d = 10 px: about HNCcorr's own defaults (tuned for Neurofinder's ~1.15 um pixels)
    assert p["postprocessor_preferred_cell_size"] == 79
    assert (p["postprocessor_min_cell_size"], p["postprocessor_max_cell_size"]) == (40, 198)
    assert p["patch_size"] == 29 and p["negative_seed_circle_radius"] == 10
    # HNCcorr's published 10 frames at 7 Hz (1.4 s), kept in seconds at this recording's rate
    assert p["average_frames"] == round(1.4 * rec.fps) and p["percentage_of_seeds"] == 0.4
    coarse = Recording("c", ArrayMovie(np.zeros((20, 64, 64))), fps=30.0, um_per_px=2.4)
    q = HNCcorr().default_params(coarse)
    assert q["postprocessor_preferred_cell_size"] == 20 and q["patch_size"] % 2 == 1
    assert HNCcorr().check_params(coarse, {}) == q
    assert set(HNCcorr().param_grid(rec)) == {"percentage_of_seeds", "postprocessor_min_cell_size"}
    assert HNCcorr.default_timeout_s >= 600


@pytest.mark.parametrize(
    "params, message",
    [
        ({"percentage_of_seeds": 1.5}, "method 'hnccorr': parameter 'percentage_of_seeds' must be <= 1"),
        ({"percentage_of_seeds": "all"}, "method 'hnccorr': parameter 'percentage_of_seeds' must be a number"),
        ({"average_frames": 0}, "method 'hnccorr': parameter 'average_frames' must be >= 1"),
        ({"patch_size": 30}, "method 'hnccorr': parameter 'patch_size' must be odd"),
        ({"patch_size": 41}, r"method 'hnccorr': parameter 'patch_size' \(41\) exceeds the frame"),
        ({"postprocessor_min_cell_size": 500}, "method 'hnccorr': parameters 'postprocessor_min_cell_size' <="),
        ({"negative_seed_circle_radius": 14}, "method 'hnccorr': parameter 'negative_seed_circle_radius'"),
        ({"seeds": 0.3}, "method 'hnccorr' has no parameter"),
    ],
)
def test_bad_parameters_are_input_errors(params, message):
    with pytest.raises(InputError, match=message):
        HNCcorr().segment(tiny_recording(), params)


def test_frames_are_averaged_in_blocks():
    movie = np.arange(25 * 2 * 3, dtype=np.float32).reshape(25, 2, 3)
    rec = Recording("a", ArrayMovie(movie), fps=10.0, um_per_px=1.0)
    out = average_frames(rec, 10)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], movie[:10].mean(0))
    np.testing.assert_allclose(out[2], movie[20:].mean(0))


def test_numpy_alias_is_local():
    proxy = numpy_with_aliases()
    assert proxy.product(np.array([2, 3])) == 6 and proxy.zeros is np.zeros
    if not hasattr(np, "product"):  # numpy 2: numpy itself stays unchanged
        assert "product" not in np.__dict__


def test_availability_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "hnccorr" else real(n, *a))
    ok, why = HNCcorr().is_available()
    assert not ok and "hnccorr" in why and "SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True" in why


def test_hnccorr_finds_cells_in_a_tiny_movie(capsys):
    pytest.importorskip("hnccorr")
    rec = tiny_recording()
    seg = HNCcorr().segment(rec, {})
    assert "Next candidate" not in capsys.readouterr().out  # its per-candidate printing is silenced
    score = match(rec.ground_truth(), seg.masks, iou=0.5, rule="suns")
    assert score.tp >= 1, score.summary()
    assert seg.n_frames == 600 and seg.process_s > 0
    assert seg.versions["hnccorr"].startswith("2020") and seg.params["average_frames"] == round(1.4 * rec.fps)
    if not hasattr(np, "product"):
        assert "product" not in np.__dict__  # the numpy-2 alias did not leak into numpy
    print(f"hnccorr: {score.summary()} fps={seg.frames_per_s:.0f} init={seg.init_s:.1f}s")


@pytest.mark.parametrize("method", ["suite2p", "hnccorr"])
def test_a_recording_without_a_movie_is_an_input_error(method):
    try:
        rec = Recording("masks-only", None, fps=30.0, um_per_px=1.0, shape=(32, 32))
    except TypeError:
        pytest.skip("this Recording has no movie-less form")
    from methods.suite2p import Suite2p

    adapter = Suite2p() if method == "suite2p" else HNCcorr()
    with pytest.raises(InputError, match=f"method '{method}' needs the movie of recording masks-only"):
        adapter.segment(rec, {})
