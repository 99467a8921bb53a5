"""STNeuroNet pre-processing: crop, temporal binning, homomorphic filter, SD normalisation.

The paper's steps, in order (Part A / spec section 5):

1. crop the motion-registration border (10 um each side by default);
2. bin frames in time by *summing* non-overlapping groups (30 Hz -> 6 Hz for
   ABO; a trailing incomplete group is dropped);
3. per frame, homomorphic filtering: ``exp(log(I + 1) - G_sigma * log(I + 1))``
   with a spatial Gaussian of SD 30 px at 0.78 um/px (23.4 um), kernel
   ``2 * ceil(2 sigma) + 1`` wide, edges mirrored with the edge pixel repeated
   (MATLAB ``'symmetric'`` = SciPy ``'reflect'``);
4. divide the whole video by its SD (sample SD, ``ddof=1``).

Everything streams over chunks of frames, so the input can be a NumPy array,
an ``np.memmap`` or an ``h5py`` dataset of shape ``(T, H, W)`` that does not fit
in memory; only the output (or a caller-supplied ``out`` array) holds the
whole pre-processed video. The filter runs with torch, on the GPU when one is
given or available.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from datasets.errors import InputError

__all__ = [
    "PreprocessConfig",
    "preprocess",
    "crop_slices",
    "bin_frames",
    "gaussian_kernel1d",
    "reflect_indices",
    "gaussian_blur",
    "homomorphic_filter",
    "RunningMoments",
    "normalisation",
    "whiten",
    "iter_frame_chunks",
]

logger = logging.getLogger(__name__)

#: Pixel size of the Allen Brain Observatory recordings (um per pixel).
ABO_UM_PER_PX = 0.78
#: Frame rate of the ABO recordings (Hz).
ABO_FPS = 30.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of :func:`preprocess`, in pixels and frames.

    The defaults are the authors' ABO values (0.78 um/px, 30 Hz).

    Attributes
    ----------
    crop : tuple of int
        Pixels removed ``(top, bottom, left, right)``. ABO default
        ``(12, 13, 12, 13)``: the authors' MATLAB crop ``b:end-b`` with
        ``b = round(10 / 0.78) = 13`` keeps 0-based ``[12:499]`` of a 512-px
        frame, i.e. 487x487, the frame of the published ground-truth masks.
    bin_factor : int
        Frames summed per output frame (30 Hz -> 6 Hz: 5).
    sigma_px : float
        SD of the homomorphic filter's Gaussian (30 px for ABO).
    truncate : float
        Kernel half-width in SDs: radius ``ceil(truncate * sigma_px)``.
    homomorphic : bool
        Apply the homomorphic filter.
    normalize : bool
        Divide by the video SD (or by ``norm_sd``) after subtracting ``norm_offset``.
    norm_sd : float or None
        Fixed SD instead of the measured one (the authors used 1.32 for
        Neurofinder 100.test).
    norm_offset : float
        Value subtracted before dividing (authors' default 0).
    n_frames : int or None
        Use only the first ``n_frames`` raw frames (the authors used the first
        fifth of each ABO recording); None: all.
    """

    crop: tuple[int, int, int, int] = (12, 13, 12, 13)
    bin_factor: int = 5
    sigma_px: float = 30.0
    truncate: float = 2.0
    homomorphic: bool = True
    normalize: bool = True
    norm_sd: float | None = None
    norm_offset: float = 0.0
    n_frames: int | None = None

    def __post_init__(self) -> None:
        if len(self.crop) != 4 or any(int(c) != c or c < 0 for c in self.crop):
            raise InputError(f"crop must be 4 non-negative integers, got {self.crop}")
        if int(self.bin_factor) != self.bin_factor or self.bin_factor < 1:
            raise InputError(f"bin_factor must be a positive integer, got {self.bin_factor}")
        if not self.sigma_px > 0 or not self.truncate > 0:
            raise InputError(f"sigma_px and truncate must be > 0, got {self.sigma_px}, {self.truncate}")
        if self.norm_sd is not None and not self.norm_sd > 0:
            raise InputError(f"norm_sd must be > 0, got {self.norm_sd}")
        if self.n_frames is not None and self.n_frames < 1:
            raise InputError(f"n_frames must be >= 1, got {self.n_frames}")

    @classmethod
    def for_recording(
        cls,
        fps: float,
        um_per_px: float,
        *,
        border_um: float | tuple[float, float] = 10.0,
        target_fps: float = 6.0,
        sigma_um: float = 30.0 * ABO_UM_PER_PX,
        crop_convention: str = "matlab",
        **kwargs: Any,
    ) -> PreprocessConfig:
        """Derive pixel/frame parameters from physical ones.

        Parameters
        ----------
        fps : float
            Frame rate of the raw recording (Hz).
        um_per_px : float
            Pixel size (um).
        border_um : float or (rows_um, cols_um)
            Border removed on each side (paper: 10 um for ABO; 4-50 um for
            Neurofinder).
        target_fps : float
            Rate after binning (paper: 6 Hz ABO, 3 Hz Neurofinder); the bin
            factor is ``max(1, round(fps / target_fps))``.
        sigma_um : float
            Homomorphic Gaussian SD in um (23.4 um = 30 px at 0.78 um/px).
        crop_convention : {'matlab', 'symmetric'}
            With ``b = round(border / um_per_px)``: ``'matlab'`` removes
            ``b - 1`` px before and ``b`` px after (the authors' ABO crop,
            aligned with the published masks); ``'symmetric'`` removes ``b``
            on both sides (their Neurofinder crop).
        **kwargs
            Other :class:`PreprocessConfig` fields.

        Returns
        -------
        PreprocessConfig
        """
        if not (fps > 0 and um_per_px > 0 and target_fps > 0 and sigma_um > 0):
            raise InputError(
                f"fps, um_per_px, target_fps and sigma_um must be > 0, got {fps}, {um_per_px}, {target_fps}, {sigma_um}"
            )
        rows_um, cols_um = (border_um, border_um) if np.isscalar(border_um) else border_um
        if min(rows_um, cols_um) < 0:
            raise InputError(f"border_um must be >= 0, got {border_um}")
        if crop_convention not in ("matlab", "symmetric"):
            raise InputError(f"crop_convention must be 'matlab' or 'symmetric', got {crop_convention!r}")

        def sides(um: float) -> tuple[int, int]:
            b = int(round(um / um_per_px))
            if crop_convention == "matlab":
                return max(b - 1, 0), b
            return b, b

        top, bottom = sides(rows_um)
        left, right = sides(cols_um)
        # Round away float noise (23.4 / 0.78 = 30.000000000000004) so that the
        # kernel radius ceil(2 sigma) is not pushed up by one pixel.
        sigma_px = round(sigma_um / um_per_px, 6)
        return cls(
            crop=(top, bottom, left, right),
            bin_factor=max(1, int(round(fps / target_fps))),
            sigma_px=sigma_px,
            **kwargs,
        )


