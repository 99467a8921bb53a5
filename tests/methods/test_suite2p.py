"""The Suite2p adapter with the real package, run in a worker with a private HOME.

Skipped when suite2p is not installed (``pip install -c constraints-cpu.txt ".[suite2p]"``).
The test process itself never imports suite2p (that would write ``~/.suite2p``):
availability is checked with ``find_spec``, and every run goes through
``run_in_worker``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.metrics import match
from datasets.errors import InputError
from datasets.movies import ArrayMovie
from datasets.records import Recording
from methods.suite2p import Suite2p
from methods.worker import REPO_ROOT, WorkerLimits, run_in_worker
from tests.conftest import disk_masks

needs_suite2p = pytest.mark.skipif(
    importlib.util.find_spec("suite2p") is None,
    reason='suite2p is not installed (pip install -c constraints-cpu.txt ".[suite2p]")',
)

ENTRY_POINTS = {"suite2p": "methods.suite2p:Suite2p", "hnccorr": "methods.hnccorr:HNCcorr"}


def synthetic_recording(
    shape=(96, 96), n_frames=600, fps=30.0, centres=None, n_cells=10, radius=5, seed=0, um_per_px=1.2
) -> Recording:
    """Disks with sparse exponentially decaying transients on a Poisson-noisy baseline."""
    rng = np.random.default_rng(seed)
    if centres is None:
        grid = [(r, c) for r in range(12, shape[0] - 8, 18) for c in range(12, shape[1] - 8, 18)]
        picks = rng.choice(len(grid), n_cells, replace=False)
        centres = [(grid[i][0] + rng.integers(-3, 4), grid[i][1] + rng.integers(-3, 4)) for i in picks]
    gt = disk_masks(centres, radius, shape)
    dense = gt.to_dense().astype(np.float32)
    kernel = np.exp(-np.arange(int(3 * fps)) / (0.7 * fps))  # GCaMP6f-like decay
    traces = np.stack(
        [np.convolve((rng.random(n_frames) < 0.6 / fps).astype(np.float32), kernel)[:n_frames] for _ in centres]
    )
    frames = 50.0 + 20.0 * dense.sum(0)[None] + np.einsum("nt,nhw->thw", 80.0 * traces, dense)
    frames = rng.poisson(frames).astype(np.uint16)
    return Recording(
        "synthetic-s2p",
        ArrayMovie(frames),
        fps=fps,
        um_per_px=um_per_px,
        ground_truths={"default": gt},
        indicator="GCaMP6f",
    )


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------ parameters (no suite2p needed)
def test_default_params_follow_the_recording():
    rec = synthetic_recording(n_frames=20)
    p = Suite2p().default_params(rec)
    assert p["fs"] == 30.0 and p["tau"] == 0.7 and p["diameter"] == pytest.approx(10.0)
    assert p["device"] in ("cpu", "cuda") and p["use_classifier"] is True
    slow = Recording("s", rec.movie, fps=7.5, um_per_px=2.0, indicator="GCaMP6s")
    q = Suite2p().default_params(slow)
    assert (q["fs"], q["tau"], q["diameter"]) == (7.5, 1.25, 6.0)
    unknown = Recording("u", rec.movie, fps=10.0, um_per_px=1.0)
    assert Suite2p().default_params(unknown)["tau"] == 1.0
    grid = Suite2p().param_grid(rec)
    assert grid == {"threshold_scaling": [0.5, 0.8, 1.2], "use_classifier": [False, True], "lam_threshold": [0.1, 0.2]}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"threshold_scaling": "high"}, "method 'suite2p': parameter 'threshold_scaling' must be a number"),
        ({"threshold_scaling": 0}, "method 'suite2p': parameter 'threshold_scaling' must be > 0"),
        ({"tau": -1.0}, "method 'suite2p': parameter 'tau' must be > 0"),
        ({"use_classifier": "yes"}, "method 'suite2p': parameter 'use_classifier' must be true or false"),
        ({"spatial_scale": 1.5}, "method 'suite2p': parameter 'spatial_scale' must be a whole number"),
        ({"spatial_scale": 7}, "method 'suite2p': parameter 'spatial_scale' must be <= 4"),
        ({"device": "tpu"}, "method 'suite2p': parameter 'device' must be one of 'cpu', 'cuda'"),
        ({"algorithm": "cellpose"}, "method 'suite2p': parameter 'algorithm' must be one of"),
        ({"treshold_scaling": 1.0}, "method 'suite2p' has no parameter.*did you mean 'threshold_scaling'"),
    ],
)
def test_bad_parameters_are_input_errors(params, message):
    rec = synthetic_recording(n_frames=20)
    with pytest.raises(InputError, match=message):
        Suite2p().segment(rec, params)


def test_availability_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "suite2p" else real(n, *a))
    ok, why = Suite2p().is_available()
    assert not ok and "suite2p" in why and 'pip install -c constraints-cpu.txt ".[suite2p]"' in why


# ------------------------------------------------------------------ the real package
@needs_suite2p
def test_torchvision_import_shim_lets_suite2p_import(tmp_path):
    """``import suite2p`` through the shim works with a CPU torch (where torchvision's ops cannot load)."""
    code = (
        "from methods._compat import torchvision_without_compiled_ops\n"
        "import torch.library\n"
        "orig = torch.library.register_fake\n"
        "with torchvision_without_compiled_ops():\n"
        "    import suite2p\n"
        "assert torch.library.register_fake is orig\n"
        "print(suite2p.version)\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith("1.")


@needs_suite2p
def test_suite2p_in_a_worker_finds_the_cells_and_leaves_home_alone(tmp_path, monkeypatch):
    real_home = tmp_path / "real-home"
    real_home.mkdir()
    (real_home / ".bashrc").write_text("# untouched\n")
    monkeypatch.setenv("HOME", str(real_home))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    before = _listing(real_home)

    rec = synthetic_recording()
    res = run_in_worker("suite2p", rec, {"use_classifier": True}, limits=WorkerLimits(timeout_s=300, threads=2))
    assert res.ok, res.message + res.log_tail
    seg = res.segmentation
    score = match(rec.ground_truth(), seg.masks, iou=0.5, rule="suns")
    assert score.f1 >= 0.6, score.summary()
    assert seg.n_frames == rec.n_frames and seg.process_s > 0 and seg.init_s > 0
    assert seg.params["use_classifier"] is True and seg.params["device"] == "cpu"
    assert seg.params["fs"] == 30.0 and seg.params["tau"] == 0.7
    assert seg.versions["suite2p"].startswith("1.") and "torch" in seg.versions
    print(f"suite2p: {score.summary()} fps={seg.frames_per_s:.0f} init={seg.init_s:.1f}s")

    assert _listing(real_home) == before, "suite2p wrote into the real HOME"
    assert not (real_home / ".suite2p").exists()


@pytest.mark.slow
@needs_suite2p
def test_suite2p_without_classifier_keeps_every_roi():
    rec = synthetic_recording(seed=3)
    res = run_in_worker(
        "suite2p",
        rec,
        {"use_classifier": False, "threshold_scaling": 0.8, "exclude_overlap": True},
        limits=WorkerLimits(timeout_s=300, threads=2),
    )
    assert res.ok, res.message + res.log_tail
    score = match(rec.ground_truth(), res.segmentation.masks, iou=0.5, rule="suns")
    assert score.recall >= 0.6, score.summary()
    print(f"suite2p (no classifier): {score.summary()} fps={res.segmentation.frames_per_s:.0f}")


def test_footprints_are_cut_to_their_weighted_core():
    from methods.suite2p import _stat_to_masks

    # A 3x3 core of high weight plus two stray low-weight pixels, one of them detached.
    ypix = np.array([5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 1])
    xpix = np.array([5, 6, 7, 5, 6, 7, 5, 6, 7, 8, 1])
    lam = np.array([1, 1, 1, 1, 2, 1, 1, 1, 1, 0.1, 0.5])
    stat = [{"ypix": ypix, "xpix": xpix, "lam": lam}]
    full = _stat_to_masks(stat, None, (12, 12), False, False, 0.0)
    core = _stat_to_masks(stat, None, (12, 12), False, False, 0.2)
    assert full.areas.tolist() == [11]
    assert core.areas.tolist() == [9]  # the 0.1 pixel is below 0.2 x 2; the detached 0.5 pixel is not the main piece
