"""Spatial tiling of STNeuroNet inference, so that memory does not grow with the frame's area.

The network's activations take about 100 bytes per input voxel (float32 on
CPU), so a 120-frame window of a 2048x2048 frame would need ~50 GB. Here the
frame is cut into square tiles that overlap by a *margin* equal to the
network's receptive field; each tile runs through the network on its own and
only its *core* (the tile minus the margin) is written into the probability
map. Cores partition the frame, so nothing is blended.

Why the result equals the untiled one
-------------------------------------
* The margin is the receptive field measured on the model itself
  (:func:`receptive_field`), rounded up to a multiple of 8: no output pixel
  of a core sees anything a tile lacks.
* Every tile starts at a multiple of 8 pixels. The network halves each axis
  three times, so a shift by 8 input pixels is a shift by a whole pixel at
  every level: strided convolutions and linear up-sampling then compute the
  same sums in the tile as in the whole frame.
* At the frame's own edges a tile has the same zero padding as the frame.
  When the frame's height or width is not a multiple of 8 the network pads
  the *whole frame* at its end with the minimum of each line (``pad_mode
  'minimum'``); a tile sees only part of each line, so the line minima are
  measured over the whole movie beforehand (:func:`line_minima`) and the
  end tiles are padded with them (:func:`pad_like_frame`).

What else holds whole frames
----------------------------
* Pre-processing (binning, homomorphic filter) runs on chunks of whole
  frames; :func:`preprocess_chunk` sets the chunk so that its pixels stay
  constant (at least one binned frame), which bounds it as long as a few
  frames fit (a 2048x2048 float32 frame is 16 MiB).
* The probability maps, ``(n_maps, H, W)`` float32, are the result: 4 bytes
  per pixel per 120-frame window, about 1/600 of the raw 30 Hz movie.
* Post-processing labels one map at a time (a few tens of bytes per pixel
  of one map) and keeps one int32 label image per map until the fusion,
  as large as the maps themselves.

Tile size
---------
``tile`` is the side of the square region (margins included) that the
network processes at once. ``'auto'`` takes the largest multiple of 8 whose
estimated memory (:func:`estimate_bytes`) fits in a fraction of the free
memory of the device (CPU: ``MemAvailable`` of ``/proc/meminfo`` or psutil;
CUDA: ``torch.cuda.mem_get_info``). A frame no larger than one tile runs
untiled.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from datasets.errors import InputError

__all__ = [
    "ALIGN",
    "CPU_BYTES_PER_VOXEL",
    "MEMORY_FRACTION",
    "Tile",
    "TilePlan",
    "receptive_field",
    "tile_margin",
    "min_tile",
    "available_memory",
    "bytes_per_voxel",
    "estimate_bytes",
    "largest_tile",
    "plan_tiles",
    "with_margin",
    "preprocess_chunk",
    "read_region",
    "line_minima",
    "pad_like_frame",
    "parse_tile",
    "parse_margin",
    "run_tiled",
]

logger = logging.getLogger(__name__)

#: Tiles start at multiples of this (the network halves every axis three times).
ALIGN = 8
#: Peak bytes per input voxel of one float32 forward pass on CPU (measured with
#: ``ru_maxrss`` on 192..384 px x 120 frames: 110, 103, 101 B; tests/benchmarks).
CPU_BYTES_PER_VOXEL = 110.0
#: Fixed memory besides the network (interpreter, torch, libraries, buffers), bytes.
BASE_BYTES = 400 * 2**20
#: Share of the free memory that ``tile='auto'`` plans for.
MEMORY_FRACTION = 0.5
#: Pixels per pre-processing chunk (32 binned frames of 512x512, the former default).
PREPROCESS_CHUNK_PX = 32 * 512 * 512


def _ceil_to(n: int, k: int) -> int:
    return -(-int(n) // k) * k


# -- receptive field -----------------------------------------------------------------


def _arch_key(model: torch.nn.Module) -> str:
    """What the receptive field depends on: class, parameter shapes and TF-compatible padding."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    text = repr((type(model).__name__, shapes, bool(getattr(model, "tf_compat", False))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Receptive fields already measured by :func:`_probe_axis` (architecture key -> px): the published
