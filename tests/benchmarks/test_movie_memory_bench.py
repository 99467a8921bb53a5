"""Peak memory of the mean image of a 512x512 uint16 HDF5 movie read lazily in chunks (target: < 1 GB).

The movie is written here, chunked as (1, 512, 512) frames. Its length comes from
``BENCH_MEM_FRAMES`` (default 2,000 frames, 1 GB, for CI-speed runs). The full-size
check of the issue, 20,000 frames (10 GB on disk), is::

    BENCH_MEM_FRAMES=20000 pytest tests/benchmarks/test_movie_memory_bench.py --benchmark-enable -s

The mean is computed in a fresh interpreter so that its peak resident set size
(``ru_maxrss``) measures the computation alone, not the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

H = W = 512
LIMIT_BYTES = 1 << 30

_CHILD = r"""
import json, resource, sys, time
from datasets.movies import HDF5Movie
t0 = time.perf_counter()
movie = HDF5Movie(sys.argv[1], "data")
mean = movie.mean_image(chunk=int(sys.argv[2]))
elapsed = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"peak_bytes": peak_kib * 1024, "seconds": elapsed, "mean00": float(mean[0, 0]),
                  "mean_all": float(mean.mean()), "shape": list(movie.shape)}))
"""


def _write_movie(path: Path, n_frames: int) -> float:
    """Write frame t filled with (t % 1000) plus a column ramp, 256 frames at a time; return the exact mean."""
    import h5py

    ramp = (np.arange(W, dtype=np.uint16) % 7)[None, None, :]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=(n_frames, H, W), dtype=np.uint16, chunks=(1, H, W))
        for start in range(0, n_frames, 256):
            stop = min(start + 256, n_frames)
            t = (np.arange(start, stop, dtype=np.uint16) % 1000)[:, None, None]
            ds[start:stop] = np.broadcast_to(t + ramp, (stop - start, H, W))
    return float(np.mean(np.arange(n_frames) % 1000))


@pytest.mark.benchmark
def test_mean_image_peak_memory_under_1gb(tmp_path, benchmark):
    n_frames = int(os.environ.get("BENCH_MEM_FRAMES", "2000"))
    path = tmp_path / "movie.h5"
    t0 = time.perf_counter()
    expected = _write_movie(path, n_frames)
    write_s = time.perf_counter() - t0
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run():
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), "256"], capture_output=True, text=True, env=env, check=True
        )
        return json.loads(out.stdout)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result | {"frames": n_frames, "file_bytes": path.stat().st_size, "write_s": write_s})
    assert result["shape"] == [n_frames, H, W]
    assert result["mean00"] == pytest.approx(expected)
    assert result["peak_bytes"] < LIMIT_BYTES, f"peak {result['peak_bytes'] / 2**20:.0f} MiB for {n_frames} frames"
