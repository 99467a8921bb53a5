"""Streaming STNeuroNet (``stnn.stream``) as a method: ``stnn-online``.

The recording's frames are pushed one by one into
:class:`stnn.stream.StreamSegmenter` (in the worker's own thread, so no frame
is dropped and the timings are the processing alone); the masks after the
whole stream are the result, and the masks after every window are returned as
:attr:`~methods.base.Segmentation.snapshots` ``(seconds into the recording,
Masks)`` for F1 against time (``bench.online``).

It uses the weights its ``weights`` parameter names (the shipped ones by
default) and does not train in a run: training the same network again under
another name would double the run's longest job. Stream the weights a run
trained for ``stnn`` with ``weights=PATH``.

Timings: ``init_s`` loading the weights and setting up the stream;
``process_s`` the stream's processing (binning, filtering, network, fusion);
``io_s`` reading the movie file.
"""

from __future__ import annotations

import time
from typing import Any

from datasets.records import Recording
from methods.base import Segmentation, _source_hash
from methods.params import Param
from methods.stnn import STNeuroNetMethod

__all__ = ["STNeuroNetOnline"]

#: Raw frames read from the movie file at once.
READ_FRAMES = 64


class STNeuroNetOnline(STNeuroNetMethod):
    """STNeuroNet run on the recording as a live stream.

    Parameters of ``segment``: ``weights``, ``threshold``, ``min_area_um2``
    and ``device`` as ``stnn``; ``stride`` (binned frames between windows;
    None: the window length, non-overlapping as the paper).
    """

    name = "stnn-online"
    description = "STNeuroNet streaming: masks updated after every 120-frame window (stnn.stream)"
    staged = False
    learns = False
    #: Named in --methods only: in 'all' it would run the network of the default job a second time.
    in_default_run = False
    train_schedules: dict = {}
    parameters = {
        "weights": Param(str, doc="shipped weights name or .pt path"),
        "threshold": Param(float, low=0.0, high=1.0, optional=True, doc="probability threshold"),
        "min_area_um2": Param(float, low=0.0, optional=True, doc="minimum mask area in um^2"),
        "stride": Param(int, low=1, optional=True, doc="binned frames between window starts (default: the window)"),
        "device": Param(str, choices=("cpu", "cuda"), doc="torch device"),
    }

    def default_params(self, recording: Recording) -> dict[str, Any]:
        return {"weights": self.weights, "threshold": None, "min_area_um2": None, "stride": None, "device": "cpu"}

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        p = self.check_params(recording, params)
        t0 = time.perf_counter()
        import stnn
        from stnn.stream import StreamConfig, StreamSegmenter

        model, meta = stnn.pretrained(p["weights"], device=p["device"], return_metadata=True)
        min_area = p["min_area_um2"]
        seg = StreamSegmenter(
            model,
            fps=recording.fps,
            um_per_px=recording.um_per_px,
            device=p["device"],
            threshold=p["threshold"],
            min_area=None if min_area is None else min_area / recording.um_per_px**2,
            metadata=meta,
            config=StreamConfig(stride=p["stride"], keep_snapshots=True),
        )
        init_s = time.perf_counter() - t0
        io_s = 0.0
        movie = recording.movie
        for start in range(0, movie.n_frames, READ_FRAMES):
            t1 = time.perf_counter()
            block = movie.read(start, start + READ_FRAMES)
            io_s += time.perf_counter() - t1
            seg.push_many(block)
        res = seg.finish()
        return Segmentation(
            masks=res.masks,
            params=p,
            init_s=init_s,
            process_s=res.stats.busy_s,
            io_s=io_s,
            n_frames=recording.n_frames,
            versions={"stnn-weights": str(p["weights"]), "weights_iterations": getattr(meta, "iterations", None)},
            snapshots=list(res.snapshots),
        )

    def code_version(self) -> str:
        return _source_hash("stnn", "methods.stnn_online")