# -- small building blocks -------------------------------------------------------


def crop_slices(shape: tuple[int, int], crop: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """Row and column slices that remove ``crop = (top, bottom, left, right)`` pixels.

    Raises
    ------
    InputError
        If the frame is not larger than the crop.
    """
    h, w = shape
    top, bottom, left, right = (int(c) for c in crop)
    if h - top - bottom < 1 or w - left - right < 1:
        raise InputError(
            f"frames of {h}x{w} px are too small for a border crop of {crop} (top, bottom, left, right)",
            hint="reduce the border or check the frame size",
        )
    return slice(top, h - bottom), slice(left, w - right)


def bin_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Sum non-overlapping groups of ``factor`` frames; a trailing remainder is dropped.

    Parameters
    ----------
    frames : np.ndarray
        ``(T, H, W)``.
    factor : int
        Group size.

    Returns
    -------
    np.ndarray
        ``(T // factor, H, W)`` float32 (float64 input stays float64).
    """
    frames = np.asarray(frames)
    dtype = np.float64 if frames.dtype == np.float64 else np.float32
    n = frames.shape[0] // factor
    if factor == 1:
        return frames.astype(dtype, copy=False)
    # float32 sums of up to 16 uint16 values are exact (< 2**24).
    return frames[: n * factor].astype(dtype).reshape(n, factor, *frames.shape[1:]).sum(axis=1)


def gaussian_kernel1d(sigma: float, truncate: float = 2.0) -> np.ndarray:
    """Normalised 1-D Gaussian of radius ``ceil(truncate * sigma)`` (MATLAB ``imgaussfilt`` size).

    SciPy uses ``int(truncate * sigma + 0.5)`` instead; both agree whenever
    ``truncate * sigma`` is an integer (30 px -> radius 60, 121 taps).
    """
    radius = max(int(math.ceil(truncate * sigma - 1e-9)), 0)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def reflect_indices(n: int, radius: int) -> np.ndarray:
    """Indices of a length-``n`` axis padded by ``radius`` with SciPy ``'reflect'`` (edge repeated).

    ``d c b a | a b c d | d c b a``, repeated periodically for pads longer
    than the axis (matches ``scipy.ndimage`` and MATLAB ``'symmetric'``).
    Torch's ``'reflect'`` padding is SciPy ``'mirror'`` (edge not repeated),
    hence this explicit index map.
    """
    idx = np.arange(-radius, n + radius)
    idx = np.mod(idx, 2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


#: Largest axis blurred by a dense matrix product (its matrix takes ``n^2`` floats); longer axes use a convolution.
_MATRIX_BLUR_MAX = 2048


@functools.lru_cache(maxsize=8)
def _blur_matrix(n: int, sigma: float, truncate: float) -> np.ndarray:
    """``(n, n)`` matrix ``M`` with ``M @ v`` = the reflected-edge Gaussian blur of a length-``n`` vector."""
    kernel = gaussian_kernel1d(sigma, truncate)
    radius = (kernel.size - 1) // 2
    idx = reflect_indices(n, radius)
    m = np.zeros((n, n), np.float64)
    rows = np.repeat(np.arange(n), kernel.size)
    cols = idx[np.arange(n)[:, None] + np.arange(kernel.size)[None, :]].ravel()
    np.add.at(m, (rows, cols), np.tile(kernel, n))
    return m


def gaussian_blur(frames: torch.Tensor, sigma: float, truncate: float = 2.0) -> torch.Tensor:
    """Separable Gaussian blur of every frame, edges reflected with the edge repeated.

    Parameters
    ----------
    frames : torch.Tensor
        ``(B, H, W)`` float tensor on any device.
    sigma : float
        Gaussian SD in pixels.
    truncate : float
        Kernel radius ``ceil(truncate * sigma)``.

    Returns
    -------
    torch.Tensor
        ``(B, H, W)``, same dtype and device; equals
        ``scipy.ndimage.gaussian_filter(f, sigma, mode='reflect', radius=ceil(truncate*sigma))``
        on each frame.

    Notes
    -----
    Each axis is blurred by a matrix product with the (banded) blur matrix
    that includes the reflected edges: a 121-tap kernel on a 488-px axis
    wastes some multiplications on zeros, but a matrix product runs near the
    processor's peak while a one-channel convolution does not (8x faster on
    a CPU). Axes longer than 2048 px use the convolution.
    """
    if frames.dim() != 3:
        raise ValueError(f"gaussian_blur expects (B, H, W), got {tuple(frames.shape)}")
    kernel_np = gaussian_kernel1d(sigma, truncate)
    radius = (kernel_np.size - 1) // 2
    if radius == 0:
        return frames.clone()
    b, h, w = frames.shape
    if max(h, w) <= _MATRIX_BLUR_MAX:
        m_h = torch.as_tensor(_blur_matrix(h, sigma, truncate), dtype=frames.dtype, device=frames.device)
        m_w = torch.as_tensor(_blur_matrix(w, sigma, truncate), dtype=frames.dtype, device=frames.device)
        # Blur the deviations from each frame's mean (the rows of the matrices sum to 1, so the mean
        # passes unchanged): float32 products of small deviations round less, and a flat frame
        # stays exactly flat. The mean in float64 is exact for a flat frame.
        mean = frames.to(torch.float64).mean(dim=(1, 2), keepdim=True).to(frames.dtype)
        return torch.matmul(torch.matmul(m_h, frames - mean), m_w.T) + mean
    kernel = torch.as_tensor(kernel_np, dtype=frames.dtype, device=frames.device).view(1, 1, -1)
    out = frames
    for axis, n in ((2, w), (1, h)):
        idx = torch.as_tensor(reflect_indices(n, radius), device=frames.device)
        padded = out.index_select(axis, idx)
        if axis == 1:
            padded = padded.transpose(1, 2)  # (B, W, H + 2r): filter along the last axis
        rows = padded.reshape(-1, 1, padded.shape[-1])
        res = F.conv1d(rows, kernel).reshape(padded.shape[0], padded.shape[1], -1)
        out = res.transpose(1, 2) if axis == 1 else res
    return out.contiguous()


def homomorphic_filter(frames: torch.Tensor, sigma: float, truncate: float = 2.0) -> torch.Tensor:
    """``exp(log(I + 1) - blur(log(I + 1)))`` per frame (illumination correction).

    Parameters
    ----------
    frames : torch.Tensor
        ``(B, H, W)`` with values > -1.
    sigma, truncate : float
        Gaussian SD (px) and truncation (see :func:`gaussian_blur`).

    Returns
    -------
    torch.Tensor
        ``(B, H, W)``: each pixel divided by the local geometric mean of ``I + 1``.
    """
    log_img = torch.log1p(frames)
    return torch.exp(log_img - gaussian_blur(log_img, sigma, truncate))


class RunningMoments:
    """Streaming mean, variance and minimum over many chunks (Chan et al. pairwise update, float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = math.inf

    def update(self, values: torch.Tensor | np.ndarray) -> None:
        """Add every element of ``values``."""
        if isinstance(values, torch.Tensor):
            v = values.detach()
            n_b = v.numel()
            if n_b == 0:
                return
            var_b, mean_b = torch.var_mean(v.to(torch.float64), correction=0)
            mean_b, m2_b, min_b = float(mean_b), float(var_b) * n_b, float(v.amin())
        else:
            v = np.asarray(values)
            n_b = v.size
            if n_b == 0:
                return
            v64 = v.astype(np.float64, copy=False)
            mean_b = float(v64.mean())
            m2_b = float(((v64 - mean_b) ** 2).sum())
            min_b = float(v.min())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.minimum = min(self.minimum, min_b)
        self.n = n

    def finite(self) -> bool:
        """Whether every value added so far was finite (an inf or NaN poisons the sums)."""
        return math.isfinite(self.mean) and math.isfinite(self.m2) and math.isfinite(self.minimum)

    def std(self, ddof: int = 1) -> float:
        """Standard deviation with ``ddof`` (1: sample SD, as MATLAB ``std``)."""
        if self.n - ddof <= 0:
            return float("nan")
        return math.sqrt(max(self.m2, 0.0) / (self.n - ddof))


def normalisation(config: PreprocessConfig, moments: RunningMoments) -> tuple[float, float]:
    """``(offset, sd)`` of the final step of :func:`preprocess`: ``(v - offset) / sd``.

    ``sd`` is ``config.norm_sd`` or the sample SD in ``moments`` (those of
    the filtered, not yet normalised movie).

    Raises
    ------
    InputError
        The measured SD is zero (a constant movie leaves float rounding
        noise, hence the relative test) or not finite.
    """
    if config.norm_sd is not None:
        return float(config.norm_offset), float(config.norm_sd)
    sd = moments.std(ddof=1)
    if not (math.isfinite(sd) and sd > 1e-7 * abs(moments.mean) and sd > 0):
        raise InputError(
            "the pre-processed movie has zero variance (constant frames?), so it cannot be normalised by its SD"
        )
    return float(config.norm_offset), sd


def whiten(volume: np.ndarray | torch.Tensor, min_std: float = 1e-5) -> np.ndarray | torch.Tensor:
    """NiftyNet sample whitening: ``(v - mean) / max(std, min_std)``, population SD.

    Parameters
    ----------
    volume : np.ndarray or torch.Tensor
        Any shape; statistics over all elements, computed in float64.
    min_std : float
        Floor of the SD (NiftyNet: 1e-5).

    Returns
    -------
    Same type as ``volume`` (float32 for NumPy integer input).
    """
    if isinstance(volume, torch.Tensor):
        v64 = volume.to(torch.float64)
        mean = v64.mean()
        std = torch.clamp(v64.std(unbiased=False), min=min_std)
        dtype = volume.dtype if volume.is_floating_point() else torch.float32
        return ((v64 - mean) / std).to(dtype)
    arr = np.asarray(volume)
    v64 = arr.astype(np.float64, copy=False)
    mean = v64.mean()
    std = max(float(v64.std()), min_std)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    return ((v64 - mean) / std).astype(dtype)


# -- streaming driver ------------------------------------------------------------


def _check_movie(movie: Any) -> tuple[int, int, int]:
    shape = getattr(movie, "shape", None)
    if shape is None:
        raise InputError(f"movie must be an array-like with a shape, got {type(movie).__name__}")
    if len(shape) != 3:
        raise InputError(
            f"movie must be 3-D (T, H, W), got shape {tuple(shape)}", hint="a single frame or image is not a video"
        )
    t, h, w = (int(s) for s in shape)
    if t < 1 or h < 1 or w < 1:
        raise InputError(f"movie has an empty axis: shape {tuple(shape)}")
    return t, h, w


def iter_frame_chunks(
    movie: Any, chunk: int, rows: slice = slice(None), cols: slice = slice(None), n_frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, frames[start:start+chunk, rows, cols])`` as NumPy arrays.

    Slicing is done on ``movie`` itself, so h5py datasets and memmaps only
    read the requested frames and crop.
    """
    t = int(movie.shape[0]) if n_frames is None else min(int(n_frames), int(movie.shape[0]))
    chunk = max(int(chunk), 1)
    for start in range(0, t, chunk):
        stop = min(start + chunk, t)
        yield start, np.asarray(movie[start:stop, rows, cols])


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def preprocess(
    movie: Any,
    config: PreprocessConfig | None = None,
    device: torch.device | str | None = None,
    chunk: int = 32,
    out: Any = None,
    moments_out: RunningMoments | None = None,
) -> np.ndarray:
    """Run the STNeuroNet pre-processing on a ``(T, H, W)`` movie, streaming over frames.

    Parameters
    ----------
    movie : array-like
        ``(T, H, W)`` NumPy array, ``np.memmap``, h5py dataset, or anything
        sliceable with ``movie[t0:t1, rows, cols]``. Integer or float values
        (float values must be finite and > -1 for ``log(I + 1)``).
    config : PreprocessConfig, optional
        Defaults to the ABO settings.
    device : torch.device or str, optional
        Where to filter (default: CUDA if available, else CPU).
    chunk : int
        Output (binned) frames processed per step; the raw frames read at
        once are ``chunk * bin_factor``.
    out : array-like, optional
        Preallocated ``(T_binned, H', W')`` float32 destination supporting
        slice assignment (e.g. ``np.memmap``, h5py dataset) for videos that do
        not fit in memory. The normalisation pass re-reads it chunk by chunk.
    moments_out : RunningMoments, optional
        Filled with the moments and minimum of the output *before*
        normalisation, measured on the device during the filtering pass (a
        caller that whitens afterwards needs no pass of its own, and can skip
        normalisation altogether: whitening undoes any affine scaling).

    Returns
    -------
    np.ndarray
        ``(T // bin_factor, H - top - bottom, W - left - right)`` float32
        (``out`` itself when given).

    Raises
    ------
    InputError
        2-D input, fewer frames than one bin, frames smaller than the crop,
        non-finite values, values <= -1, or zero variance.
    """
    cfg = config or PreprocessConfig()
    t, h, w = _check_movie(movie)
    if cfg.n_frames is not None:
        t = min(t, cfg.n_frames)
    factor = int(cfg.bin_factor)
    t_out = t // factor
    if t_out < 1:
        raise InputError(
            f"the movie has {t} frames, fewer than one temporal bin of {factor} frames",
            hint="use a longer recording or a smaller bin factor (higher target rate)",
        )
    rows, cols = crop_slices((h, w), cfg.crop)
    h_out, w_out = rows.stop - rows.start, cols.stop - cols.start
    dev = _resolve_device(device)
    if out is None:
        out = np.empty((t_out, h_out, w_out), dtype=np.float32)
    elif tuple(out.shape) != (t_out, h_out, w_out):
        raise InputError(f"out has shape {tuple(out.shape)}, expected {(t_out, h_out, w_out)}")

    moments = moments_out if moments_out is not None else RunningMoments()
    raw_chunk = max(int(chunk), 1) * factor
    for start, raw in iter_frame_chunks(movie, raw_chunk, rows, cols, n_frames=t_out * factor):
        if raw.dtype.kind in "fc" and not np.isfinite(raw).all():
            bad = start + int(np.nonzero(~np.isfinite(raw).reshape(raw.shape[0], -1).all(axis=1))[0][0])
            raise InputError(f"the movie has non-finite values (first in frame {bad})")
        if raw.dtype.kind not in "biuf":
            raise InputError(f"the movie must hold real numbers, got dtype {raw.dtype}")
        binned = bin_frames(raw, factor)
        frames = torch.from_numpy(np.ascontiguousarray(binned, dtype=np.float32)).to(dev)
        if cfg.homomorphic:
            if bool((frames <= -1).any()):
                raise InputError(
                    "the movie has values <= -1, where log(I + 1) of the homomorphic filter is undefined",
                    hint="pass raw fluorescence (photon counts), not a baseline-subtracted movie",
                )
            frames = homomorphic_filter(frames, cfg.sigma_px, cfg.truncate)
        if (cfg.normalize and cfg.norm_sd is None) or moments_out is not None:
            moments.update(frames)
        b0 = start // factor
        out[b0 : b0 + frames.shape[0]] = frames.cpu().numpy()

    if cfg.normalize:
        offset, sd = normalisation(cfg, moments)
        logger.debug("normalising by SD %.6g (offset %.6g)", sd, offset)
        for b0 in range(0, t_out, max(int(chunk), 1)):
            b1 = min(b0 + max(int(chunk), 1), t_out)
            block = np.asarray(out[b0:b1], dtype=np.float32)
            out[b0:b1] = ((block - offset) / sd).astype(np.float32)
    return out
