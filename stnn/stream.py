"""Streaming STNeuroNet: neuron masks while the movie is still being recorded.

:class:`StreamSegmenter` takes raw frames one at a time (``push``,
``push_many``; :func:`segment_stream` iterates over any frame source) and does
the batch pipeline of :func:`stnn.infer.segment` incrementally:

1. **binning**: ``bin_factor`` raw frames are summed into one frame at the
   network rate (30 Hz -> 6 Hz: 5), as :func:`stnn.preprocess.bin_frames`;
   a trailing incomplete group is dropped at the end, as in batch;
2. **homomorphic filter** on each binned frame as soon as it is complete
   (:func:`stnn.preprocess.homomorphic_filter`, per frame, so identical to
   batch), on the given device; the filtered frames go into a ring buffer of
   one window (``window`` binned frames: 120 by default, the paper's);
3. **normalisation with a running estimate**: batch divides by the movie's
   SD and then whitens with the movie's mean and SD; whitening alone gives
   the same network input (it is invariant to the scale). Here the mean and SD
   are a running estimate over every filtered binned frame so far
   (:class:`stnn.preprocess.RunningMoments`). **Warm-up**: no window runs
   before ``window`` binned frames (20 s at 6 Hz) have arrived, so the first
   estimate already rests on ``window * H * W`` pixels; every later window
   uses all frames up to its own end, and the last window uses the whole
   stream's statistics, as batch does;
4. **network** on each completed window: windows start every ``stride``
   binned frames (default ``window``: non-overlapping, as the paper; a smaller
   stride gives sliding windows and more frequent updates; each map is then
   fused as another window). At :meth:`StreamSegmenter.finish` a last window
   ending at the last frame runs when the stream's end is not covered, as in
   batch (:func:`stnn.infer.window_starts`);
5. **incremental fusion** (:class:`stnn.fusion.IncrementalFusion`): each map
   is post-processed (:func:`stnn.postprocess.candidate_regions`, area
   filter) and fused with the neurons so far; the changes are emitted as
   :class:`~stnn.fusion.Update` (new, grown, shrunk, merged, removed) with
   the seconds into the recording and the wall time.

Memory does not grow with the stream: one ring buffer of ``window`` frames,
a bounded frame queue, fusion groups bounded by the field of view, and
bounded histories of per-window records. ``keep_snapshots=True`` (off by
default) keeps the neurons after every window, which does grow (one mask set
per window).

Bad input
---------
* a frame whose shape or dtype differs from the first frame's: ``InputError``
  (raised by ``push``; the frames before it are kept, ``finish`` still works);
* NaN or infinite pixels (``on_bad_frame='repeat'``, default): the frame is
  replaced by the previous good frame, so the time base stays right, and
  counted in ``stats.bad_frames``; leading bad frames take the first good
  frame. ``on_bad_frame='error'`` raises ``InputError`` instead;
* values <= -1 (``log(I + 1)`` undefined): ``InputError``, as batch;
* a stream shorter than one window: at ``finish`` the binned frames are
  padded with their minimum (as batch), a warning is logged and
  ``result.stats.short_stream`` is true; fewer frames than one bin: empty
  masks, ``short_stream`` true;
* frames arriving faster than processed (``threaded=True``): the frames wait
  in a queue of at most ``max_queue`` frames. ``policy='block'`` (default):
  ``push`` waits for room (back-pressure on the source; counted in
  ``stats.blocked_pushes`` and ``stats.blocked_s``). ``policy='drop'``:
  ``push`` never waits; a frame that finds the queue full is dropped (its
  pixels are never stored), replaced by a repeat of the previous frame so
  that times stay right, and counted in ``stats.dropped_frames``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from datasets.errors import InputError
from datasets.masks import Masks

from .fuse import inference_copy
from .fusion import IncrementalFusion, Update
from .infer import MIN_FRAME_PX, _resolve_device, _resolve_model, default_preprocess_config, postprocess_for
from .model import STNeuroNet
from .postprocess import PostprocessConfig, candidate_regions
from .precision import resolve_precision
from .preprocess import PreprocessConfig, RunningMoments, crop_slices, gaussian_kernel1d, reflect_indices

__all__ = [
    "FrameFilter",
    "StreamConfig",
    "StreamSegmenter",
    "StreamStats",
    "StreamResult",
    "WindowRecord",
    "Update",
    "segment_stream",
]

logger = logging.getLogger(__name__)


class FrameFilter:
    """The homomorphic filter of :func:`stnn.preprocess.homomorphic_filter` for one frame at a time.

    The separable Gaussian blur with reflected edges is a linear map along
    each axis, so it is precomputed as two matrices (the reflection folded
    in) and applied as ``R @ X @ C.T``: the same result to float rounding,
    but about 30x faster than the chunked convolution for a single 256x256
    frame on a CPU (0.5 ms against 17 ms), which is what keeps per-frame
    pre-processing cheap in a stream. Memory: ``(H^2 + W^2) * 4`` bytes.
    """

    def __init__(self, shape: tuple[int, int], sigma: float, truncate: float, device: torch.device) -> None:
        self.rows = self._matrix(shape[0], sigma, truncate).to(device)
        self.cols_t = self._matrix(shape[1], sigma, truncate).T.contiguous().to(device)

    @staticmethod
    def _matrix(n: int, sigma: float, truncate: float) -> torch.Tensor:
        kernel = gaussian_kernel1d(sigma, truncate)
        radius = (kernel.size - 1) // 2
        idx = reflect_indices(n, radius)
        m = np.zeros((n, n), np.float64)
        for i in range(n):
            np.add.at(m[i], idx[i : i + 2 * radius + 1], kernel)
        return torch.from_numpy(m.astype(np.float32))

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """``exp(log(I + 1) - blur(log(I + 1)))`` of one ``(H, W)`` frame."""
        log_img = torch.log1p(frame)
        return torch.exp(log_img - self.rows @ log_img @ self.cols_t)


@dataclass(frozen=True)
class StreamConfig:
    """How the stream is cut and buffered.

    Attributes
    ----------
    window : int or None
        Binned frames per network window (default: the weights' training
        window, else 120).
    stride : int or None
        Binned frames between window starts (default: ``window``).
    threaded : bool
        Process in a background thread behind a bounded queue (``push``
        returns at once); False: ``push`` processes the frame itself.
    max_queue : int
        Raw frames the queue holds (threaded only).
    policy : {'block', 'drop'}
        What ``push`` does when the queue is full (see the module docstring).
    on_bad_frame : {'repeat', 'error'}
        NaN or infinite frames: repeat the previous good frame, or raise.
    max_members : int
        Member masks kept per fusion group (see :mod:`stnn.fusion`).
    keep_snapshots : bool
        Keep ``(t_s, Masks)`` after every window (grows with the stream).
    history : int
        Per-window records kept in ``stats.records`` (latency percentiles are
        over these; older windows only count in the totals).
    frame_threads : int or None
        Torch threads for the per-frame work on a CPU (default 1: one small
        frame gains nothing from a thread pool, and on a loaded machine the
        pool's synchronisation made the filter 100x slower; the network keeps
        torch's setting). None: never change torch's thread count.
    """

    window: int | None = None
    stride: int | None = None
    threaded: bool = False
    max_queue: int = 256
    policy: str = "block"
    on_bad_frame: str = "repeat"
    max_members: int = 32
    keep_snapshots: bool = False
    history: int = 1000
    frame_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 8:
            raise InputError(f"window must be >= 8 binned frames, got {self.window}")
        if self.stride is not None and self.stride < 1:
            raise InputError(f"stride must be >= 1, got {self.stride}")
        if min(self.max_queue, self.max_members, self.history) < 1:
            raise InputError(
                f"max_queue, max_members and history must be >= 1, got {self.max_queue}, {self.max_members}, "
                f"{self.history}"
            )
        if self.policy not in ("block", "drop"):
            raise InputError(f"policy must be 'block' or 'drop', got {self.policy!r}")
        if self.on_bad_frame not in ("repeat", "error"):
            raise InputError(f"on_bad_frame must be 'repeat' or 'error', got {self.on_bad_frame!r}")


@dataclass
class WindowRecord:
    """One network window.

    ``latency_ms`` runs from the arrival (``push``) of the window's last raw
    frame to its masks being fused; ``network_ms`` is the forward pass alone.
    """

    index: int
    start: int
    stop: int
    t_s: float
    latency_ms: float
    network_ms: float
    n_neurons: int
    mean: float
    sd: float


@dataclass
class StreamStats:
    """Counters of a stream (all bounded in size)."""

    raw_frames: int = 0
    binned_frames: int = 0
    windows: int = 0
    bad_frames: int = 0
    dropped_frames: int = 0
    blocked_pushes: int = 0
    blocked_s: float = 0.0
    leftover_raw: int = 0
    short_stream: bool = False
    forgotten_members: int = 0
    busy_s: float = 0.0
    wall_s: float = 0.0
    recording_s: float = 0.0
    init_s: float = 0.0
    max_queued: int = 0
    records: deque = field(default_factory=deque)

    @property
    def real_time_factor(self) -> float:
        """Recording seconds per second of processing (> 1: keeps up)."""
        return self.recording_s / self.busy_s if self.busy_s > 0 else float("nan")

    def latency_ms(self, q: float = 50.0) -> float:
        """Percentile ``q`` of the window latencies (ms), NaN without windows."""
        lat = [r.latency_ms for r in self.records]
        return float(np.percentile(lat, q)) if lat else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Counters and the latency summary (records left out)."""
        d = {k: v for k, v in asdict(self).items() if k != "records"}
        net = [r.network_ms for r in self.records]
        d.update(
            real_time_factor=self.real_time_factor,
            latency_median_ms=self.latency_ms(50),
            latency_p95_ms=self.latency_ms(95),
            network_median_ms=float(np.median(net)) if net else float("nan"),
        )
        return d


@dataclass
class StreamResult:
    """What :meth:`StreamSegmenter.finish` returns."""

    masks: Masks
    updates: list[Update]
    stats: StreamStats
    snapshots: list[tuple[float, Masks]]


class StreamSegmenter:
    """Segment active neurons from frames as they arrive (see the module docstring).

    Parameters
    ----------
    model : STNeuroNet, str or Path, optional
        A network, shipped weights name or ``.pt`` path (default
        ``"synthetic"``); weights' metadata supply the tuned threshold,
        minimum area, window length and binned rate.
    fps, um_per_px : float
        Raw frame rate and pixel size of the stream.
    device : str or torch.device, optional
        Default: CUDA if available, else CPU.
    threshold, min_area : float, optional
        Post-processing (default: the weights' values).
    config : StreamConfig, optional
    preprocess_config, postprocess_config : optional
        As :func:`stnn.infer.segment`.
    metadata : WeightsMetadata, optional
        For an already loaded ``model``.
    amp : bool, optional
        fp16 autocast on CUDA (default on for CUDA).
    on_update : callable, optional
        Called with each :class:`Update` as it is made (from the worker
        thread when threaded).
    """

    def __init__(
        self,
        model: Any = None,
        *,
        fps: float,
        um_per_px: float,
        device: torch.device | str | None = None,
        threshold: float | None = None,
        min_area: float | None = None,
        config: StreamConfig | None = None,
        preprocess_config: PreprocessConfig | None = None,
        postprocess_config: PostprocessConfig | None = None,
        metadata: Any = None,
        amp: bool | None = None,
        on_update: Callable[[Update], None] | None = None,
        precision: str = "auto",
    ) -> None:
        if not (fps > 0 and um_per_px > 0):
            raise InputError(f"fps and um_per_px must be > 0, got {fps}, {um_per_px}")
        t0 = time.perf_counter()
        self.config = config or StreamConfig()
        self.device = _resolve_device(device)
        self.model, meta = _resolve_model(model, self.device, metadata)
        self.model.to(self.device).eval()
        # The same fused, precision-chosen network as batch inference, so stream and batch agree
        # (another module, e.g. a wrapper, runs as given).
        dtype = torch.float32 if amp is False else resolve_precision(precision, self.device)
        self.net = inference_copy(self.model, dtype, self.device) if isinstance(self.model, STNeuroNet) else self.model
        self.fps = float(fps)
        self.amp = amp
        self.on_update = on_update
        extra = (meta.extra or {}) if meta is not None else {}
        if preprocess_config is None:
            target = (meta.preprocess or {}).get("target_fps") if meta is not None else None
            preprocess_config = default_preprocess_config(
                fps, um_per_px, **({"target_fps": float(target)} if target else {})
            )
        self.pre = preprocess_config
        self.window = int(self.config.window or extra.get("frames") or 120)
        self.stride = int(self.config.stride or self.window)
        self.post = postprocess_for(meta, um_per_px, threshold, min_area, postprocess_config)

        self.stats = StreamStats(records=deque(maxlen=self.config.history))
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._fusion: IncrementalFusion | None = None
        self._moments = RunningMoments()
        self._minimum = math.inf
        self._ring: torch.Tensor | None = None
        self._filter: FrameFilter | None = None
        self._acc: np.ndarray | None = None
        self._acc_n = 0
        self._last_good: np.ndarray | None = None
        self._pending_bad = 0
        self._last_window_stop = 0
        self._snapshots: list[tuple[float, Masks]] = []
        self._updates: list[Update] = []
        self._lock = threading.Lock()
        self._finished: StreamResult | None = None
        self._started: float | None = None
        self._error: BaseException | None = None
        self._queue: deque = deque()
        self._queued_frames = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        if self.config.threaded:
            self._thread = threading.Thread(target=self._worker, name="stnn-stream", daemon=True)
            self._thread.start()
        self.stats.init_s = time.perf_counter() - t0

    # -- public API -----------------------------------------------------------------------

    @property
    def masks(self) -> Masks:
        """The neurons found so far (empty before the first window)."""
        return self._fusion.masks if self._fusion is not None else Masks.empty(self._shape or (0, 0))

    def push(self, frame: np.ndarray) -> list[Update]:
        """Add one raw frame; returns the updates made since the last call.

        Raises
        ------
        InputError
            A frame that is not 2-D, or whose shape or dtype differs from the
            first frame's; NaN/inf with ``on_bad_frame='error'``; values <= -1;
            pushing after :meth:`finish`.
        """
        arrival = time.perf_counter()
        if self._finished is not None:
            raise InputError("the stream is finished; start a new StreamSegmenter")
        self._raise_worker_error()
        if self._started is None:
            self._started = arrival
        arr = self._check(frame)
        if self._thread is None:
            t0 = time.perf_counter()
            self._process(arr, arrival)
            self.stats.busy_s += time.perf_counter() - t0
        else:
            self._enqueue(np.array(arr, copy=True), arrival)
            self._raise_worker_error()
        return self._drain()

    def push_many(self, frames: Iterable[np.ndarray]) -> list[Update]:
        """Push every frame of a ``(T, H, W)`` array or an iterable of frames; returns the updates."""
        out: list[Update] = []
        for f in frames:
            out.extend(self.push(f))
        return out

    def poll(self) -> list[Update]:
        """Updates made since the last call (threaded streams make them in the background)."""
        self._raise_worker_error()
        return self._drain()

    def finish(self) -> StreamResult:
        """End the stream: process what is queued, run the last window, return the masks and counters."""
        if self._finished is not None:
            return self._finished
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
            self._raise_worker_error()
        t0 = time.perf_counter()
        self._flush()
        self.stats.busy_s += time.perf_counter() - t0
        st = self.stats
        st.forgotten_members = self._fusion.forgotten if self._fusion is not None else 0
        st.recording_s = st.raw_frames / self.fps
        st.wall_s = time.perf_counter() - self._started if self._started is not None else 0.0
        self._finished = StreamResult(self.masks, self._drain(), st, self._snapshots)
        return self._finished

    def close(self) -> None:
        """Stop a background thread without finishing (frames still queued are discarded)."""
        if self._thread is not None and self._thread.is_alive():
            with self._cond:
                self._closing = True
                self._queue.clear()
                self._queued_frames = 0
                self._cond.notify_all()
            self._thread.join()

    def __enter__(self) -> StreamSegmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- input checks -----------------------------------------------------------------------

    def _check(self, frame: Any) -> np.ndarray:
        arr = np.asarray(frame)
        if arr.ndim != 2:
            raise InputError(f"a frame must be 2-D (H, W), got shape {arr.shape}", hint="push frames one at a time")
        if arr.dtype.kind not in "biuf":
            raise InputError(f"frames must hold real numbers, got dtype {arr.dtype}")
        if self._shape is None:
            rows, cols = crop_slices(arr.shape, self.pre.crop)
            if min(rows.stop - rows.start, cols.stop - cols.start) < MIN_FRAME_PX:
                raise InputError(f"frames of {arr.shape} px (after the crop) are smaller than {MIN_FRAME_PX} px")
            self._shape, self._dtype = arr.shape, arr.dtype
        elif arr.shape != self._shape:
            raise InputError(
                f"frame {self.stats.raw_frames + self._queued_frames} is {arr.shape[0]}x{arr.shape[1]} px, "
                f"the stream's frames are {self._shape[0]}x{self._shape[1]}",
                hint="a stream must keep one frame size; start a new StreamSegmenter for another",
            )
        elif arr.dtype != self._dtype:
            raise InputError(
                f"frame {self.stats.raw_frames + self._queued_frames} has dtype {arr.dtype}, "
                f"the stream's frames are {self._dtype}",
                hint="convert frames to one dtype before pushing (a changed dtype usually means another source)",
            )
        return arr

    # -- per-frame processing ---------------------------------------------------------------

    def _process(self, arr: np.ndarray | None, arrival: float, repeats: int = 1) -> None:
        """Bin one raw frame (``None``: ``repeats`` dropped frames, replaced by the previous one)."""
        if arr is None:
            self.stats.dropped_frames += repeats
            if self._last_good is None:
                self._pending_bad += repeats
                return
            for _ in range(repeats):
                self._add_raw(self._last_good, arrival)
            return
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            if self.config.on_bad_frame == "error":
                raise InputError(f"frame {self.stats.raw_frames + self._pending_bad} has NaN or infinite values")
            self.stats.bad_frames += 1
            logger.warning("frame %d has NaN or infinite values: the previous frame is used", self.stats.raw_frames)
            if self._last_good is None:
                self._pending_bad += 1
            else:
                self._add_raw(self._last_good, arrival)
            return
        rows, cols = crop_slices(arr.shape, self.pre.crop)
        cropped = np.asarray(arr[rows, cols], np.float32)
        if self.pre.homomorphic and arr.dtype.kind in "fi" and float(cropped.min()) <= -1:
            raise InputError(
                f"frame {self.stats.raw_frames} has values <= -1, where log(I + 1) of the homomorphic filter "
                "is undefined",
                hint="pass raw fluorescence (photon counts), not a baseline-subtracted movie",
            )
        self._last_good = cropped
        for _ in range(self._pending_bad + 1):
            self._add_raw(cropped, arrival)
        self._pending_bad = 0

    def _add_raw(self, cropped: np.ndarray, arrival: float) -> None:
        self.stats.raw_frames += 1
        if self._acc is None:
            self._acc = np.zeros_like(cropped)
        self._acc += cropped
        self._acc_n += 1
        if self._acc_n == self.pre.bin_factor:
            self._add_binned(self._acc, arrival)
            self._acc = None
            self._acc_n = 0

    def _add_binned(self, binned: np.ndarray, arrival: float) -> None:
        frame = torch.from_numpy(binned).to(self.device)
        if self._ring is None:
            if self.pre.homomorphic:
                self._filter = FrameFilter(frame.shape, self.pre.sigma_px, self.pre.truncate, self.device)
            self._ring = torch.empty((self.window, *frame.shape), dtype=torch.float32, device=self.device)
            self._fusion = IncrementalFusion(
                self._shape,
                self.post.merge_distance_px,
                self.post.encompass_ratio,
                self.post.min_area,
                self.config.max_members,
            )
        with self._frame_threads():
            if self.pre.homomorphic:
                frame = self._filter(frame)
            n = self.stats.binned_frames
            self._ring[n % self.window] = frame
            self._moments.update(frame)
            self._minimum = min(self._minimum, float(frame.min()))
            self.stats.binned_frames = n + 1
        n += 1
        if n >= self.window and (n - self.window) % self.stride == 0:
            self._run_window(n, arrival)

    @contextmanager
    def _frame_threads(self) -> Iterator[None]:
        n = self.config.frame_threads
        if n is None or self.device.type != "cpu":
            yield
            return
        prev = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(prev)

    # -- windows ------------------------------------------------------------------------------

    def _window_input(self, stop: int) -> torch.Tensor:
        """The whitened window of binned frames ``[stop - window, stop)`` (padded when short)."""
        ring = self._ring
        if stop >= self.window:
            order = torch.arange(stop - self.window, stop, device=self.device) % self.window
            x = ring.index_select(0, order)
        else:
            x = torch.full_like(ring, self._minimum)
            x[:stop] = ring[:stop]
        sd = self._moments.std(ddof=0)
        if not (math.isfinite(sd) and sd > 0):
            raise InputError("the stream has zero variance so far (constant frames?), so it cannot be normalised")
        return ((x - self._moments.mean) / max(sd, 1e-5))[None, None]

    def _run_window(self, stop: int, arrival: float) -> None:
        index = self.stats.windows
        x = self._window_input(stop)
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self.net(x)
        prob = torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()
        network_ms = (time.perf_counter() - t0) * 1e3
        regions = Masks.from_label_image(self._crop_back(candidate_regions(prob, self.post)))
        kept = regions.subset(np.flatnonzero(regions.areas > self.post.min_area))
        # Seconds into the recording at the end of the window's last raw frame.
        t_s = stop * self.pre.bin_factor / self.fps
        new = self._fusion.add_window(kept, index, t_s, time.time())
        done = time.perf_counter()
        self.stats.windows += 1
        self.stats.records.append(
            WindowRecord(
                index,
                max(stop - self.window, 0),
                stop,
                t_s,
                (done - arrival) * 1e3,
                network_ms,
                self._fusion.masks.n,
                self._moments.mean,
                self._moments.std(ddof=0),
            )
        )
        self._last_window_stop = stop
        if self.config.keep_snapshots:
            self._snapshots.append((t_s, self._fusion.masks))
        with self._lock:
            self._updates.extend(new)
        if self.on_update is not None:
            for u in new:
                self.on_update(u)

    def _crop_back(self, labels: np.ndarray) -> np.ndarray:
        """A label image of the cropped frame placed back into the full frame."""
        rows, cols = crop_slices(self._shape, self.pre.crop)
        if labels.shape == self._shape:
            return labels
        full = np.zeros(self._shape, labels.dtype)
        full[rows, cols] = labels
        return full

    def _flush(self) -> None:
        """The end of the stream: the leftover raw frames and the last window."""
        st = self.stats
        st.leftover_raw = self._acc_n
        if self._acc_n:
            logger.info("%d raw frames after the last complete bin are dropped (as batch)", self._acc_n)
        if self._pending_bad and self._last_good is None:
            logger.warning("the stream ended with %d unusable frames and no good one", self._pending_bad)
        n = st.binned_frames
        if n == 0:
            st.short_stream = True
            logger.warning(
                "the stream ended after %d raw frames, fewer than one bin of %d: no masks",
                st.raw_frames,
                self.pre.bin_factor,
            )
            return
        if n < self.window:
            st.short_stream = True
            logger.warning(
                "the stream ended after %d binned frames, fewer than one %d-frame window: the window was padded "
                "with the minimum (the paper's network always saw full windows)",
                n,
                self.window,
            )
            self._run_window(n, time.perf_counter())
        elif self._last_window_stop < n:
            self._run_window(n, time.perf_counter())

    # -- background thread ----------------------------------------------------------------------

    def _enqueue(self, arr: np.ndarray, arrival: float) -> None:
        with self._cond:
            if self._queued_frames >= self.config.max_queue:
                if self.config.policy == "drop":
                    # Keep only a count: a dropped frame takes no memory.
                    if self._queue and self._queue[-1][0] is None:
                        _, a, k = self._queue.pop()
                        self._queue.append((None, arrival, k + 1))
                    else:
                        self._queue.append((None, arrival, 1))
                    self._cond.notify_all()
                    return
                self.stats.blocked_pushes += 1
                t0 = time.perf_counter()
                while self._queued_frames >= self.config.max_queue and self._error is None:
                    self._cond.wait(0.1)
                self.stats.blocked_s += time.perf_counter() - t0
                if self._error is not None:
                    return
            self._queue.append((arr, arrival, 1))
            self._queued_frames += 1
            self.stats.max_queued = max(self.stats.max_queued, self._queued_frames)
            self._cond.notify_all()

    def _worker(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    arr, arrival, k = self._queue.popleft()
                    if arr is not None:
                        self._queued_frames -= 1
                    self._cond.notify_all()
                t0 = time.perf_counter()
                self._process(arr, arrival, k)
                self.stats.busy_s += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _raise_worker_error(self) -> None:
        # Sticky: the worker has stopped, so every later call fails the same way.
        if self._error is not None:
            raise self._error

    def _drain(self) -> list[Update]:
        with self._lock:
            out, self._updates = self._updates, []
        return out


def segment_stream(frames: Iterable[np.ndarray], segmenter: StreamSegmenter) -> Iterator[Update]:
    """Push every frame of ``frames`` and yield the updates as they are made, the last window's included.

    The final :class:`StreamResult` is ``segmenter.finish()`` (cached) after the loop.
    """
    for frame in frames:
        yield from segmenter.push(frame)
    yield from segmenter.finish().updates
