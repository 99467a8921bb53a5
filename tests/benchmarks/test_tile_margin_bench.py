"""How far tiles must overlap: largest change of a probability against the margin (issue 18).

The shipped weights on a simulated 488x488 movie (``synthetic`` preset, 1,200
frames at 30 Hz = 240 binned frames, two windows), float32: the untiled maps
against maps of 2x2 tiles whose cores are 256 px, with margins of 16 to 96 px.
Run::

    pytest tests/benchmarks/test_tile_margin_bench.py -m benchmark -s

``BENCH_MARGIN_OUT=file.json`` keeps the table; ``BENCH_MARGINS=16,32,...``
chooses the margins. The figures are the evidence behind the default
``tile_margin='auto'`` (:mod:`stnn.overlap`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import pytest


@pytest.mark.benchmark
@pytest.mark.slow
def test_probability_change_against_tile_margin():
    from datasets.synthetic.params import SimulationParams
    from datasets.synthetic.simulate import simulate
    from stnn import pretrained, tiling
    from stnn.infer import default_preprocess_config, prepare_movie, probability_maps
    from stnn.weights import hardware_description

    margins = [int(m) for m in os.environ.get("BENCH_MARGINS", "16,32,48,64,96").split(",")]
    frames = []
    simulate(SimulationParams(height=488, width=488, n_frames=1200), 7, lambda s, f, d: frames.append(f))
    movie = np.concatenate(frames)
    model = pretrained("synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare_movie(movie, default_preprocess_config(30.0, 0.78), tmp)
        ref = probability_maps(prep, model, device="cpu", precision="fp32", tile=None, tile_margin="exact")
        h, w = prep.frames.shape[1:]
        rows = []
        for m in margins:
            plan = tiling.plan_tiles((h, w), model, 256 + 2 * m, memory_bytes=2**40, margin=m)
            t0 = time.perf_counter()
            maps = probability_maps(prep, model, device="cpu", precision="fp32", tile=plan)
            d = np.abs(maps - ref)
            rows.append({"margin": m, "tile": plan.tile, "n_tiles": len(plan.tiles), "max_dp": float(d.max()),
                         "p99_9_dp": float(np.quantile(d, 0.999)), "s": time.perf_counter() - t0})
    print("\nmargin  tiles   max |dp|   99.9th pct")
    for r in rows:
        print(f"{r['margin']:>6} {r['n_tiles']:>6} {r['max_dp']:>10.1e} {r['p99_9_dp']:>12.1e}")
    out = os.environ.get("BENCH_MARGIN_OUT")
    if out:
        doc = {"movie": "simulate(SimulationParams(height=488, width=488, n_frames=1200), seed=7)",
               "weights": "synthetic", "precision": "fp32", "hardware": hardware_description("cpu"), "rows": rows}
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)
    # The error falls with the margin, and the exact bound (the receptive field) is never needed here.
    errs = [r["max_dp"] for r in rows]
    assert all(a >= b for a, b in zip(errs, errs[1:]))
    assert errs[-1] <= 1e-3
