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
from datasets.registry import data_root
from stnn.stream import StreamConfig, StreamSegmenter

FPS = 30.0
WINDOWS = int(os.environ.get("STNN_STREAM_WINDOWS", "2"))
# The user's data root, read at import (the autouse fixture later points BENCH_DATA at a temporary folder).
DATA_ROOT = os.environ.get("STNN_BENCH_DATA") or str(data_root())
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


@pytest.mark.benchmark
def test_stream_agrees_with_batch_on_the_synthetic_test_split():
    """Final stream masks against batch ``stnn.infer.segment`` on each ``synthetic`` test recording (README figures).

    Needs the ``synthetic`` data set under ``STNN_BENCH_DATA`` (default: the data root); about 5 min per
    recording on 2 CPU cores.
    """
    from bench.metrics import match
    from datasets import registry
    from stnn.infer import segment

    try:
        data = registry.get("synthetic", DATA_ROOT)
    except Exception as exc:  # noqa: BLE001 - absent data: skip
        pytest.skip(f"synthetic data set not available: {exc}")
    if not all(r.movie is not None for r in data.split("test")):
        pytest.skip("synthetic movies are not on disk")
    model, meta = stnn.pretrained("synthetic", device="cpu", return_metadata=True)
    for rec in data.split("test"):
        batch = segment(rec, model, device="cpu", metadata=meta)
        seg = StreamSegmenter(model, fps=rec.fps, um_per_px=rec.um_per_px, device="cpu", metadata=meta)
        for block in rec.movie.chunks(64):
            seg.push_many(block)
        res = seg.finish()
        first, last = res.stats.records[0], res.stats.records[-1]
        gt = rec.ground_truth(data.default_grader)
        fig = {
            "recording": rec.name,
            "f1_stream_vs_batch": round(match(batch.masks, res.masks).f1, 4),
            "n_batch": batch.masks.n,
            "n_stream": res.masks.n,
            "f1_gt_batch": round(match(gt, batch.masks).f1, 4),
            "f1_gt_stream": round(match(gt, res.masks).f1, 4),
            "first_window_sd_vs_final": round(first.sd / last.sd - 1, 4),
        }
        print(json.dumps(fig))
        assert fig["f1_stream_vs_batch"] >= 0.95
