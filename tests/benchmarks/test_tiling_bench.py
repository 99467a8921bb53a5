"""Peak memory and speed of tiled STNeuroNet inference against the frame size (issue 18).

Each frame size runs in its own process (peak RSS cannot be reset), on a
movie generated frame by frame (the input costs no memory), with a randomly
initialised network (same cost as trained weights), one window of
``BENCH_TILE_FRAMES`` binned frames at 6 Hz (no binning) and one window per
forward pass. Run::

    BENCH_TILE_SIZES=256,512,1024,2048 BENCH_TILE=608 BENCH_TILE_FRAMES=120 \\
        pytest tests/benchmarks/test_tiling_bench.py -m benchmark -s

``BENCH_TILE`` is ``auto`` (default), ``off`` or a side in px; ``BENCH_TILE_DEVICE``
is ``cpu`` (default) or ``cuda`` (peak = ``torch.cuda.max_memory_allocated``);
``BENCH_TILE_UNTILED=1024,...`` also runs those sizes untiled for the speed
comparison; ``BENCH_TILE_OUT=file.jsonl`` keeps each row as soon as it is measured.
``BENCH_TILE_MARGIN`` is the tile margin (``auto``, ``exact`` or px; default
``exact``): a random network on a noise movie reaches as far as its receptive
field, so ``auto`` means something only with ``BENCH_TILE_WEIGHTS`` (shipped
weights name or ``.pt``; default a random network, the same cost) on real
content; the README's figures use the margin that the shipped weights were
measured to need on simulated movies (64 px, ``tests/stnn/test_overlap.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    from stnn.infer import segment
    from stnn.model import STNeuroNet
    from stnn.overlap import parse_margin
    from stnn.tiling import parse_tile

    class GeneratedMovie:
        # (T, H, W) uint16 Poisson-like frames made on demand from the frame index.
        def __init__(self, t, h, w):
            self.shape, self.dtype, self.ndim = (t, h, w), np.dtype(np.uint16), 3
        def __getitem__(self, key):
            t, rows, cols = key if isinstance(key, tuple) else (key, slice(None), slice(None))
            start, stop, _ = t.indices(self.shape[0])
            rng = np.random.default_rng(start)
            return rng.integers(50, 150, size=(stop - start, *self.shape[1:]), dtype=np.uint16)[:, rows, cols]

    size, frames, tile, device = int(sys.argv[1]), int(sys.argv[2]), parse_tile(sys.argv[3]), sys.argv[4]
    margin, weights = parse_margin(sys.argv[5]), sys.argv[6]
    torch.manual_seed(0)
    if weights == "random":
        net = STNeuroNet().to(device).eval()
    else:
        from stnn.weights import pretrained
        net = pretrained(weights, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    res = segment(GeneratedMovie(frames, size, size), net, fps=6.0, um_per_px=0.78, device=device,
                  batch_frames=frames, windows_per_batch=1, threshold=0.9, tile=tile, tile_margin=margin)
    tm = res.timings
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": size, "frames": frames, "device": device, "tile": tm.tile, "n_tiles": tm.n_tiles,
                      "margin": tm.tile_margin, "margin_source": tm.tile_margin_source, "weights": weights,
                      "precision": tm.precision, "tile_source": tm.tile_source, "peak_mib": peak,
                      "network_fps": tm.network_fps, "pipeline_fps": tm.fps, "preprocess_s": tm.preprocess_s,
                      "network_s": tm.network_s, "postprocess_s": tm.postprocess_s,
                      "network_fps_per_mpx": tm.network_fps * size * size / 1e6}))
    """
)


def _run(
    size: int, frames: int, tile: str, device: str, keep: str | None = None, margin: str = "exact",
    weights: str = "random",
) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(size), str(frames), tile, device, margin, weights],
        capture_output=True,
        text=True,
        timeout=7200,
        env=env,
    )
    if out.returncode != 0:
        raise AssertionError(out.stderr[-2000:])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if keep:
        with open(keep, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


@pytest.mark.benchmark
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units checked on Linux")
def test_peak_memory_and_speed_against_frame_size():
    sizes = _ints(os.environ.get("BENCH_TILE_SIZES", "256,512,1024,2048"))
    untiled = _ints(os.environ.get("BENCH_TILE_UNTILED", ""))
    frames = int(os.environ.get("BENCH_TILE_FRAMES", "120"))
    tile = os.environ.get("BENCH_TILE", "auto")
    device = os.environ.get("BENCH_TILE_DEVICE", "cpu")
    keep = os.environ.get("BENCH_TILE_OUT")
    margin = os.environ.get("BENCH_TILE_MARGIN", "exact")
    weights = os.environ.get("BENCH_TILE_WEIGHTS", "random")
    rows = [_run(s, frames, tile, device, keep, margin, weights) for s in sizes]
    rows += [_run(s, frames, "off", device, keep, margin, weights) for s in untiled]
    head = ("size", "tile", "tiles", "margin", "peak MiB", "net fr/s", "net fr/s x Mpx", "pipe fr/s")
    print("\n" + " ".join(f"{h:>{w}}" for h, w in zip(head, (5, 5, 5, 6, 9, 9, 15, 9))))
    for r in rows:
        print(
            f"{r['size']:>5} {r['tile'] or 'whole':>5} {r['n_tiles']:>5} {r['margin'] if r['tile'] else '-':>6} "
            f"{r['peak_mib']:>9.0f} {r['network_fps']:>9.3f} {r['network_fps_per_mpx']:>15.3f} "
            f"{r['pipeline_fps']:>9.3f}"
        )
    by_size = {r["size"]: r for r in rows[: len(sizes)]}
    if 512 in by_size and 2048 in by_size:
        ratio = by_size[2048]["peak_mib"] / by_size[512]["peak_mib"]
        assert ratio <= 1.5, f"peak memory at 2048x2048 is {ratio:.2f}x that at 512x512"
