"""Worker isolation and the plugin mechanism, with the example plugin package really pip-installed."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bench.metrics import match
from datasets.errors import InputError
from datasets.maskio import write_mat
from datasets.movies import HDF5Movie
from datasets.records import Recording
from methods.worker import WorkerLimits, interpreter_for, run_in_worker
from tests.conftest import disk_masks

CENTRES = [(12, 12), (12, 40), (40, 12), (40, 40), (26, 26)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Five bright disks on a noisy background, as an HDF5 movie."""
    d = tmp_path_factory.mktemp("rec")
    gt = disk_masks(CENTRES, 5, (52, 52))
    rng = np.random.default_rng(0)
    frames = 100 + 60 * gt.to_dense().sum(axis=0)[None] * (1 + rng.random((40, 1, 1)))
    frames = rng.poisson(frames).astype(np.uint16)
    with h5py.File(d / "movie.h5", "w") as f:
        f["data"] = frames
    return Recording("rec1", HDF5Movie(d / "movie.h5"), fps=30.0, um_per_px=1.0, ground_truths={"default": gt})


def test_outside_package_adds_methods_without_editing_the_suite(plugin_site):
    r = subprocess.run(
        [sys.executable, "-m", "bench", "methods", "--json"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    names = {row["name"]: row for row in json.loads(r.stdout)}
    assert {"example-threshold", "example-raises", "example-hangs", "example-hog", "files"} <= set(names)
    assert names["example-threshold"]["available"]


def test_plugin_method_runs_in_a_worker_and_finds_the_cells(plugin_site, recording):
    res = run_in_worker("example-threshold", recording, {"k": 1.0, "min_area": 20}, limits=WorkerLimits(timeout_s=120))
    assert res.ok, res.message + res.log_tail
    seg = res.segmentation
    assert seg.masks.shape == recording.frame_shape and seg.n_frames == 40
    assert seg.params == {"k": 1.0, "min_area": 20}
    assert match(recording.ground_truth(), seg.masks).f1 == 1.0
    assert res.peak_memory_mb > 10 and res.wall_s > 0
    assert "python" in seg.versions


@pytest.mark.parametrize(
    "method, limits, status, message",
    [
        ("example-raises", WorkerLimits(timeout_s=120), "error", "RuntimeError: this method always fails"),
        ("example-hangs", WorkerLimits(timeout_s=3), "timeout", "did not finish within 3 s"),
        ("example-hog", WorkerLimits(timeout_s=120, memory_mb=400), "memory", "exceeded the memory limit of 400 MB"),
        ("example-wrong-frame", WorkerLimits(timeout_s=120), "error", "returned masks over a 53x52 frame"),
    ],
)
def test_failures_become_results_not_exceptions(plugin_site, recording, method, limits, status, message):
    res = run_in_worker(method, recording, {}, limits=limits)
    assert res.status == status and message in res.message
    assert res.segmentation is None


def test_worker_home_is_private(plugin_site, recording, tmp_path):
    res = run_in_worker("example-threshold", recording, {"k": 1.0, "min_area": 20}, keep_dir=tmp_path / "job")
    assert res.ok
    assert (tmp_path / "job" / "home").is_dir()
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert "ground_truths" not in job["recording"]  # the worker never sees ground truth


def test_saved_outputs_as_a_method(recording, tmp_path):
    write_mat(recording.ground_truth().subset([0, 2]), tmp_path / "ST_rec1.mat")
    res = run_in_worker(f"files:{tmp_path}/ST_{{recording}}.mat", recording, {"axes": [2, 0, 1]})
    assert res.ok, res.message
    s = match(recording.ground_truth(), res.segmentation.masks)
    assert (s.tp, s.n_pred) == (2, 2)
    missing = run_in_worker(f"files:{tmp_path}/none_{{recording}}.mat", recording, {})
    assert missing.status == "error" and "file not found" in missing.message and "none_rec1.mat" in missing.message


def test_configured_interpreter_must_exist(monkeypatch, recording):
    monkeypatch.setenv("BENCH_PYTHON_FILES", "/nonexistent/python")
    with pytest.raises(InputError, match="method 'files': configured interpreter /nonexistent/python"):
        interpreter_for("files")
    monkeypatch.setenv("BENCH_PYTHON_FILES", sys.executable)
    assert interpreter_for("files") == sys.executable


def test_unknown_method_suggests(recording):
    with pytest.raises(InputError, match="unknown method 'filez'.*did you mean 'files'"):
        run_in_worker("filez", recording, {})
