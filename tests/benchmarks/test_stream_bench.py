"""Streaming STNeuroNet speed: real-time factor and window latency of a 30 Hz stream.

Run with ``pytest tests/benchmarks/test_stream_bench.py -m benchmark --benchmark-enable -s``; the figures
are printed and stored in the benchmark's ``extra_info``. ``STNN_STREAM_WINDOWS`` sets the windows per size
(default 2), ``STNN_STREAM_THREADS`` torch's CPU threads (default: torch's). Frames are pushed as fast as
possible in the caller's thread, so the real-time factor is recording seconds per processing second (>= 1:
a live 30 Hz stream keeps up) and the latency of a window is its last frame's processing plus the network
and fusion (what a stream that keeps up sees).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import stnn
from stnn.stream import StreamConfig, StreamSegmenter

FPS = 30.0
WINDOWS = int(os.environ.get("STNN_STREAM_WINDOWS", "2"))
THREADS = int(os.environ.get("STNN_STREAM_THREADS", "0")) or None


def _frames(n, size, seed=0):
    """Raw uint16 frames with Poisson-like noise (made in blocks, so the input costs little memory)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, 100):
        yield from rng.poisson(200, size=(min(100, n - start), size, size)).astype(np.uint16)


def _run(size, device):
    if THREADS:
        torch.set_num_threads(THREADS)
    model, meta = stnn.pretrained("synthetic", device=device, return_metadata=True)
    seg = StreamSegmenter(model, fps=FPS, um_per_px=0.78, device=device, metadata=meta, config=StreamConfig())
    n = WINDOWS * seg.window * seg.pre.bin_factor
    seg.push_many(_frames(n, size))
    res = seg.finish()
    st = res.stats
    fig = {
        "size": size,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "windows": st.windows,
        "recording_s": st.recording_s,
        "busy_s": round(st.busy_s, 2),
        "real_time_factor": round(st.real_time_factor, 3),
        "latency_median_ms": round(st.latency_ms(50)),
        "latency_p95_ms": round(st.latency_ms(95)),
        "network_median_ms": round(st.as_dict()["network_median_ms"]),
    }
    print(json.dumps(fig))
    return fig


def _devices():
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.benchmark
@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("size", [256, 512])
def test_stream_real_time_factor(benchmark, size, device):
    fig = benchmark.pedantic(_run, args=(size, device), rounds=1, iterations=1)
    benchmark.extra_info.update(fig)
    assert fig["windows"] == WINDOWS
    assert fig["real_time_factor"] > 0 and fig["latency_p95_ms"] >= fig["latency_median_ms"] > 0
