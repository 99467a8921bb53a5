"""Registration borders: per-pixel statistics in chunks, detection of padded/ragged/dark borders, crops."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.borders import crop_ground_truth, crop_slices, detect_border, parse_crop, pixel_stats
from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie

T, H, W = 40, 48, 64


def bordered_movie(seed: int = 0) -> np.ndarray:
    """Shot-noise tissue with a motion-corrected movie's borders.

    Top: 3 rows zero-padded in every frame. Left: ragged zero padding, 1-4 columns
    deep depending on the frame (each frame shifted differently). Right: 2 columns
    darkened by interpolation (no zeros). Bottom: none.
    """
    rng = np.random.default_rng(seed)
    m = rng.poisson(200, size=(T, H, W)).astype(np.uint16)
    m[:, :3, :] = 0
    for t in range(T):
        m[t, :, : 1 + t % 4] = 0
    m[:, :, -2:] //= 10
    return m


def test_pixel_stats_in_chunks_equal_the_whole_movie():
    m = bordered_movie()
    stats = pixel_stats(ArrayMovie(m), chunk=7)
    f = m.astype(np.float64)
    np.testing.assert_allclose(stats.mean, f.mean(axis=0))
    np.testing.assert_allclose(stats.sd, f.std(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.zero_fraction, (m == 0).mean(axis=0))
    assert (stats.vmin, stats.vmax, stats.n_frames) == (0, m.max(), T) and not stats.constant


def test_detects_zero_padded_ragged_and_dark_borders():
    assert detect_border(pixel_stats(ArrayMovie(bordered_movie()))) == (3, 0, 4, 2)


def test_clean_movie_has_no_border():
    rng = np.random.default_rng(1)
    clean = rng.poisson(200, size=(T, H, W)).astype(np.uint16)
    assert detect_border(pixel_stats(ArrayMovie(clean))) == (0, 0, 0, 0)


def test_a_dead_column_is_not_a_border():
    m = bordered_movie()
    m[:, :, 30] = 0  # a dead sensor column inside the field of view
    assert detect_border(pixel_stats(ArrayMovie(m))) == (3, 0, 4, 2)


def test_crop_and_ground_truth_match():
    rows, cols = crop_slices((3, 0, 4, 2), (H, W))
    assert (rows, cols) == (slice(3, H), slice(4, W - 2))
    st = np.zeros((2, H, W), bool)
    st[0, 10:14, 10:14] = True  # inside
    st[1, 0:3, 20:24] = True  # wholly in the top border
    gt = crop_ground_truth(Masks.from_dense(st), rows, cols)
    assert gt.shape == (H - 3, W - 6) and gt.n == 1
    assert gt.to_dense()[0, 7:11, 6:10].all()


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,3,-1", ""])
def test_parse_crop_refuses_bad_text(text):
    with pytest.raises(InputError, match="T,B,L,R"):
        parse_crop(text)


def test_crop_larger_than_the_frame():
    assert parse_crop("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(InputError, match="larger than the 48x64 frame"):
        crop_slices((30, 18, 0, 0), (H, W))


def test_overlay_figure_shows_the_cut_border(tmp_path, monkeypatch):
    """The report's overlay draws the recording's crop (crop.txt beside the overlay material)."""
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    import bench.figures as figures
    from bench.report import _overlay

    folder = tmp_path / "overlay"
    folder.mkdir()
    corr = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    np.save(folder / "correlation.npy", corr)
    st = np.zeros((1, 20, 30), bool)
    st[0, 5:9, 5:9] = True
    Masks.from_dense(st).save(folder / "gt.npz")
    Masks.from_dense(st).save(folder / "method__m.npz")
    (folder / "crop.txt").write_text("2,1,3,4\n")
    seen = {}
    original = figures.overlay

    def spy(correlation, gt, methods, path, title="", crop=None):
        seen["crop"] = crop
        return original(correlation, gt, methods, path, title=title, crop=crop)

    monkeypatch.setattr(figures, "overlay", spy)
    (tmp_path / "report").mkdir()
    assert _overlay(folder, tmp_path / "report")
    assert seen["crop"] == (2, 1, 3, 4)
    assert (tmp_path / "report" / "overlay.png").stat().st_size > 0
