"""Suite2p and UNet2DS run through the harness on synthetic-tiny (the issue asks for this in CI)."""

import importlib.util

import pytest

from bench.harness import RunConfig, run_benchmark
from bench.results import read_table


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("suite2p") is None, reason="suite2p is not installed")
def test_suite2p_and_unet2ds_on_synthetic_tiny(tmp_path):
    cfg = RunConfig("synthetic-tiny", ("suite2p", "unet2ds"), tune="none", split="all")
    rows = read_table(run_benchmark(cfg, tmp_path / "run", progress=False))
    by = {}
    for r in rows:
        if r["grader"] == "default":
            by.setdefault(r["method"], []).append(r)
    assert set(by) == {"suite2p", "unet2ds"}
    for method, rs in by.items():
        for r in rs:
            assert r["status"] == "ok", (method, r["error"])
            assert r["n_pred"] >= 0 and r["frames_per_s"] > 0 and 0 <= r["f1"] <= 1
    # Suite2p finds cells on the tiny recordings (they have a few strong neurons).
    assert max(r["tp"] for r in by["suite2p"]) > 0
