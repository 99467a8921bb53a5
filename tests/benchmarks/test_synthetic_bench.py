"""Generation time and peak memory of the synthetic data set (run with ``tox -e bench``).

Generation time: all 10 recordings of ``synthetic`` in under 2 minutes on 2 cores
(measured in a subprocess); peak memory under 2 GB however many frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.benchmark

_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    which, root = sys.argv[1], Path(sys.argv[2])
    t = time.perf_counter()
    if which == "default":
        from datasets.synthetic import SyntheticDefault
        SyntheticDefault().load(root)
    else:
        from datasets.synthetic import DEFAULT_PARAMS, write_recording
        write_recording(root / "long", "long", DEFAULT_PARAMS.replace(n_frames=int(which)), 1)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": max(kids, own) / 1024}))
    """
)


def _run(which: str, root) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, which, str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_generate_default_dataset(benchmark, tmp_path):
    t0 = time.perf_counter()
    res = benchmark.pedantic(_run, args=("default", tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    assert res["seconds"] < 120 or time.perf_counter() - t0 < 120
    assert res["peak_rss_mb"] < 2048


def test_memory_does_not_grow_with_frames(benchmark, tmp_path):
    """One recording of 2,400 and of 12,000 frames: the peak memory stays (nearly) the same.

    Only the per-soma traces (N x T float32, ~0.7 kB per frame) grow with the
    movie; frames are streamed block by block.
    """
    short = _run("2400", tmp_path / "short")
    long = benchmark.pedantic(_run, args=("12000", tmp_path / "long"), rounds=1, iterations=1)
    benchmark.extra_info.update({"peak_rss_mb_2400": short["peak_rss_mb"], "peak_rss_mb_12000": long["peak_rss_mb"]})
    benchmark.extra_info.update({"seconds_2400": short["seconds"], "seconds_12000": long["seconds"]})
    assert long["peak_rss_mb"] < 2048
    assert long["peak_rss_mb"] < 1.25 * short["peak_rss_mb"]
