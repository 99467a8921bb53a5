"""Whole-field-of-view STNeuroNet inference: movie -> probability maps -> neuron masks.

Pipeline (paper Part A, "Inference and post-processing"; spec Part B section 4):

1. pre-process the movie chunk by chunk (:func:`stnn.preprocess.preprocess`:
   crop, bin to ~6 Hz, homomorphic filter) into a float32 file in a
   temporary folder, so memory does not grow with the number of frames
   (plain file reads and writes, not a memory map: the pages of a written
   memory map count towards the process's resident memory);
2. whiten (NiftyNet sample whitening, ``(v - mean) / std`` over the whole
   pre-processed movie) each window as it is read, with statistics measured
   during step 1; the SD normalisation, an affine map that whitening undoes,
   is folded into them (:func:`prepare_movie`);
3. cut the binned movie into non-overlapping windows of ``batch_frames``
   (120) frames over the whole field of view; several windows go through the
   network per forward batch; each window gives one probability map;
4. post-process the maps (:mod:`stnn.postprocess`).

The last, partial window
------------------------
When ``T`` is not a multiple of ``batch_frames``, the authors' grid sampler
adds one window ending at ``T`` (``[T - 120, T)``), which overlaps the
previous one, so there are ``ceil(T / 120)`` maps. We do the same; their
aggregator also wrote this extra window past the end when ``T % 120 == 0``
(and dropped it silently), and added a third window between two when there
were exactly two: neither happens here.

Movies shorter than one window
------------------------------
The paper would not run on them. Here the binned movie is padded at its end
with its minimum value up to ``batch_frames`` frames and a warning is
logged; the temporal max-pool makes flat padded frames nearly neutral.

Overlapping windows
-------------------
``overlap='mean'`` or ``'median'`` (the paper's suggested trade of speed for
accuracy) runs windows every ``batch_frames // 2`` frames and replaces the map
of each non-overlapping window by the mean or median of the maps of all
windows that share at least half of its frames with it (itself included).
It doubles the network time.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import Movie
from datasets.records import Recording

from .fuse import inference_copy
from .model import STNeuroNet
from .overlap import measure_margin
from .postprocess import PostprocessConfig, postprocess
from .precision import PRECISIONS, precision_name, resolve_precision
from .preprocess import PreprocessConfig, RunningMoments, crop_slices, normalisation, preprocess
from .tiling import (
    TilePlan,
    line_minima,
    pad_like_frame,
    parse_margin,
    plan_tiles,
    read_region,
    run_tiled,
    with_margin,
)

__all__ = [
    "Timings",
    "InferenceResult",
    "ProbabilityStage",
    "probability_stage",
    "DiskFrames",
    "MovieView",
    "window_starts",
    "output_blocks",
    "default_preprocess_config",
    "prepare_movie",
    "probability_maps",
    "segment",
    "MIN_FRAME_PX",
]

logger = logging.getLogger(__name__)

#: Smallest frame side the network can resolve (three halvings).
MIN_FRAME_PX = 8


@dataclass
class Timings:
    """Wall-clock seconds of one :func:`segment` call.

    Attributes
    ----------
    init_s : float
        Model transfer to the device and prefetching the first batch of
        windows (reported apart, as the paper's initialisation).
    margin_probe_s : float
        Measuring the tile margin on the movie (:mod:`stnn.overlap`; 0 when
        not measured): work on this movie, so part of :attr:`process_s`, not
        of ``init_s``.
    preprocess_s : float
        Pre-processing, including reading the raw movie (the whitening
        statistics are measured during it).
    network_s : float
        Forward passes (and reading the windows after the first batch).
    postprocess_s : float
        Post-processing of the maps.
    n_frames : int
        Binned (about 6 Hz) frames.
    n_windows : int
        Network windows run.
    n_maps : int
        Probability maps returned.
    precision : str
        Precision the network ran in (``'fp32'``, ``'bf16'`` or ``'fp16'``).
    preprocess_cpu_s, network_cpu_s : float
        CPU seconds of the process (all threads) during those stages: on a
        machine shared with other work they show the cost that wall-clock
        times hide.
    tile : int
        Tile side in px (0: the frame ran whole); see :mod:`stnn.tiling`.
    n_tiles : int
        Tiles per frame.
    tile_margin : int
        Overlap on each side of a tile (px).
    tile_source : str
        How the tile was chosen (``'auto'``, ``'explicit'``, ``'off'``) and why.
    tile_margin_source : str
        How the margin was set (``'measured'`` on the movie, ``'receptive
        field'``, ``'explicit'``; see :mod:`stnn.overlap`) and the evidence.
    """

    init_s: float = 0.0
    margin_probe_s: float = 0.0
    preprocess_s: float = 0.0
    network_s: float = 0.0
    postprocess_s: float = 0.0
    n_frames: int = 0
    n_windows: int = 0
    n_maps: int = 0
    precision: str = "fp32"
    preprocess_cpu_s: float = 0.0
    network_cpu_s: float = 0.0
    tile: int = 0
    n_tiles: int = 1
    tile_margin: int = 0
    tile_source: str = ""
    tile_margin_source: str = ""

    @property
    def process_s(self) -> float:
        """Processing time: pre-processing + margin probe + network + post-processing (initialisation excluded)."""
        return self.preprocess_s + self.margin_probe_s + self.network_s + self.postprocess_s

    @property
    def fps(self) -> float:
        """Binned frames per second of the whole pipeline."""
        return self.n_frames / self.process_s if self.process_s > 0 else float("nan")

    @property
    def network_fps(self) -> float:
        """Binned frames per second of the network alone."""
        return self.n_frames / self.network_s if self.network_s > 0 else float("nan")

    def as_dict(self) -> dict[str, float | str]:
        """Fields plus the derived rates."""
        d = asdict(self)
        d.update(process_s=self.process_s, fps=self.fps, network_fps=self.network_fps)
        return d


class InferenceResult(NamedTuple):
    """Result of :func:`segment`; unpacks as ``masks, prob_maps, timings``."""

    masks: Masks
    prob_maps: np.ndarray
    timings: Timings


@dataclass
class ProbabilityStage:
    """The expensive half of :func:`segment`: probability maps and what post-processing needs.

    Attributes
    ----------
    maps : ndarray
        ``(n_maps, h, w)`` float32 maps in the pre-processed (cropped) frame.
    rows, cols : slice
        Where the cropped frame lies in the input frame.
    input_shape : (int, int)
        The input frame.
    postprocess : PostprocessConfig
        Post-processing with the weights' tuned threshold and minimum area
        (or the defaults for the pixel size).
    timings : Timings
        Initialisation, pre-processing and network seconds.
    """

    maps: np.ndarray
    rows: slice
    cols: slice
    input_shape: tuple[int, int]
    postprocess: PostprocessConfig
    timings: Timings

    def save(self, folder: str | Path) -> Path:
        """Write ``maps.npy`` and ``stage.json`` (last: it marks the stage complete)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "maps.npy", self.maps.astype(np.float32, copy=False))
        info = {
            "crop": [self.rows.start, self.rows.stop, self.cols.start, self.cols.stop],
            "input_shape": list(self.input_shape),
            "postprocess": asdict(self.postprocess),
            "timings": asdict(self.timings),
        }
        tmp = folder / "stage.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(folder / "stage.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ProbabilityStage:
        """Read what :meth:`save` wrote; InputError when it is incomplete or corrupt."""
        folder = Path(folder)
        try:
            info = json.loads((folder / "stage.json").read_text())
            maps = np.load(folder / "maps.npy")
            r0, r1, c0, c1 = info["crop"]
            post = PostprocessConfig(**info["postprocess"])
            timings = Timings(**info["timings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"unreadable STNeuroNet stage ({type(exc).__name__}: {exc})", path=folder) from exc
        return cls(maps, slice(r0, r1), slice(c0, c1), tuple(info["input_shape"]), post, timings)

    def masks(self, threshold: float | None = None, min_area: float | None = None) -> Masks:
        """Post-processed masks over the input frame (threshold and min_area in px override the stage's)."""
        updates = {}
        if threshold is not None:
            updates["threshold"] = float(threshold)
        if min_area is not None:
            updates["min_area"] = float(min_area)
        cfg = replace(self.postprocess, **updates) if updates else self.postprocess
        t0 = time.perf_counter()
        masks = postprocess(self.maps, cfg)
        if masks.shape != tuple(self.input_shape):
            masks = _uncrop_masks(masks, self.rows, self.cols, self.input_shape)
        self.timings.postprocess_s = time.perf_counter() - t0
        return masks

    def full_maps(self) -> np.ndarray:
        """The maps over the input frame (a cropped border is zero)."""
        h, w = self.input_shape
        if (self.rows.start, self.rows.stop, self.cols.start, self.cols.stop) == (0, h, 0, w):
            return self.maps
        full = np.zeros((self.maps.shape[0], h, w), np.float32)
        full[:, self.rows, self.cols] = self.maps
        return full


def _frame_range(key: int | slice, n_frames: int, error: str) -> tuple[int, int]:
    """``(start, stop)`` of a frame index or step-1 slice over ``n_frames`` (IndexError ``error`` otherwise)."""
    if isinstance(key, int):
        key = slice(key, key + 1)
    start, stop, step = key.indices(n_frames)
    if step != 1:
        raise IndexError(error)
    return start, max(stop, start)


class DiskFrames:
    """A float32 ``(T, H, W)`` array in a raw file, read and written by slices of frames.

    Unlike ``np.memmap``, touched pages are not kept in the process's
    resident set, so peak memory stays independent of ``T``.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int, int]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(np.float32)
        self._frame_bytes = self.shape[1] * self.shape[2] * 4
        with open(self.path, "wb") as f:
            f.truncate(self.shape[0] * self._frame_bytes)

    def __len__(self) -> int:
        return self.shape[0]

    def _range(self, key: Any) -> tuple[int, int]:
        if isinstance(key, tuple):
            if any(k != slice(None) for k in key[1:]):
                raise IndexError("DiskFrames supports slicing frames only")
            key = key[0]
        return _frame_range(key, self.shape[0], "DiskFrames supports contiguous frame ranges only")

    def __getitem__(self, key: Any) -> np.ndarray:
        start, stop = self._range(key)
        n = stop - start
        with open(self.path, "rb") as f:
            f.seek(start * self._frame_bytes)
            buf = np.fromfile(f, dtype=np.float32, count=n * self.shape[1] * self.shape[2])
        return buf.reshape(n, self.shape[1], self.shape[2])

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        start, stop = self._range(key)
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if arr.shape != (stop - start, self.shape[1], self.shape[2]):
            raise ValueError(f"cannot write shape {arr.shape} into frames [{start}, {stop})")
        with open(self.path, "r+b") as f:
            f.seek(start * self._frame_bytes)
            arr.tofile(f)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class MovieView:
    """Adapter giving a :class:`datasets.movies.Movie` the ``movie[t0:t1, rows, cols]`` slicing of arrays."""

    def __init__(self, movie: Movie) -> None:
        self.movie = movie
        self.shape = tuple(movie.shape)
        self.dtype = movie.dtype
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        start, stop = _frame_range(key[0], self.shape[0], "only contiguous frame ranges can be read")
        frames = self.movie.read(start, stop)
        return frames[(slice(None), *key[1:])]


def as_array_like(movie: Any) -> Any:
    """Something sliceable as ``movie[t0:t1, rows, cols]`` with a 3-D ``shape``."""
    if isinstance(movie, Movie):
        return MovieView(movie)
    if isinstance(movie, (list, tuple)):
        movie = np.asarray(movie)
    shape = getattr(movie, "shape", None)
    if shape is None:
        raise InputError(f"a movie must be an array-like (T, H, W), got {type(movie).__name__}")
    if len(shape) != 3:
        raise InputError(
            f"a movie must be 3-D (T, H, W), got {len(shape)}-D shape {tuple(shape)}",
            hint="a single image is not a movie; STNeuroNet needs frames over time",
        )
    return movie


def window_starts(n_frames: int, window: int, stride: int | None = None) -> list[int]:
    """Start frames of the windows covering ``[0, n_frames)``.

    ``0, stride, 2 stride, ...`` while the window fits, plus one window ending
    at ``n_frames`` when the last one does not reach it. A movie shorter than
    ``window`` gets the single start 0 (it is padded by the caller).
    """
    stride = window if stride is None else int(stride)
    if window < 1 or stride < 1:
        raise InputError(f"window and stride must be >= 1, got {window}, {stride}")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def output_blocks(n_frames: int, window: int) -> list[int]:
    """Starts of the non-overlapping windows that give the output maps (``ceil(T / window)`` of them)."""
    return window_starts(n_frames, window, window)


def default_preprocess_config(fps: float, um_per_px: float, **kwargs: Any) -> PreprocessConfig:
    """Pre-processing for a suite recording: the paper's binning and filter, *no* border crop.

    The suite's recordings are already cropped by their data set (the
    registration border is removed when a data set is opened), so the
    default removes nothing more; pass ``border_um`` to crop.
    """
    kwargs.setdefault("border_um", 0.0)
    return PreprocessConfig.for_recording(fps, um_per_px, **kwargs)


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available", hint="use --device cpu")
    return dev


@dataclass
class PreparedMovie:
    """A pre-processed movie on disk and its whitening statistics."""

    frames: Any
    mean: float
    std: float
    minimum: float
    rows: slice
    cols: slice
    input_shape: tuple[int, int]


def prepare_movie(
    movie: Any,
    config: PreprocessConfig,
    workdir: str | Path,
    device: torch.device | str | None = None,
    chunk: int = 32,
) -> PreparedMovie:
    """Pre-process ``movie`` into ``workdir/preprocessed.f32`` and measure whitening statistics.

    One pass: the file holds the filtered movie *before* normalisation, and
    the whitening statistics come from the moments measured on the device
    while filtering. Whitening is invariant to the normalisation's affine
    map, so windows whitened from these frames equal those of the
    normalised movie up to rounding, without the normalisation pass (a
    read and a write of the whole movie) and the statistics pass (another
    read) that this function used to make; ``mean``, ``std`` and ``minimum``
    are in the file's units.

    Raises
    ------
    InputError
        Bad shapes, frames smaller than :data:`MIN_FRAME_PX` after the crop,
        non-finite values, zero variance (see :func:`stnn.preprocess.preprocess`).
    """
    arr = as_array_like(movie)
    t, h, w = (int(s) for s in arr.shape)
    rows, cols = crop_slices((h, w), config.crop)
    hc, wc = rows.stop - rows.start, cols.stop - cols.start
    if min(hc, wc) < MIN_FRAME_PX:
        raise InputError(
            f"frames of {hc}x{wc} px (after cropping) are smaller than the network's minimum of "
            f"{MIN_FRAME_PX}x{MIN_FRAME_PX} px"
        )
    n_bin = (min(t, config.n_frames or t)) // config.bin_factor
    if n_bin < 1:
        raise InputError(
            f"the movie has {t} frames, fewer than one temporal bin of {config.bin_factor} frames",
            hint="use a longer movie or check --fps",
        )
    frames = DiskFrames(Path(workdir) / "preprocessed.f32", (n_bin, hc, wc))
    moments = RunningMoments()
    preprocess(arr, replace(config, normalize=False), device=device, chunk=chunk, out=frames, moments_out=moments)
    if not moments.finite():
        raise InputError("the pre-processed movie has non-finite values (overflow in the input?)")
    _, sd = normalisation(config, moments) if config.normalize else (0.0, 1.0)
    # NiftyNet's floor of the whitening SD (1e-5) applies in the normalised units.
    std = moments.std(ddof=0) / sd
    if not (std > 0 and math.isfinite(std)):
        raise InputError("the pre-processed movie has zero variance, so it cannot be whitened")
    return PreparedMovie(frames, moments.mean, sd * max(std, 1e-5), moments.minimum, rows, cols, (h, w))


def _load_windows(
    prep: PreparedMovie, starts: list[int], window: int, rows: slice = slice(None), cols: slice = slice(None)
) -> torch.Tensor:
    """Whitened windows ``(k, 1, window, h, w)`` of a region; short movies are padded with their minimum."""
    n, h, w = prep.frames.shape
    out = np.empty((len(starts), 1, window, len(range(h)[rows]), len(range(w)[cols])), np.float32)
    for i, s in enumerate(starts):
        block = read_region(prep.frames, s, min(s + window, n), rows, cols)
        out[i, 0, : block.shape[0]] = block
        if block.shape[0] < window:
            out[i, 0, block.shape[0] :] = prep.minimum
    out -= np.float32(prep.mean)
    out /= np.float32(prep.std)
    return torch.from_numpy(out)


def probability_maps(
    prep: PreparedMovie,
    model: STNeuroNet,
    *,
    device: torch.device | str | None = None,
    batch_frames: int = 120,
    windows_per_batch: int = 2,
    overlap: str | None = None,
    amp: bool | None = None,
    timings: Timings | None = None,
    precision: str = "auto",
    tile: int | str | TilePlan | None = "auto",
    tile_margin: str | int = "auto",
) -> np.ndarray:
    """Neuron probability maps ``(ceil(T / batch_frames), H, W)`` of a prepared movie.

    Parameters
    ----------
    prep : PreparedMovie
        From :func:`prepare_movie`.
    model : STNeuroNet
        Left untouched: the network runs as an eval-mode copy with batch norm
        folded into the convolutions (:func:`stnn.fuse.inference_copy`).
    device : torch.device or str, optional
        Default: CUDA if available.
    batch_frames : int
        Frames per window (120).
    windows_per_batch : int
        Windows per forward pass.
    overlap : {None, 'mean', 'median'}
        See the module docstring.
    amp : bool, optional
        ``False`` forces float32 (as ``precision='fp32'``); otherwise
        ``precision`` decides.
    timings : Timings, optional
        Filled with ``init_s``, ``network_s``, ``n_windows``, ``n_maps``,
        ``precision``.
    precision : {'auto', 'fp32', 'bf16'}
        Precision of the 3-D convolutions (:mod:`stnn.precision`): ``'auto'``
        is bfloat16 where the CPU or GPU runs it natively, else float32
        (float16 on a CUDA GPU without bfloat16).
        Filled with ``init_s``, ``network_s``, ``n_windows``, ``n_maps`` and the tiling.
    tile : int, 'auto', TilePlan or None
        Spatial tiles (:func:`stnn.tiling.plan_tiles`): a side in px, ``'auto'``
        (from the free memory; untiled when the frame fits) or None (untiled).
    tile_margin : 'auto', 'exact' or int
        Overlap of tiled runs: ``'auto'`` measures the smallest that keeps
        the probabilities of a probe within 1e-4 of exact
        (:func:`stnn.overlap.measure_margin`), ``'exact'`` takes the
        receptive field, an int is a margin in px. A plan whose margin was
        already set (explicit) is kept.

    Returns
    -------
    np.ndarray
        float32 maps in the pre-processed (cropped) frame.
    """
    if overlap not in (None, "mean", "median"):
        raise InputError(f"overlap must be None, 'mean' or 'median', got {overlap!r}")
    if batch_frames < 8:
        raise InputError(f"batch_frames must be >= 8, got {batch_frames}")
    dev = _resolve_device(device)
    timings = timings if timings is not None else Timings()
    n = int(prep.frames.shape[0])
    if n < batch_frames:
        logger.warning(
            "the binned movie has %d frames, fewer than one %d-frame window: padding it with its minimum "
            "(the paper's network always saw full windows)",
            n,
            batch_frames,
        )
    blocks = output_blocks(n, batch_frames)
    stride = batch_frames if overlap is None else max(batch_frames // 2, 1)
    starts = window_starts(n, batch_frames, stride)
    k = max(int(windows_per_batch), 1)
    batches = [starts[i : i + k] for i in range(0, len(starts), k)]
    margin = parse_margin(tile_margin)
    plan = tile if isinstance(tile, TilePlan) else plan_tiles(
        prep.frames.shape[1:],
        model,
        tile,
        device=dev,
        frames=batch_frames,
        windows_per_batch=k,
        amp=amp,
        margin=margin,
    )

    dtype = torch.float32 if amp is False else resolve_precision(precision, dev)
    t0 = time.perf_counter()
    net = inference_copy(model, dtype, dev)
    if plan.tiled and plan.margin_source == "receptive field" and margin == "auto":
        net32 = net if dtype == torch.float32 else None
        t_probe = time.perf_counter()
        plan = _measured_margin(plan, prep, model, net32, dev, starts[0], batch_frames)
        timings.margin_probe_s = time.perf_counter() - t_probe
    if plan.tiled:
        # Logged once the margin is final (a measured margin re-cuts the plan).
        logger.info("%d tiles of %d px (margin %d px): %s", len(plan.tiles), plan.tile, plan.margin, plan.reason)
    timings.tile, timings.n_tiles, timings.tile_margin = plan.tile, len(plan.tiles), plan.margin
    timings.tile_source = f"{plan.source}: {plan.reason}"
    timings.tile_margin_source = f"{plan.margin_source}: {plan.margin_note}" if plan.margin_note else plan.margin_source
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    maps = np.empty((len(starts), *prep.frames.shape[1:]), np.float32)
    clock = {"t1": t0}

    def first_batch_read() -> None:
        timings.init_s += time.perf_counter() - t0 - timings.margin_probe_s
        clock["t1"], clock["c1"] = time.perf_counter(), time.process_time()

    def forward(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            logits = net(x.to(dev, non_blocking=True))
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()

    pad = None
    h, w = prep.frames.shape[1:]
    if plan.tiled and getattr(model, "pad_mode", None) == "minimum" and (h % 8 or w % 8):
        # The frame is padded at its end with whole-line minima, which a tile does not see.
        minima = line_minima(prep.frames)
        whitening = (prep.mean, prep.std, prep.minimum)

        def pad(x: torch.Tensor, region, batch) -> torch.Tensor:
            return pad_like_frame(x, region, (h, w), minima, batch, whitening)

    # Each tile (the whole frame when untiled) and batch of windows in turn; the next is read meanwhile.
    run_tiled(
        plan,
        batches,
        lambda batch, rows, cols: _load_windows(prep, batch, batch_frames, rows, cols),
        forward,
        maps,
        pad=pad,
        started=first_batch_read,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    timings.network_s += time.perf_counter() - clock["t1"]
    timings.network_cpu_s += time.process_time() - clock.get("c1", time.process_time())
    timings.n_windows += len(starts)
    timings.precision = precision_name(dtype)
    timings.n_frames = n

    if overlap is None:
        out = maps  # starts == blocks
    else:
        s = np.asarray(starts)
        out = np.empty((len(blocks), *maps.shape[1:]), np.float32)
        reduce = np.mean if overlap == "mean" else np.median
        for j, b0 in enumerate(blocks):
            b1 = min(b0 + batch_frames, n)
            shared = np.minimum(s + batch_frames, b1) - np.maximum(s, b0)
            members = np.flatnonzero(shared >= (b1 - b0) / 2)
            out[j] = reduce(maps[members], axis=0)
    timings.n_maps = len(out)
    return out


def _measured_margin(
    plan: TilePlan,
    prep: PreparedMovie,
    model: STNeuroNet,
    net32: torch.nn.Module | None,
    dev: torch.device,
    start: int,
    window: int,
) -> TilePlan:
    """``plan`` cut again with the margin measured on the movie's first window (:mod:`stnn.overlap`)."""
    net32 = net32 if net32 is not None else inference_copy(model, torch.float32, dev)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net32(x.to(dev)).float(), dim=1)[:, 1]

    t0 = time.perf_counter()
    check = measure_margin(
        forward, lambda rows, cols: _load_windows(prep, [start], window, rows, cols), plan.frame, plan.margin
    )
    logger.info("tile margin %d px (%s, %.1f s)", check.margin, check.note, time.perf_counter() - t0)
    if check.source != "measured":
        return replace(plan, margin_note=check.note)
    return with_margin(plan, check.margin, check.source, check.note)


def postprocess_for(
    meta: Any,
    um_per_px: float,
    threshold: float | None = None,
    min_area: float | None = None,
    base: PostprocessConfig | None = None,
) -> PostprocessConfig:
    """Post-processing for a pixel size: given values, else the weights' tuned ones, else the defaults."""
    if threshold is None and meta is not None and meta.threshold is not None:
        threshold = meta.threshold
    if min_area is None and meta is not None and meta.min_area is not None:
        min_area = meta.min_area_for(um_per_px)
    updates: dict[str, float] = {"um_per_px": float(um_per_px)}
    if threshold is not None:
        updates["threshold"] = float(threshold)
    if min_area is not None:
        updates["min_area"] = float(min_area)
    return PostprocessConfig(**{**asdict(base or PostprocessConfig.for_pixel_size(um_per_px)), **updates})


def _resolve_model(model: Any, device: torch.device, metadata: Any = None):
    """(model, metadata or None) from a model (with its metadata, if any), weights name or path."""
    if isinstance(model, torch.nn.Module):
        return model, metadata
    from .weights import pretrained

    return pretrained("synthetic" if model is None else model, device=device, return_metadata=True)


def probability_stage(
    movie_or_recording: Any,
    model: STNeuroNet | str | Path | None = None,
    *,
    fps: float | None = None,
    um_per_px: float | None = None,
    device: torch.device | str | None = None,
    threshold: float | None = None,
    min_area: float | None = None,
    batch_frames: int | None = None,
    overlap: str | None = None,
    windows_per_batch: int = 2,
    amp: bool | None = None,
    preprocess_config: PreprocessConfig | None = None,
    postprocess_config: PostprocessConfig | None = None,
    chunk: int = 32,
    workdir: str | Path | None = None,
    metadata: Any = None,
    precision: str = "auto",
    tile: int | str | None = "auto",
    tile_margin: str | int = "auto",
) -> ProbabilityStage:
    """The expensive half of :func:`segment`: pre-processing and the network.

    Takes the arguments of :func:`segment`; ``threshold`` and ``min_area``
    only set the stage's post-processing defaults. The maps can be saved
    (:meth:`ProbabilityStage.save`) and post-processed many times with other
    thresholds and minimum areas (:meth:`ProbabilityStage.masks`), which is
    how a parameter grid shares one network pass.
    """
    if isinstance(movie_or_recording, Recording):
        rec = movie_or_recording
        movie = rec.movie
        fps = rec.fps if fps is None else fps
        um_per_px = rec.um_per_px if um_per_px is None else um_per_px
    else:
        movie = movie_or_recording
    movie = as_array_like(movie)
    if fps is None or um_per_px is None:
        raise InputError("segmenting a bare movie needs its frame rate and pixel size", hint="pass fps= and um_per_px=")
    dev = _resolve_device(device)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    net, meta = _resolve_model(model, dev, metadata)
    if preprocess_config is None:
        # Weights trained at another binned rate (e.g. 3 Hz for Neurofinder) are run at that rate.
        target = (meta.preprocess or {}).get("target_fps") if meta is not None else None
        extra = {"target_fps": float(target)} if target else {}
        preprocess_config = default_preprocess_config(fps, um_per_px, **extra)
    pre_cfg = preprocess_config
    if batch_frames is None:
        trained = (meta.extra or {}).get("frames") if meta is not None else None
        batch_frames = int(trained) if trained else 120
    post_cfg = postprocess_for(meta, um_per_px, threshold, min_area, postprocess_config)

    rows, cols = crop_slices(tuple(movie.shape[1:]), pre_cfg.crop)
    margin = parse_margin(tile_margin)
    plan = plan_tiles(
        (rows.stop - rows.start, cols.stop - cols.start),
        net,
        tile,
        device=dev,
        frames=batch_frames,
        windows_per_batch=windows_per_batch,
        amp=amp,
        margin=margin,
    )
    if tile is not None:
        chunk = min(chunk, plan.preprocess_chunk)  # whole frames: fewer per step when they are large

    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="stnn-", dir=workdir) as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        prep = prepare_movie(movie, pre_cfg, tmp, device=dev, chunk=chunk)
        timings.preprocess_s = time.perf_counter() - t0
        timings.preprocess_cpu_s = time.process_time() - c0
        maps = probability_maps(
            prep,
            net,
            device=dev,
            batch_frames=batch_frames,
            windows_per_batch=windows_per_batch,
            overlap=overlap,
            amp=amp,
            timings=timings,
            precision=precision,
            tile=plan,
            tile_margin=margin,
        )
    return ProbabilityStage(maps, prep.rows, prep.cols, prep.input_shape, post_cfg, timings)


