"""Suite2p and UNet2DS run through the harness on synthetic-tiny (the issue asks for this in CI)."""

import importlib.util

import pytest

from bench.harness import RunConfig, run_benchmark
from bench.results import read_table


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("suite2p") is None, reason="suite2p is not installed")
def test_suite2p_and_unet2ds_on_synthetic_tiny(tmp_path):
    cfg = RunConfig("synthetic-tiny", ("suite2p", "unet2ds"), tune="none", split="all", train="shipped")
    rows = read_table(run_benchmark(cfg, tmp_path / "run", progress=False))
    assert {r["method"] for r in rows} == {"suite2p", "unet2ds"}
    assert {r["grader"] for r in rows} == {"default", "all_somata"}
    for r in rows:
        assert r["status"] == "ok", (r["method"], r["error"])
        assert r["n_pred"] >= 0 and r["frames_per_s"] > 0 and 0 <= r["f1"] <= 1
    # The tiny movies are a few seconds long: Suite2p may find no ROI there, UNet2DS (mean image) finds somata.
    assert sum(r["tp"] for r in rows if r["method"] == "unet2ds" and r["grader"] == "all_somata") > 0
