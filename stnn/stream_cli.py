"""``python -m stnn stream MOVIE``: replay a movie file as a live stream and report latency.

Frames are pushed into a threaded :class:`stnn.stream.StreamSegmenter` at
``--replay-fps`` (default: the recording rate ``--fps``; ``0``: as fast as
possible), so the network runs in the background while frames keep arriving,
as under a microscope. Printed: windows, neurons, per-window latency (median
and 95th percentile, ms from the window's last frame arriving to its masks),
the network's share, and the real-time factor (recording seconds per second
of processing; >= 1 keeps up).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from datasets.errors import InputError

__all__ = ["add_parser", "cmd_stream", "replay"]

logger = logging.getLogger(__name__)


def add_parser(sub: Any, common: argparse.ArgumentParser, positive: Any) -> None:
    """Add the ``stream`` subcommand to ``sub`` (an ``add_subparsers`` object)."""
    p = sub.add_parser(
        "stream",
        parents=[common],
        help="replay a movie as a live stream: online masks, latency and real-time factor",
        description="Replay a movie file (.h5/.hdf5, .tif/.tiff, .npy) frame by frame into the streaming "
        "segmenter (stnn.stream) at --replay-fps and report per-window latency and the real-time factor.",
    )
    p.add_argument("movie", help="movie file")
    p.add_argument("--fps", type=positive(float), required=True, help="frame rate of the recording (Hz)")
    p.add_argument("--um-per-px", type=positive(float), required=True, help="pixel size (um)")
    p.add_argument(
        "--replay-fps",
        type=float,
        default=None,
        help="frames pushed per second (default: --fps, the recording rate; 0: as fast as possible)",
    )
    p.add_argument("--weights", default="synthetic", help="shipped weights name or .pt path (default: synthetic)")
    p.add_argument("--key", default="data", help="HDF5 dataset holding the movie (default: data)")
    p.add_argument("--window", type=int, default=None, help="binned frames per window (default: the weights')")
    p.add_argument("--stride", type=int, default=None, help="binned frames between windows (default: --window)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the weights')")
    p.add_argument("--min-area", type=float, default=None, help="minimum area in px (default: the weights')")
    p.add_argument("--max-frames", type=int, default=None, help="replay only the first N frames")
    p.add_argument("--max-queue", type=int, default=256, help="raw frames the queue holds (default 256)")
    p.add_argument(
        "--policy", choices=("block", "drop"), default="block", help="when the queue is full (default block)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="save the final masks (.npz)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def replay(movie: Any, segmenter: Any, replay_fps: float | None, max_frames: int | None = None, chunk: int = 32):
    """Push the frames of ``movie`` (a :class:`datasets.movies.Movie`) on schedule; returns the StreamResult.

    Frame ``k`` is pushed no earlier than ``k / replay_fps`` seconds after
    the first (``replay_fps`` None or 0: as fast as possible). Reading the
    file happens between pushes, as a camera's readout would.
    """
    n = movie.n_frames if max_frames is None else min(int(max_frames), movie.n_frames)
    t0 = time.perf_counter()
    k = 0
    for start in range(0, n, chunk):
        for frame in movie.read(start, min(start + chunk, n)):
            if replay_fps:
                delay = t0 + k / replay_fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            segmenter.push(frame)
            k += 1
    return segmenter.finish()


def torch_threads() -> int:
    """Torch's CPU thread count (reported beside timings)."""
    import torch

    return torch.get_num_threads()


def cmd_stream(args: argparse.Namespace) -> int:
    """Run ``stnn stream``."""
    from .cli import open_movie
    from .stream import StreamConfig, StreamSegmenter

    if args.replay_fps is not None and args.replay_fps < 0:
        raise InputError(f"--replay-fps must be >= 0, got {args.replay_fps}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    movie = open_movie(args.movie, key=args.key)
    config = StreamConfig(
        window=args.window, stride=args.stride, threaded=True, max_queue=args.max_queue, policy=args.policy
    )
    seg = StreamSegmenter(
        args.weights,
        fps=args.fps,
        um_per_px=args.um_per_px,
        device=args.device,
        threshold=args.threshold,
        min_area=args.min_area,
        config=config,
    )
    replay_fps = args.fps if args.replay_fps is None else args.replay_fps
    try:
        res = replay(movie, seg, replay_fps, args.max_frames)
    finally:
        seg.close()
    st = res.stats
    figures = {
        "movie": str(args.movie),
        "frame": list(movie.frame_shape),
        "device": str(seg.device),
        "torch_threads": torch_threads(),
        "replay_fps": replay_fps or None,
        "window": seg.window,
        "stride": seg.stride,
        "n_masks": res.masks.n,
        **st.as_dict(),
    }
    if args.out:
        figures["masks"] = str(res.masks.save(args.out))
    if args.json:
        print(json.dumps(figures))
        return 0
    pace = f"{replay_fps:g} frames/s" if replay_fps else "as fast as possible"
    print(f"{st.raw_frames} frames ({st.recording_s:.1f} s of recording) replayed {pace} on {seg.device}")
    print(f"{st.windows} windows of {seg.window} binned frames (stride {seg.stride}): {res.masks.n} neurons")
    print(
        f"latency per window: median {figures['latency_median_ms']:.0f} ms, 95th percentile "
        f"{figures['latency_p95_ms']:.0f} ms (network median {figures['network_median_ms']:.0f} ms)"
    )
    print(
        f"real-time factor {st.real_time_factor:.2f} (recording s per processing s; busy {st.busy_s:.1f} s, "
        f"wall {st.wall_s:.1f} s)"
    )
    if st.dropped_frames or st.blocked_pushes or st.bad_frames:
        print(
            f"queue: {st.dropped_frames} frames dropped, {st.blocked_pushes} pushes blocked ({st.blocked_s:.1f} s); "
            f"{st.bad_frames} NaN/inf frames repeated"
        )
    if st.short_stream:
        print("note: the stream was shorter than one window (padded, as batch)")
    if args.out:
        print(f"masks -> {figures['masks']}")
    return 0
