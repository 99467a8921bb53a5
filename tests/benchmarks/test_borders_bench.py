"""Registration scan: per-pixel statistics and border detection of a 512x512 uint16 movie, read in chunks.

``bench datasets add`` reads a user's movie once (NaN/Inf, constant, border). The
movie's length comes from ``BENCH_BORDER_FRAMES`` (default 600 frames, 315 MB)::

    pytest tests/benchmarks/test_borders_bench.py -m benchmark --benchmark-enable -s

The scan runs in a fresh interpreter so that its peak resident set size measures it alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

H = W = 512

_CHILD = r"""
import json, resource, sys, time
from datasets.borders import detect_border, pixel_stats
from datasets.movies import NpyMovie
movie = NpyMovie(sys.argv[1], check_finite=True)
t0 = time.perf_counter()
stats = pixel_stats(movie)
scan = time.perf_counter() - t0
border = detect_border(stats)
print(json.dumps({"scan_s": scan, "detect_s": time.perf_counter() - t0 - scan, "border": list(border),
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


@pytest.mark.benchmark
def test_registration_scan_speed_and_memory(tmp_path, benchmark):
    n = int(os.environ.get("BENCH_BORDER_FRAMES", "600"))
    path = tmp_path / "movie.npy"
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n, H, W))
    for start in range(0, n, 100):
        stop = min(start + 100, n)
        out[start:stop] = rng.poisson(200, size=(stop - start, H, W))
    out[:, :6] = 0  # zero-padded top border
    out.flush()
    del out
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run():
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    size = path.stat().st_size
    benchmark.extra_info.update(result | {"frames": n, "file_bytes": size, "mb_per_s": size / 1e6 / result["scan_s"]})
    print(json.dumps(benchmark.extra_info))
    assert result["border"] == [6, 0, 0, 0]
