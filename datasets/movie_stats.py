"""Photon-budget, correlation and border statistics of a movie, by the reference note's definitions.

These are the figures ``../shared/reference/real-movie-stats.md`` reports for a
real Neurofinder training movie, so any recording (real, user or synthetic)
can be put beside it with one definition:

* per-pixel temporal mean and SD (population SD, movie as float) over the first
  ``max_frames`` frames; the table shows the median SD / median mean (counts)
  and the median over pixels of SD / mean;
* the correlation image: for each pixel, the mean over its 8 neighbours
  (``np.roll`` neighbours, so the frame wraps) of the Pearson correlation of
  the two time series; its median and 99th percentile with ``trim`` (8) px
  removed from every side, and its median over every ground-truth pixel;
* the median ground-truth region size (px);
* dark registration borders: the number of leading (trailing) columns, and
  rows, whose mean is below a quarter of the interior level (the median of
  the column, or row, means of the middle half of the frame).

Everything is accumulated in float64 over chunks of frames (a few tens of
MB at a time whatever the movie's length), so a long 512x512 movie never
sits in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from datasets.masks import Masks

__all__ = ["MovieStatistics", "movie_statistics", "border_widths", "REAL_NEUROFINDER", "SHIFTS"]

#: The four neighbour offsets whose products are accumulated; the other four are their mirror images.
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

#: A real Neurofinder 00.xx training movie (512x512, 7 Hz, GCaMP6s, 330 anatomical regions), first 600 frames,
#: from ``real-movie-stats.md``.
REAL_NEUROFINDER = {
    "median_sd": 149.0,
    "median_mean": 159.0,
    "median_sd_over_mean": 0.92,
    "corr_median": 0.021,
    "corr_p99": 0.26,
    "corr_median_in_gt": 0.032,
    "corr_median_in_all": 0.032,
    "median_region_px": 67.0,
    "border_left": 13,
    "border_right": 10,
    "border_top": None,
    "border_bottom": None,
}


@dataclass
class MovieStatistics:
    """The reference note's statistics of one movie (counts as stored; widths in px)."""

    frames: int
    median_sd: float
    median_mean: float
    median_sd_over_mean: float
    corr_median: float
    corr_p99: float
    corr_median_in_gt: float | None
    corr_median_in_all: float | None
    median_region_px: float | None
    border_left: int
    border_right: int
    border_top: int
    border_bottom: int

    def to_dict(self) -> dict:
        return asdict(self)


def border_widths(profile: np.ndarray, fraction: float = 0.25) -> tuple[int, int]:
    """Leading and trailing run lengths of ``profile`` below ``fraction`` x its interior level.

    The interior level is the median of the middle half of the profile (the
    column or row means), so a wide dark border does not lower it.
    """
    n = profile.size
    interior = float(np.median(profile[n // 4 : n - n // 4])) if n >= 4 else float(np.median(profile))
    dark = profile < fraction * interior
    lead = int(np.argmin(dark)) if not dark.all() else n
    trail = int(np.argmin(dark[::-1])) if not dark.all() else n
    return lead, trail


def _chunk_frames(h: int, w: int, budget_bytes: int = 2**25) -> int:
    # One float64 chunk plus one rolled copy stay within ~2 x budget.
    return max(1, budget_bytes // (8 * h * w))


def movie_statistics(
    movie,
    regions: Masks | None = None,
    *,
    anatomical: Masks | None = None,
    max_frames: int = 600,
    trim: int = 8,
    chunk: int | None = None,
) -> MovieStatistics:
    """Statistics of the first ``max_frames`` frames of ``movie`` (anything with ``read`` and ``frame_shape``).

    Parameters
    ----------
    movie : datasets.movies.Movie
        Read with ``movie.read(start, stop)`` in chunks.
    regions : Masks, optional
        Ground-truth regions for the inside-GT median and the median region size.
    anatomical : Masks, optional
        Every labelled cell, silent ones included (a simulator's ``all_somata``), for a second
        inside-GT median comparable with an anatomically labelled real movie.
    max_frames : int
        Frames used (600 in the reference note).
    trim : int
        Pixels removed from every side of the correlation image before its percentiles.
    chunk : int, optional
        Frames read at a time (default: about 32 MB of float64).
    """
    t = min(int(movie.n_frames), int(max_frames))
    h, w = movie.frame_shape
    s1 = np.zeros((h, w))
    s2 = np.zeros((h, w))
    cross = [np.zeros((h, w)) for _ in SHIFTS]
    chunk = chunk or _chunk_frames(h, w)
    for start in range(0, t, chunk):
        x = np.asarray(movie.read(start, min(start + chunk, t)), dtype=np.float64)
        s1 += x.sum(0)
        s2 += np.einsum("tij,tij->ij", x, x)
        for k, d in enumerate(SHIFTS):
            # cross[k][p] = sum_t x[p] * x[p - d]
            cross[k] += np.einsum("tij,tij->ij", x, np.roll(x, d, axis=(1, 2)))
    n = max(t, 1)
    mean = s1 / n
    sd = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    safe = np.where(sd > 0, sd, np.inf)  # a constant pixel correlates with nothing
    acc = np.zeros((h, w))
    for k, d in enumerate(SHIFTS):
        c = (cross[k] / n - mean * np.roll(mean, d, axis=(0, 1))) / (safe * np.roll(safe, d, axis=(0, 1)))
        # c[p] is the correlation of p with p - d; p + d's with p is the mirrored neighbour.
        acc += c + np.roll(c, (-d[0], -d[1]), axis=(0, 1))
    corr = acc / 8.0
    inner = corr[trim : h - trim, trim : w - trim] if min(h, w) > 2 * trim else corr
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean > 0, sd / mean, np.nan)
    in_gt = None
    region_px = None
    if regions is not None and regions.n:
        union = regions.union()
        in_gt = float(np.median(corr[union])) if union.any() else None
        region_px = float(np.median(regions.areas))
    in_all = None
    if anatomical is not None and anatomical.n:
        union = anatomical.union()
        in_all = float(np.median(corr[union])) if union.any() else None
    left, right = border_widths(mean.mean(axis=0))
    top, bottom = border_widths(mean.mean(axis=1))
    return MovieStatistics(
        frames=t,
        median_sd=float(np.median(sd)),
        median_mean=float(np.median(mean)),
        median_sd_over_mean=float(np.nanmedian(ratio)),
        corr_median=float(np.median(inner)),
        corr_p99=float(np.percentile(inner, 99)),
        corr_median_in_gt=in_gt,
        corr_median_in_all=in_all,
        median_region_px=region_px,
        border_left=left,
        border_right=right,
        border_top=top,
        border_bottom=bottom,
    )
