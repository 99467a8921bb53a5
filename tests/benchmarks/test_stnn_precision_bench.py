"""STNeuroNet accuracy in bfloat16 against float32: F1 on the ``synthetic`` test split with the shipped weights.

Run with ``BENCH_DATA=/path/to/data pytest tests/benchmarks/test_stnn_precision_bench.py -m benchmark -s``
(the data set must already be generated there: ``python -m datasets fetch synthetic``). The scoring
is the suite's: :func:`stnn.infer.segment` with the threshold and minimum area of the weights'
metadata (as the ``stnn`` method adapter calls it) and :func:`bench.metrics.match` with the
``stnn`` rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Read before the suite's autouse fixture points BENCH_DATA at a temporary folder.
_DATA_ROOT = os.environ.get("BENCH_DATA")

pytestmark = pytest.mark.benchmark


def _test_split():
    from datasets import registry

    if not _DATA_ROOT or not (Path(_DATA_ROOT) / "synthetic").is_dir():
        pytest.skip("needs BENCH_DATA pointing at a generated 'synthetic' data set")
    data = registry.get("synthetic", root=Path(_DATA_ROOT))
    recs = list(data.split("test"))
    if not recs:
        pytest.skip("the synthetic data set has no test split")
    return data, recs


def test_bf16_f1_within_0005_of_fp32():
    import torch

    import stnn
    from bench.metrics import match
    from stnn.infer import segment
    from stnn.precision import cpu_has_native_bf16

    data, recs = _test_split()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16: 'bf16' would run in fp32")
    model, meta = stnn.pretrained("synthetic", device=device, return_metadata=True)
    f1 = {}
    for precision in ("fp32", "bf16"):
        scores = []
        for rec in recs:
            res = segment(rec, model, device=device, metadata=meta, precision=precision)
            assert res.timings.precision == precision
            scores.append(match(rec.ground_truth(data.default_grader), res.masks, rule="stnn").f1)
        f1[precision] = float(np.mean(scores))
    print(f"\nsynthetic test split ({len(recs)} recordings) F1: fp32 {f1['fp32']:.4f}, bf16 {f1['bf16']:.4f}")
    assert abs(f1["bf16"] - f1["fp32"]) <= 0.005, f1
