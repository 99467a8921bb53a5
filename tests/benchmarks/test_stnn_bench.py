"""STNeuroNet speed and memory benchmarks.

Run with ``tox -e bench`` or ``pytest tests/benchmarks --benchmark-enable -m benchmark``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from stnn.model import STNeuroNet

# Child process: segment a movie generated on the fly (so the input costs no memory) and report peak RSS.
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    from stnn.infer import segment
    from stnn.model import STNeuroNet

    class GeneratedMovie:
        # (T, H, W) uint16 frames made on demand from the frame index.
        def __init__(self, t, h, w):
            self.shape = (t, h, w)
            self.dtype = np.dtype(np.uint16)
            self.ndim = 3
        def __getitem__(self, key):
            t, rows, cols = key if isinstance(key, tuple) else (key, slice(None), slice(None))
            start, stop, _ = t.indices(self.shape[0])
            rng = np.random.default_rng(start)
            return rng.integers(50, 150, size=(stop - start, *self.shape[1:]), dtype=np.uint16)[:, rows, cols]

    torch.set_num_threads(1)
    torch.manual_seed(0)
    frames = int(sys.argv[1])
    res = segment(GeneratedMovie(frames, 64, 64), STNeuroNet(), fps=6.0, um_per_px=1.0, device="cpu",
                  threshold=0.99, windows_per_batch=1)
    print(json.dumps({"frames": res.timings.n_frames,
                      "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


def _peak_kib(frames: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(frames)], capture_output=True, text=True, timeout=600, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["frames"] == frames
    return int(report["peak_kib"])


@pytest.mark.benchmark
def test_network_frames_per_second_cpu(benchmark):
    torch.manual_seed(0)
    model = STNeuroNet().eval()
    x = torch.randn(1, 1, 120, 32, 32)
    with torch.inference_mode():
        model(x)  # warm-up
        benchmark(model, x)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["binned_frames_per_s"] = 120 / stats.stats.mean


@pytest.mark.benchmark
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and page accounting checked on Linux")
def test_memory_independent_of_movie_length():
    """A 10x longer movie raises peak memory by < 20 % (streaming pre-processing and windows)."""
    short = _peak_kib(480)
    long = _peak_kib(4800)  # materialising this pre-processed movie alone would take 75 MiB
    assert long < 1.2 * short, f"peak RSS {short} KiB for 480 frames, {long} KiB for 4800 frames"
