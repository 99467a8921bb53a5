"""Registration borders: per-pixel statistics read in chunks, a detected valid field of view, crops.

Motion-corrected movies carry borders that are not tissue: rows and columns
zero-padded by the shifts (ragged, because each frame moves differently),
darkened or flattened by interpolation. Every method must see the same valid
field of view, so a recording's movie is cropped (:attr:`datasets.movies.Movie.border`)
and its ground truth cropped to match (:func:`crop_ground_truth`).

:func:`pixel_stats` reads a movie once, in chunks, and gathers what the
registration checks and :func:`detect_border` need; :func:`parse_crop` reads
``--crop T,B,L,R``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import Movie, check_finite

__all__ = [
    "PixelStats",
    "pixel_stats",
    "detect_border",
    "parse_crop",
    "crop_slices",
    "crop_ground_truth",
    "MAX_BORDER_FRACTION",
]

log = logging.getLogger(__name__)

#: At most this fraction of the frame is cut on each side by detection; more means the
#: movie is not what the detector understands, and the user says the crop with --crop.
MAX_BORDER_FRACTION = 0.25
#: A pixel exactly zero in more than this fraction of the frames is padding, not tissue.
ZERO_FRACTION = 0.01
#: A line whose median temporal mean or SD is below this fraction of the interior's (or above
#: its inverse) departs from the interior.
DEPARTURE = 0.5


@dataclass(frozen=True)
class PixelStats:
    """Per-pixel temporal statistics of a movie (its exposed frames, after any crop).

    Attributes
    ----------
    n_frames : int
    mean, sd : ndarray of float64, (H, W)
        Temporal mean and standard deviation.
    zero_fraction : ndarray of float64, (H, W)
        Fraction of the frames in which the pixel is exactly 0.
    vmin, vmax : float
        Smallest and largest value of the whole movie.
    """

    n_frames: int
    mean: np.ndarray
    sd: np.ndarray
    zero_fraction: np.ndarray
    vmin: float
    vmax: float

    @property
    def constant(self) -> bool:
        """Whether every pixel of every frame holds one value."""
        return self.vmin == self.vmax


def pixel_stats(movie: Movie, chunk: int = 64) -> PixelStats:
    """Read a movie once in blocks of ``chunk`` frames and return its :class:`PixelStats`.

    A movie opened with ``check_finite`` raises on the first frame holding NaN
    or Inf; so does any other movie here, since the statistics would be NaN.

    Raises
    ------
    InputError
        For a movie without frames or holding NaN/Inf (naming the frame).
    """
    if movie.n_frames == 0:
        raise InputError("the movie has no frames", path=movie.source)
    shape = movie.frame_shape
    total = np.zeros(shape, np.float64)
    total_sq = np.zeros(shape, np.float64)
    zeros = np.zeros(shape, np.int64)
    vmin, vmax = np.inf, -np.inf
    for start in range(0, movie.n_frames, chunk):
        block = movie.read(start, start + chunk)
        if block.dtype.kind not in "uifb":
            raise InputError(f"movie values must be numeric, got dtype {block.dtype}", path=movie.source)
        check_finite(block, start, movie.source)
        # einsum accumulates in float64 without a float64 copy of the block (2.6x faster than
        # astype + square + sum on a 64x512x512 uint16 block, exact for integer movies).
        total += np.einsum("tij->ij", block, dtype=np.float64, casting="unsafe")
        total_sq += np.einsum("tij,tij->ij", block, block, dtype=np.float64, casting="unsafe")
        zeros += (block == 0).sum(axis=0)
        vmin = min(vmin, float(block.min()))
        vmax = max(vmax, float(block.max()))
    n = movie.n_frames
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0)
    return PixelStats(n, mean, np.sqrt(var), zeros / n, vmin, vmax)


def _zero_depth(padded: np.ndarray, limit: int) -> int:
    """Deepest run of padding pixels from the first row of ``padded`` (rows x lines), over columns.

    Columns whose run is longer than ``limit`` are dead columns, not a border, and are ignored.
    """
    # Run length from row 0: the number of leading True values of each column.
    not_padded = ~padded
    depth = np.where(not_padded.any(axis=0), not_padded.argmax(axis=0), padded.shape[0])
    depth = depth[depth <= limit]
    return int(depth.max()) if depth.size else 0


def _departing_lines(mean_profile: np.ndarray, sd_profile: np.ndarray, ref: tuple[float, float], limit: int) -> int:
    """Lines counted from index 0 whose median mean or SD departs from the interior's."""
    ref_mean, ref_sd = ref
    n = 0
    for m, s in zip(mean_profile[:limit], sd_profile[:limit]):
        dark = ref_mean > 0 and not (DEPARTURE * ref_mean <= m <= ref_mean / DEPARTURE)
        flat = ref_sd > 0 and s < DEPARTURE * ref_sd
        if not (dark or flat):
            break
        n += 1
    return n