#: STNeuroNet in native and TF-compatible padding. ``tests/stnn/test_tiling.py`` re-measures them;
#: other architectures are probed on first use (tens of seconds on a loaded 2-core CPU).
_RF_CACHE: dict[str, int] = {
    "23506639ab903d05": 162,
    "f092548545acdb4d": 164,
}


def _probe_axis(model: torch.nn.Module, axis: int, length: int = 384) -> int:
    """Largest distance along ``axis`` (3: rows, 4: columns) from an output pixel to an input it depends on.

    One backward pass over a batch of ``ALIGN`` strips, strip ``k`` asking for
    the output pixel at phase ``k`` modulo 8 (BN in eval mode keeps the strips
    independent).
    """
    while True:
        shape = [ALIGN, 1, ALIGN, ALIGN, ALIGN]
        shape[axis] = length
        x = torch.ones(shape, requires_grad=True)
        out = model(x)[:, 1]  # (ALIGN, ALIGN, L) or (ALIGN, L, ALIGN)
        centre = _ceil_to(length // 2, ALIGN)
        pos = [centre + k for k in range(ALIGN)]
        k = torch.arange(ALIGN)
        picked = out[k, 0, torch.tensor(pos)] if axis == 4 else out[k, torch.tensor(pos), 0]
        (grad,) = torch.autograd.grad(picked.sum(), x)
        dims = tuple(d for d in range(1, 5) if d != axis)
        support = grad.abs().amax(dim=dims) > 0  # (ALIGN, L)
        reach = 0
        complete = True
        for k_, p in enumerate(pos):
            idx = torch.nonzero(support[k_]).flatten()
            lo, hi = int(idx.min()), int(idx.max())
            if lo == 0 or hi == length - 1:
                complete = False  # the strip was too short to hold the whole field
                break
            reach = max(reach, p - lo, hi - p)
        if complete:
            return reach
        length *= 2


def receptive_field(model: torch.nn.Module) -> int:
    """Receptive-field radius of ``model`` in input pixels (largest reach along rows or columns).

    Measured on the model's own forward pass, not from a formula: a copy
    with positive weights, zero BN means and no dropout (so every ReLU
    passes and no path cancels) is run on a long strip, and the support of
    the gradient of single output pixels, at every position modulo 8, gives
    the reach. The result is cached per architecture.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~stnn.model.STNeuroNet` (any weights).

    Returns
    -------
    int
        Pixels: an output pixel depends on inputs at most this far away.
    """
    key = _arch_key(model)
    if key in _RF_CACHE:
        return _RF_CACHE[key]
    probe = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(p.abs() + 0.01)
        for name, buf in probe.named_buffers():
            if name.endswith("running_mean"):
                buf.zero_()
            elif name.endswith("running_var"):
                buf.fill_(1.0)
    for p in probe.parameters():
        p.requires_grad_(False)
    return _cached_rf(key, probe)


def _cached_rf(key: str, probe: torch.nn.Module) -> int:
    if key not in _RF_CACHE:
        with torch.enable_grad():
            _RF_CACHE[key] = max(_probe_axis(probe, axis) for axis in (3, 4))
        logger.info("measured the network's receptive field: %d px", _RF_CACHE[key])
    return _RF_CACHE[key]


def tile_margin(model: torch.nn.Module) -> int:
    """Overlap kept on each side of a tile's core: the receptive field rounded up to a multiple of 8."""
    return _ceil_to(receptive_field(model), ALIGN)


def min_tile(margin: int) -> int:
    """Smallest useful tile: two margins and an 8-pixel core."""
    return 2 * int(margin) + ALIGN


# -- memory ------------------------------------------------------------------------


def available_memory(device: torch.device | str) -> int:
    """Free memory of ``device`` in bytes (CPU: ``MemAvailable``; CUDA: ``torch.cuda.mem_get_info``)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # No way to tell (not Linux, no psutil): assume 4 GiB, a small laptop's share.
    logger.warning("cannot read the free memory (no /proc/meminfo, no psutil); planning for 4 GiB")
    return 4 * 2**30


@functools.lru_cache(maxsize=4)
def _cuda_bytes_per_voxel(device: str, amp: bool) -> float:
    """Peak CUDA bytes per input voxel of one forward pass, measured on a random network."""
    from .model import STNeuroNet
    from .precision import autocast_for

    dev = torch.device(device)
    net = STNeuroNet().to(dev).eval()
    sizes = (64, 128)
    peaks = []
    for s in sizes:
        x = torch.randn(1, 1, 120, s, s, device=dev)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        with torch.inference_mode(), autocast_for(dev, amp):
            net(x)
        torch.cuda.synchronize(dev)
        peaks.append(torch.cuda.max_memory_allocated(dev) - base)
        del x
    # Slope between the two sizes: fixed workspaces cancel out.
    slope = (peaks[1] - peaks[0]) / (120 * (sizes[1] ** 2 - sizes[0] ** 2))
    return float(max(slope, 1.0)) * 1.15  # allocator fragmentation


def bytes_per_voxel(device: torch.device | str, amp: bool | None = None) -> float:
    """Peak bytes of a forward pass per input voxel (CPU: measured constant; CUDA: measured now)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        use_amp = True if amp is None else bool(amp)
        return _cuda_bytes_per_voxel(str(dev), use_amp)
    return CPU_BYTES_PER_VOXEL


def estimate_bytes(tile: int, frames: int, windows_per_batch: int, per_voxel: float) -> int:
    """Memory of one forward batch of ``windows_per_batch`` windows of ``frames`` x ``tile`` x ``tile``."""
    t = _ceil_to(frames, ALIGN)
    return int(per_voxel * windows_per_batch * t * tile * tile)


def largest_tile(budget: int, frames: int, windows_per_batch: int, per_voxel: float) -> int:
    """Largest multiple of 8 whose :func:`estimate_bytes` fits in ``budget`` (0 if none)."""
    t = _ceil_to(frames, ALIGN)
    side = math.sqrt(max(budget, 0) / (per_voxel * windows_per_batch * t))
    return int(side) // ALIGN * ALIGN


def preprocess_chunk(frame_shape: tuple[int, int], default: int = 32) -> int:
    """Binned frames per pre-processing step: ``default`` at 512x512, fewer for larger frames (>= 1)."""
    h, w = frame_shape
    return int(max(1, min(default, PREPROCESS_CHUNK_PX // max(h * w, 1))))


# -- plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One tile: the input region (margins included) and the core it writes.

    All slices are in frame coordinates; ``rows.start`` and ``cols.start``
    are multiples of 8.
    """

    rows: slice
    cols: slice
    core_rows: slice
    core_cols: slice


@dataclass
class TilePlan:
    """How a frame is cut into tiles (``tile == 0``: untiled), and why.

    Attributes
    ----------
    frame : (int, int)
        Frame height and width (after the pre-processing crop).
    tile : int
        Tile side in px, margins included; 0 when the frame runs whole.
    margin : int
        Overlap on each side (receptive field rounded up to 8 px).
    receptive_field : int
        Measured receptive-field radius (px).
    source : str
        ``'auto'``, ``'explicit'`` or ``'off'``.
    reason : str
        One line for people.
    budget_bytes, estimated_bytes : int
        Memory planned for and estimated for one forward batch.
    preprocess_chunk : int
        Binned frames per pre-processing step.
    tiles : list of Tile
        Row-major.
    margin_source : str
        How the margin was set: ``'receptive field'`` (exact bound),
        ``'measured'`` on the movie (:mod:`stnn.overlap`) or ``'explicit'``.
    margin_note : str
        The evidence for a measured margin, for people.
    """

    frame: tuple[int, int]
    tile: int
    margin: int
    receptive_field: int
    source: str
    reason: str
    budget_bytes: int
    estimated_bytes: int
    preprocess_chunk: int
    tiles: list[Tile] = field(default_factory=list)
    margin_source: str = "receptive field"
    margin_note: str = ""

    @property
    def tiled(self) -> bool:
        """Whether the frame is cut into more than one tile."""
        return len(self.tiles) > 1

    @property
    def processed_fraction(self) -> float:
        """Pixels run through the network per frame pixel (1 untiled; > 1 with margins)."""
        if not self.tiled:
            return 1.0
        area = sum(
            _ceil_to(t.rows.stop - t.rows.start, ALIGN) * _ceil_to(t.cols.stop - t.cols.start, ALIGN)
            for t in self.tiles
        )
        return area / (self.frame[0] * self.frame[1])

    def as_dict(self) -> dict[str, Any]:
        """Summary for timings and JSON (the tile list is reduced to its count)."""
        d = asdict(self)
        d.pop("tiles")
        d.update(n_tiles=len(self.tiles), tiled=self.tiled, processed_fraction=self.processed_fraction)
        return d


def _axis_splits(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, core_start, core_stop)`` along one axis; cores partition ``[0, length)``.

    A tile at the frame's edge needs a margin on one side only, so the first
    and last cores may be ``tile - margin`` wide and the others ``tile - 2
    margin``. The fewest cores that cover the axis are taken, their
    boundaries spread in proportion to those widths and put on multiples of
    8; each tile (core plus margins, cut at the frame's edge) is at most
    ``tile`` wide.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    edge, inner = tile - margin, tile - 2 * margin
    n = 2 + max(0, -(-(length - 2 * edge) // inner))
    while True:
        caps = [edge] + [inner] * (n - 2) + [edge]
        scale = length / sum(caps)
        ideal = np.cumsum(caps[:-1]) * scale
        bounds = [0] + [min(int(round(b / ALIGN)) * ALIGN, length) for b in ideal] + [length]
        spans = [(max(b0 - margin, 0), min(b1 + margin, length), b0, b1) for b0, b1 in zip(bounds[:-1], bounds[1:])]
        if all(b1 > b0 for _, _, b0, b1 in spans) and all(s1 - s0 <= tile for s0, s1, _, _ in spans):
            return spans
        n += 1


def _whole(h: int, w: int) -> Tile:
    return Tile(slice(0, h), slice(0, w), slice(0, h), slice(0, w))


def _cut(h: int, w: int, size: int, margin: int) -> list[Tile]:
    """Row-major tiles of at most ``size`` px whose cores partition an ``h`` x ``w`` frame."""
    return [
        Tile(slice(r0, r1), slice(c0, c1), slice(cr0, cr1), slice(cc0, cc1))
        for r0, r1, cr0, cr1 in _axis_splits(h, size, margin)
        for c0, c1, cc0, cc1 in _axis_splits(w, size, margin)
    ]


def with_margin(plan: TilePlan, margin: int, source: str, note: str = "") -> TilePlan:
    """The same tile size cut again with another margin (fewer tiles when it is smaller).

    Parameters
    ----------
    plan : TilePlan
        A tiled plan from :func:`plan_tiles`.
    margin : int
        New overlap on each side (multiple of 8), below ``plan.tile / 2``.
    source, note : str
        See :class:`TilePlan` (``margin_source``, ``margin_note``).
    """
    if not plan.tiled:
        return plan
    if margin % ALIGN or not 0 < 2 * margin < plan.tile:
        raise InputError(f"a margin of {margin} px does not fit a {plan.tile}-px tile (multiple of {ALIGN} px, "
                         f"below half the tile)")
    h, w = plan.frame
    return replace(plan, margin=int(margin), tiles=_cut(h, w, plan.tile, int(margin)), margin_source=source,
                   margin_note=note)


def parse_tile(text: str | int | None) -> int | str | None:
    """``'auto'`` / ``'off'`` / ``'none'`` / an integer (px) from a command line or config value."""
    if text is None or isinstance(text, int):
        return text
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    if t in ("off", "none", "0"):
        return None
    try:
        value = int(t)
    except ValueError:
        raise InputError(f"tile must be a size in px, 'auto' or 'off', got {text!r}") from None
    if value < 1:
        raise InputError(f"tile must be >= 1 px, got {value}")
    return value


def parse_margin(text: str | int | None) -> str | int:
    """``'auto'`` (measure), ``'exact'`` (receptive field) or a margin in px, from a command line or config."""
    if text is None:
        return "auto"
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        t = str(text).strip().lower()
        if t in ("auto", "exact"):
            return t
        try:
            value = int(t)
        except ValueError:
            raise InputError(f"tile margin must be 'auto', 'exact' or a size in px, got {text!r}") from None
    if value < ALIGN or value % ALIGN:
        raise InputError(
            f"tile margin must be a positive multiple of {ALIGN} px (the network's stride), got {value}",
            hint="use --tile-margin auto to measure it on the movie",
        )
    return value


def plan_tiles(
    frame: tuple[int, int],
    model: torch.nn.Module,
    tile: int | str | None = "auto",
    *,
    device: torch.device | str = "cpu",
    frames: int = 120,
    windows_per_batch: int = 1,
    amp: bool | None = None,
    memory_bytes: int | None = None,
    margin: int | str | None = None,
) -> TilePlan:
    """Choose the tiles of a ``frame = (H, W)`` for ``model`` on ``device``.

    Parameters
    ----------
    frame : (int, int)
        Height and width of the pre-processed frame.
    model : torch.nn.Module
        The network (its receptive field sets the margin).
    tile : int, 'auto' or None
        Tile side in px (margins included), ``'auto'`` (largest that fits in
        :data:`MEMORY_FRACTION` of the free memory) or None (untiled).
    device : torch.device or str
        Where the network runs.
    frames, windows_per_batch : int
        Window length and windows per forward pass (the memory scales with both).
    amp : bool, optional
        fp16 autocast on CUDA (its memory per voxel differs).
    memory_bytes : int, optional
        Free memory to plan with instead of measuring it (tests).
    margin : int, 'auto', 'exact' or None
        Overlap on each side in px (multiple of 8); otherwise the receptive
        field rounded up to 8 (exact). :func:`stnn.infer.probability_maps`
        may cut a plan again with a margin measured on the movie
        (:func:`with_margin`).

    Returns
    -------
    TilePlan

    Raises
    ------
    InputError
        An explicit tile smaller than :func:`min_tile` (the message gives the
        minimum), or one whose estimated memory exceeds the free memory (the
        message gives the largest tile that fits), before anything runs.
    """
    h, w = (int(s) for s in frame)
    dev = torch.device(device)
    chunk = preprocess_chunk((h, w))
    wpb = max(int(windows_per_batch), 1)
    if tile is None:
        return TilePlan((h, w), 0, 0, 0, "off", "tiling off", 0, 0, chunk, [_whole(h, w)])
    per_voxel = bytes_per_voxel(dev, amp)
    free = int(available_memory(dev) if memory_bytes is None else memory_bytes)
    base = BASE_BYTES if dev.type == "cpu" else 0
    whole = estimate_bytes(max(_ceil_to(h, ALIGN), _ceil_to(w, ALIGN)), frames, wpb, per_voxel)
    gib = free / 2**30
    budget = int(free * MEMORY_FRACTION) - base
    if tile == "auto" and whole <= budget:
        # No receptive field needed (it may have to be measured): the frame runs whole.
        reason = f"frame fits in {MEMORY_FRACTION:.0%} of {gib:.1f} GiB free on {dev.type}: untiled"
        return TilePlan((h, w), 0, 0, 0, "auto", reason, budget, whole, chunk, [_whole(h, w)])
    rf = receptive_field(model)
    margin = parse_margin(margin)
    margin_source = "explicit" if isinstance(margin, int) else "receptive field"
    margin = margin if isinstance(margin, int) else _ceil_to(rf, ALIGN)
    smallest = min_tile(margin)

    def plan(size: int, source: str, reason: str, budget: int) -> TilePlan:
        tiles = _cut(h, w, size, margin)
        if len(tiles) == 1:
            return TilePlan((h, w), 0, margin, rf, source, reason, budget, whole, chunk, tiles, margin_source)
        est = estimate_bytes(size, frames, wpb, per_voxel)
        return TilePlan((h, w), size, margin, rf, source, reason, budget, est, chunk, tiles, margin_source)

    if tile == "auto":
        size = largest_tile(budget, frames, wpb, per_voxel)
        if size < smallest:
            logger.warning(
                "only %.1f GiB free on %s: even the smallest tile (%d px, ~%.1f GiB) may not fit; using it",
                gib,
                dev.type,
                smallest,
                estimate_bytes(smallest, frames, wpb, per_voxel) / 2**30,
            )
            size = smallest
        return plan(size, "auto", f"largest tile for {MEMORY_FRACTION:.0%} of {gib:.1f} GiB free on {dev.type}", budget)
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool):
        raise InputError(f"tile must be a size in px, 'auto' or None, got {tile!r}")
    size = int(tile)
    if size < smallest:
        raise InputError(
            f"a tile of {size} px is smaller than the minimum of {smallest} px for this network "
            f"(receptive field {rf} px, margin {margin} px on each side, core of at least {ALIGN} px)"
            + ("" if margin_source == "explicit" else "; a smaller --tile-margin allows smaller tiles"),
            hint=f"use --tile {smallest} or larger, or --tile auto",
        )
    size = size // ALIGN * ALIGN
    if max(h, w) <= size:
        return plan(size, "explicit", f"frame {h}x{w} is no larger than one {size}-px tile: untiled", free)
    need = estimate_bytes(size, frames, wpb, per_voxel) + base
    if need > free:
        fits = largest_tile(free - base, frames, wpb, per_voxel)
        fit_text = f"the largest that fits is {fits} px" if fits >= smallest else (
            f"not even the minimum {smallest} px fits"
        )
        raise InputError(
            f"a {size}-px tile needs about {need / 2**30:.1f} GiB on {dev.type} but {free / 2**30:.1f} GiB is free; "
            f"{fit_text}",
            hint=f"use --tile {fits}" if fits >= smallest else "free memory or use another device",
        )
    return plan(size, "explicit", f"tile {size} px as asked", free)


# -- reading and padding tiles -------------------------------------------------------


def read_region(frames: Any, t0: int, t1: int, rows: slice, cols: slice) -> np.ndarray:
    """``frames[t0:t1, rows, cols]`` as float32, reading only the needed rows of each frame.

    A :class:`stnn.infer.DiskFrames` is read with one positioned read per
    frame (the rows of the tile, full width), so memory stays at one row
    band; anything else is sliced directly.
    """
    path = getattr(frames, "path", None)
    if path is None:
        return np.asarray(frames[t0:t1, rows, cols], dtype=np.float32)
    _, h, w = frames.shape
    r0, r1 = rows.start or 0, h if rows.stop is None else rows.stop
    band = (r1 - r0) * w * 4
    out = np.empty((t1 - t0, r1 - r0, len(range(w)[cols])), np.float32)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i, t in enumerate(range(t0, t1)):
            buf = os.pread(fd, band, (t * h + r0) * w * 4)
            out[i] = np.frombuffer(buf, np.float32).reshape(r1 - r0, w)[:, cols]
    finally:
        os.close(fd)
    return out


@dataclass
class LineMinima:
    """Per binned frame, the minimum of each column (over rows) and of each row (over columns)."""

    cols: np.ndarray  # (T, W)
    rows: np.ndarray  # (T, H)


def line_minima(frames: Any, chunk: int = 4) -> LineMinima:
    """Column and row minima of every frame, in one streaming pass of ``chunk`` frames."""
    n, h, w = (int(s) for s in frames.shape)
    cols = np.empty((n, w), np.float32)
    rows = np.empty((n, h), np.float32)
    for t0 in range(0, n, chunk):
        block = np.asarray(frames[t0 : t0 + chunk], dtype=np.float32)
        cols[t0 : t0 + len(block)] = block.min(axis=1)
        rows[t0 : t0 + len(block)] = block.min(axis=2)
    return LineMinima(cols, rows)


def _window_lines(lines: np.ndarray, starts: Sequence[int], window: int, fill: float) -> np.ndarray:
    """``(k, window, L)`` line minima of each window; frames past the movie's end get ``fill``."""
    n = lines.shape[0]
    out = np.full((len(starts), window, lines.shape[1]), fill, np.float32)
    for i, s in enumerate(starts):
        block = lines[s : min(s + window, n)]
        out[i, : len(block)] = block
    return out


def pad_like_frame(
    x: torch.Tensor,
    tile: Tile,
    frame: tuple[int, int],
    minima: LineMinima,
    starts: Sequence[int],
    whiten: tuple[float, float, float],
) -> torch.Tensor:
    """Pad a tile ``(k, 1, T, h, w)`` the way the network pads the whole frame (``pad_mode='minimum'``).

    The network pads time, then rows, then columns at their end to a
    multiple of 8, each with the minimum of the line along that axis
    (:func:`stnn.model.pad_to_multiple`). For a tile at the frame's end the
    row and column minima must be those of the whole frame, so they come
    from ``minima`` (raw pre-processed values, whitened here with
    ``whiten = (mean, std, fill)``, ``fill`` being the value of frames past
    the movie's end).

    Returns
    -------
    torch.Tensor
        ``(k, 1, T', h', w')`` with every axis a multiple of 8 where the
        whole frame is padded; a tile away from the frame's end only gets
        the time padding.
    """
    h, w = frame
    mean, std, fill = whiten
    k, _, t, th, tw = x.shape
    t_pad = (-t) % ALIGN
    if t_pad:
        x = torch.cat([x, x.amin(dim=2, keepdim=True).expand(-1, -1, t_pad, -1, -1)], dim=2)
    pad_rows = (-h) % ALIGN if tile.rows.stop == h else 0
    pad_cols = (-w) % ALIGN if tile.cols.stop == w else 0
    if not (pad_rows or pad_cols):
        return x

    def whitened(lines: np.ndarray) -> torch.Tensor:
        v = (_window_lines(lines, starts, t, fill) - np.float32(mean)) / np.float32(std)
        v = torch.from_numpy(v)
        if t_pad:  # padded frames hold each pixel's minimum over time: their line minima follow
            v = torch.cat([v, v.amin(dim=1, keepdim=True).expand(-1, t_pad, -1)], dim=1)
        return v.to(x.device, x.dtype)

    col_min = whitened(minima.cols)  # (k, T', W): each column's minimum over the frame's rows
    if pad_rows:
        fill_rows = col_min[:, :, tile.cols].unsqueeze(1).unsqueeze(3).expand(-1, -1, -1, pad_rows, -1)
        x = torch.cat([x, fill_rows], dim=3)
    if pad_cols:
        row_min = whitened(minima.rows)[:, :, tile.rows]  # (k, T', th)
        if pad_rows:  # the padded rows' minimum over columns is the frame's minimum
            frame_min = col_min.amin(dim=2, keepdim=True).expand(-1, -1, pad_rows)
            row_min = torch.cat([row_min, frame_min], dim=2)
        fill_cols = row_min.unsqueeze(1).unsqueeze(4).expand(-1, -1, -1, -1, pad_cols)
        x = torch.cat([x, fill_cols], dim=4)
    return x


def run_tiled(
    plan: TilePlan,
    batches: Sequence[Sequence[int]],
    load: Callable[[Sequence[int], slice, slice], torch.Tensor],
    forward: Callable[[torch.Tensor], np.ndarray],
    out: np.ndarray,
    pad: Callable[[torch.Tensor, Tile, Sequence[int]], torch.Tensor] | None = None,
    started: Callable[[], None] | None = None,
) -> np.ndarray:
    """Probability maps of every window, tile by tile, written into ``out`` ``(n_windows, H, W)``.

    Parameters
    ----------
    plan : TilePlan
        From :func:`plan_tiles`.
    batches : sequence of sequences of int
        Window starts, grouped per forward pass.
    load : callable
        ``load(starts, rows, cols)`` -> whitened windows ``(k, 1, T, h, w)`` of one region.
    forward : callable
        ``forward(x)`` -> neuron probabilities ``(k, h', w')`` (NumPy, float32).
    out : np.ndarray
        Destination; each tile writes its core.
    pad : callable, optional
        ``pad(x, tile, starts)`` -> the tile padded as the whole frame would be
        (:func:`pad_like_frame`), for frames whose sides are not multiples of 8.
    started : callable, optional
        Called once the first batch has been read (ends the initialisation time).

    Returns
    -------
    np.ndarray
        ``out``.
    """
    offsets = np.cumsum([0] + [len(b) for b in batches])
    jobs = [(tile, batch, int(o)) for tile in plan.tiles for batch, o in zip(batches, offsets)]
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pending = pool.submit(load, jobs[0][1], jobs[0][0].rows, jobs[0][0].cols)
        for j, (tile, batch, first) in enumerate(jobs):
            x = pending.result()
            if j == 0 and started is not None:
                started()
            # Read the next tile while the network runs on this one.
            if j + 1 < len(jobs):
                nxt_tile, nxt_batch, _ = jobs[j + 1]
                pending = pool.submit(load, nxt_batch, nxt_tile.rows, nxt_tile.cols)
            if pad is not None:
                x = pad(x, tile, batch)
            prob = forward(x)
            r = slice(tile.core_rows.start - tile.rows.start, tile.core_rows.stop - tile.rows.start)
            c = slice(tile.core_cols.start - tile.cols.start, tile.core_cols.stop - tile.cols.start)
            out[first : first + len(batch), tile.core_rows, tile.core_cols] = prob[:, r, c]
            del x, prob
    finally:
        pool.shutdown(wait=True)
    return out
