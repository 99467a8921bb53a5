"""The reference note's movie statistics (``datasets.movie_stats``) on a movie with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import hadamard

from datasets.masks import Masks
from datasets.movie_stats import REAL_NEUROFINDER, border_widths, movie_statistics
from datasets.movies import ArrayMovie

T, H, W = 16, 48, 48
CELL = (slice(18, 30), slice(18, 30))  # a 12 x 12 px "cell"


def _known_movie() -> np.ndarray:
    """Background pixels get mutually orthogonal zero-mean time courses (a 3x3 colouring, so no two
    8-neighbours share one, also across the wrap), the cell one shared course: every background
    correlation is exactly 0 and a pixel deep inside the cell correlates 1 with all 8 neighbours.
    Background: mean 100, SD 10; cell: mean 100, SD 30; columns 0-4 and the last 3 are dark (mean 2)."""
    hd = hadamard(T).astype(np.float64)  # rows 1.. are zero-mean and orthogonal, entries +-1
    colour = (np.arange(H)[:, None] % 3) * 3 + (np.arange(W)[None, :] % 3)  # 0..8
    movie = 100.0 + 10.0 * hd[1 + colour].transpose(2, 0, 1)
    movie[:, CELL[0], CELL[1]] = 100.0 + 30.0 * hd[10][:, None, None]
    dark = 2.0 + 0.5 * hd[1 + colour].transpose(2, 0, 1)
    movie[:, :, :5] = dark[:, :, :5]
    movie[:, :, -3:] = dark[:, :, -3:]
    return movie.astype(np.float32)


def _cell_masks() -> Masks:
    m = np.zeros((1, H, W), bool)
    m[0, CELL[0], CELL[1]] = True
    return Masks.from_dense(m)


@pytest.mark.parametrize("chunk", [None, 3])
def test_known_answers(chunk):
    s = movie_statistics(ArrayMovie(_known_movie()), _cell_masks(), chunk=chunk)
    assert s.frames == T
    assert s.median_sd == pytest.approx(10.0) and s.median_mean == pytest.approx(100.0)
    assert s.median_sd_over_mean == pytest.approx(0.1)
    assert s.corr_median == pytest.approx(0.0, abs=1e-9)
    # Trimmed 32 x 32 = 1,024 px of which the cell's 10 x 10 interior (100 px) correlate exactly 1.
    assert s.corr_p99 == pytest.approx(1.0)
    assert s.corr_median_in_gt == pytest.approx(1.0)
    assert s.median_region_px == 144
    assert (s.border_left, s.border_right, s.border_top, s.border_bottom) == (5, 3, 0, 0)


def test_only_the_first_frames_are_used():
    movie = _known_movie()
    longer = np.concatenate([movie, np.full((T, H, W), 5000, np.float32)])
    a = movie_statistics(ArrayMovie(movie), None)
    b = movie_statistics(ArrayMovie(longer), None, max_frames=T)
    assert a == b


def test_border_widths_of_the_real_column_profile():
    """The reference note's column means: 12 dark leading columns by the 1/4-of-interior rule
    (the note's "about 13 px"); all 11 listed trailing columns are dark."""
    head = [5, 6, 7, 7, 7, 7, 7, 7, 8, 10, 16, 25, 38, 56, 78, 102, 119, 127, 132, 135, 141, 146]
    tail = [30, 26, 20, 15, 11, 9, 8, 7, 7, 7, 6]
    profile = np.array(head + [150] * 400 + tail, float)
    left, right = border_widths(profile)
    assert left == 12 and right == 11
    assert abs(REAL_NEUROFINDER["border_left"] - left) <= 1


def test_describe_prints_the_statistics_for_a_recording_without_ground_truth():
    """A user recording with a movie and no masks: the movie statistics beside the real movie's."""
    from datasets.describe import describe_dataset, format_description
    from datasets.records import Dataset, Recording

    rec = Recording(name="mine", movie=ArrayMovie(_known_movie()), fps=7.0, um_per_px=1.15, ground_truths={})
    desc = describe_dataset(Dataset("mine", [rec]))
    m = desc["recordings"][0]["movie"]
    assert m["median_sd_over_mean"] == pytest.approx(0.1) and m["border_left"] == 5
    assert m["corr_median_in_gt"] is None
    text = format_description(desc)
    assert "mine" in text and "real Neurofinder 00.xx" in text and "0.92" in text
