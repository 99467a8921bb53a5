"""Streaming STNeuroNet (``stnn.stream``) as a method: ``stnn-online``.

The recording's frames are pushed one by one into
:class:`stnn.stream.StreamSegmenter` (in the caller's thread, so no frame is
dropped and timings are the processing alone); the masks after the whole
stream are the result, and the masks after every window are returned as
:attr:`~methods.base.Segmentation.snapshots` ``(seconds into the recording,
Masks)`` for F1 against time (``bench.online``).

Timings: ``init_s`` loading the weights and setting up the stream;
``process_s`` the stream's processing (binning, filtering, network, fusion);
``io_s`` reading the movie file.
"""

from __future__ import annotations

import time
from typing import Any

from datasets.errors import InputError
from datasets.records import Recording
from methods.base import Segmentation
from methods.params import Param, validate
from methods.stnn import STNeuroNetMethod

__all__ = ["STNeuroNetOnline"]


class STNeuroNetOnline(STNeuroNetMethod):
    """STNeuroNet run on the recording as a live stream.

    Parameters of ``segment``: ``weights``, ``threshold``, ``min_area_um2``
    and ``device`` as ``stnn``; ``stride`` (binned frames between windows;
    None: the window length, non-overlapping as the paper).
    """

    name = "stnn-online"
    description = "STNeuroNet streaming: masks updated after every 120-frame window (stnn.stream)"

    SPEC = {
        "weights": Param(str, doc="shipped weights name or .pt path"),
        "threshold": Param(float, low=0.0, high=1.0, doc="probability threshold"),
        "min_area_um2": Param(float, low=0.0, doc="minimum mask area in um^2"),
        "stride": Param(int, low=1, doc="binned frames between window starts (default: the window)"),
        "device": Param(str, choices=("cpu", "cuda"), doc="torch device"),
    }
    OPTIONAL = ("threshold", "min_area_um2", "stride")

    def default_params(self, recording: Recording) -> dict[str, Any]:
        return {"weights": self.weights, "threshold": None, "min_area_um2": None, "stride": None, "device": "cpu"}

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        merged = {**self.default_params(recording), **params}
        given = {k: v for k, v in merged.items() if not (k in self.OPTIONAL and v is None)}
        params = {**dict.fromkeys(self.OPTIONAL), **validate(self.name, self.SPEC, {}, given)}
        if recording.movie is None:
            raise InputError(f"method '{self.name}' needs the movie of recording {recording.name}")
        t0 = time.perf_counter()
        import stnn
        from stnn.stream import StreamConfig, StreamSegmenter

        model, meta = stnn.pretrained(params["weights"], device=params["device"], return_metadata=True)
        min_area = params["min_area_um2"]
        seg = StreamSegmenter(
            model,
            fps=recording.fps,
            um_per_px=recording.um_per_px,
            device=params["device"],
            threshold=params["threshold"],
            min_area=None if min_area is None else min_area / recording.um_per_px**2,
            metadata=meta,
            config=StreamConfig(stride=params["stride"], keep_snapshots=True),
        )
        init_s = time.perf_counter() - t0
        io_s = 0.0
        movie = recording.movie
        for start in range(0, movie.n_frames, 64):
            t1 = time.perf_counter()
            block = movie.read(start, start + 64)
            io_s += time.perf_counter() - t1
            seg.push_many(block)
        res = seg.finish()
        st = res.stats
        return Segmentation(
            masks=res.masks,
            params=params,
            init_s=init_s,
            process_s=st.busy_s,
            io_s=io_s,
            n_frames=recording.n_frames,
            versions={"stnn-weights": str(params["weights"]), "weights_iterations": getattr(meta, "iterations", None)},
            snapshots=list(res.snapshots),
        )