def segment(
    movie_or_recording: Any,
    model: STNeuroNet | str | Path | None = None,
    *,
    fps: float | None = None,
    um_per_px: float | None = None,
    device: torch.device | str | None = None,
    threshold: float | None = None,
    min_area: float | None = None,
    batch_frames: int | None = None,
    overlap: str | None = None,
    windows_per_batch: int = 2,
    amp: bool | None = None,
    preprocess_config: PreprocessConfig | None = None,
    postprocess_config: PostprocessConfig | None = None,
    chunk: int = 32,
    workdir: str | Path | None = None,
    metadata: Any = None,
    precision: str = "auto",
    tile: int | str | None = "auto",
    tile_margin: str | int = "auto",
) -> InferenceResult:
    """Segment the active neurons of a movie with STNeuroNet.

    Parameters
    ----------
    movie_or_recording : Recording, Movie or array-like
        A :class:`~datasets.records.Recording` (its movie, frame rate and
        pixel size are used), a :class:`~datasets.movies.Movie`, or a
        ``(T, H, W)`` array / memmap / h5py dataset of raw fluorescence.
    model : STNeuroNet, str or Path, optional
        A network, the name of shipped weights or a ``.pt`` path (default:
        shipped ``"synthetic"``). Weights' metadata supplies the tuned
        ``threshold`` and ``min_area`` when those are not given.
    fps, um_per_px : float
        Raw frame rate and pixel size (required unless a Recording is given).
    device : torch.device or str, optional
        Default: CUDA if available, else CPU.
    threshold, min_area : float, optional
        Post-processing probability threshold and minimum area (px, strict
        ``>``); default: the weights' tuned values, else
        :class:`~stnn.postprocess.PostprocessConfig` defaults scaled to the
        pixel size.
    batch_frames : int, optional
        Binned frames per window: default the window length the weights were
        trained on (their metadata), else the paper's 120.
    overlap : {None, 'mean', 'median'}
        Overlapping windows (see module docstring).
    windows_per_batch : int
        Windows per forward pass (more: faster on a GPU, more memory).
    amp : bool, optional
        ``False`` forces float32; otherwise ``precision`` decides.
    preprocess_config : PreprocessConfig, optional
        Default: :func:`default_preprocess_config` (the weights' binned rate,
        else 6 Hz; no border crop).
    postprocess_config : PostprocessConfig, optional
        Other post-processing parameters (``threshold``/``min_area`` given
        here take precedence).
    chunk : int
        Binned frames per pre-processing step.
    workdir : str or Path, optional
        Folder for the temporary pre-processed movie (default: a fresh
        temporary folder, removed afterwards).
    metadata : WeightsMetadata, optional
        Metadata of ``model`` when it is an already loaded network (from
        ``stnn.pretrained(..., return_metadata=True)``): its tuned threshold,
        minimum area, window length and binned rate then apply as they do
        for a weights name. Without it a loaded network gets the defaults.
    precision : {'auto', 'fp32', 'bf16'}
        Network precision (see :func:`probability_maps`); the one used is
        ``timings.precision``.
    tile : int, 'auto' or None
        Spatial tiles for the network (:mod:`stnn.tiling`): a side in px
        (margins included), ``'auto'`` (the largest that fits in the free
        memory; a frame that fits runs whole) or None (never tile). Tiling
        also shrinks the pre-processing chunk for large frames. Planned, and
        a tile that cannot work refused, before anything runs.
    tile_margin : 'auto', 'exact' or int
        Overlap of tiles: measured on the movie (``'auto'``, see
        :mod:`stnn.overlap`), the receptive field (``'exact'``) or px.

    Returns
    -------
    Segmentation
        ``(masks, prob_maps, timings)``: masks and maps over the input frame
        (a cropped border is zero in the maps); ``prob_maps`` has
        ``ceil(T_binned / batch_frames)`` maps.

    Raises
    ------
    InputError
        2-D input, frames smaller than 8 px, too few frames for one bin,
        non-finite values, zero variance, missing fps / pixel size, a tile
        below the network's minimum or larger than the free memory allows.
    """
    stage = probability_stage(
        movie_or_recording,
        model,
        fps=fps,
        um_per_px=um_per_px,
        device=device,
        threshold=threshold,
        min_area=min_area,
        batch_frames=batch_frames,
        overlap=overlap,
        windows_per_batch=windows_per_batch,
        amp=amp,
        preprocess_config=preprocess_config,
        postprocess_config=postprocess_config,
        chunk=chunk,
        workdir=workdir,
        metadata=metadata,
        precision=precision,
        tile=tile,
        tile_margin=tile_margin,
    )
    masks = stage.masks()
    timings = stage.timings
    logger.info(
        "segmented %d binned frames: %d masks, %.1f frames/s (network %.1f frames/s)",
        timings.n_frames,
        masks.n,
        timings.fps,
        timings.network_fps,
    )
    return InferenceResult(masks, stage.full_maps(), timings)


def _uncrop_masks(masks: Masks, rows: slice, cols: slice, input_shape: tuple[int, int]) -> Masks:
    h, w = input_shape
    coords = []
    for k in range(masks.n):
        r, c = masks.coordinates(k)
        coords.append((r + rows.start, c + cols.start))
    return Masks.from_coordinates(coords, (h, w)) if coords else Masks.empty((h, w))