def detect_border(stats: PixelStats) -> tuple[int, int, int, int]:
    """Rows and columns to cut on each side, (top, bottom, left, right), from a movie's statistics.

    A side is cut as deep as the deeper of:

    - zero padding: pixels exactly 0 in at least 1% of the frames (and two), in runs
      from the edge; the deepest run over the edge's length, so that a ragged
      edge (each frame shifted differently) is cut whole;
    - departing lines: rows (columns) from the edge whose median temporal mean
      is under half or over twice the interior's, or whose median SD is under
      half the interior's (a dark or flattened border).

    The interior is the central half of the frame. At most
    :data:`MAX_BORDER_FRACTION` of the frame is cut on a side.
    """
    h, w = stats.mean.shape
    core_r = slice(h // 4, h - h // 4)
    core_c = slice(w // 4, w - w // 4)
    interior_zero = float(np.median(stats.zero_fraction[core_r, core_c]))
    # Padding is 0 in at least two frames (one stray zero is noise); a movie whose tissue itself
    # is often 0 (sparse or thresholded data) has no zero padding to find.
    threshold = max(ZERO_FRACTION, 2 / stats.n_frames - 1e-12)
    if interior_zero <= ZERO_FRACTION:
        padded = stats.zero_fraction >= threshold
    else:
        padded = np.zeros((h, w), bool)
    ref = (float(np.median(stats.mean[core_r, core_c])), float(np.median(stats.sd[core_r, core_c])))
    lim_r, lim_c = int(h * MAX_BORDER_FRACTION), int(w * MAX_BORDER_FRACTION)

    row_mean = np.median(stats.mean[:, core_c], axis=1)
    row_sd = np.median(stats.sd[:, core_c], axis=1)
    col_mean = np.median(stats.mean[core_r, :], axis=0)
    col_sd = np.median(stats.sd[core_r, :], axis=0)
    sides = (
        (padded, row_mean, row_sd, lim_r),  # top
        (padded[::-1], row_mean[::-1], row_sd[::-1], lim_r),  # bottom
        (padded.T, col_mean, col_sd, lim_c),  # left
        (padded.T[::-1], col_mean[::-1], col_sd[::-1], lim_c),  # right
    )
    border = tuple(
        min(max(_zero_depth(pad, lim), _departing_lines(mp, sp, ref, lim)), lim) for pad, mp, sp, lim in sides
    )
    return border  # type: ignore[return-value]


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"T,B,L,R"`` (pixels cut from the top, bottom, left and right) as a tuple of four ints >= 0."""
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0:
        raise InputError(
            f"--crop must be four pixel counts T,B,L,R >= 0, got {text!r}",
            hint="e.g. --crop 4,4,8,8, or --crop 0,0,0,0 for none",
        )
    return values  # type: ignore[return-value]


def crop_slices(border: tuple[int, int, int, int], frame: tuple[int, int], where=None) -> tuple[slice, slice]:
    """The (rows, cols) slices that keep a frame of shape ``frame`` inside ``border``.

    Raises
    ------
    InputError
        When the crop is as large as the frame or larger.
    """
    top, bottom, left, right = (int(v) for v in border)
    h, w = frame
    if top + bottom >= h or left + right >= w or min(top, bottom, left, right) < 0:
        raise InputError(
            f"the crop {top},{bottom},{left},{right} (T,B,L,R) is larger than the {h}x{w} frame",
            path=where,
            hint=f"the crop must leave at least one pixel: T+B < {h} and L+R < {w}",
        )
    return slice(top, h - bottom), slice(left, w - right)


def crop_ground_truth(masks: Masks, rows: slice, cols: slice, where=None) -> Masks:
    """Masks restricted to the cropped frame; masks lying wholly in the border are dropped (and logged).

    A mask that lies wholly in the cut border cannot be found in the analysed
    frame, so it is not counted as missed.
    """
    cropped = masks.crop(rows, cols)
    keep = np.flatnonzero(cropped.areas > 0)
    if keep.size < cropped.n:
        log.info("%s: %d mask(s) lie wholly in the cropped border and were dropped", where, cropped.n - keep.size)
    return cropped.subset(keep)
