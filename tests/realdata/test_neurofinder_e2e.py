"""The real-data path end to end: `bench fetch neurofinder` from a local server, then `bench run --train split`.

Neurofinder-layout zips (TIFF frames, info.json, regions.json) are built from small simulated recordings
(2 training sets, 1 test set) and served on 127.0.0.1. The run trains STNeuroNet and UNet2DS on the two
training sets with a tiny schedule, evaluates the test set with them and with Suite2p, and writes a report.
A training stopped midway (SIGTERM) resumes from its checkpoint; a second run trains nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import bench.jobs as jobs
from bench.cli import main
from bench.results import read_table
from datasets.registry import data_root
from datasets.registry import get as get_dataset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("suite2p") is None, reason="suite2p is not installed")

SCHEDULE = """
[stnn]
crop = [32, 32]
frames = 16
iterations = 60
batch = 1
checkpoint_every = 10
validate_every = 0

[unet2ds]
iterations = 2
batch_size = 2
crop = 32
epoch_steps = 1
"""


def _zip_of(rec, name: str, tmp, writers, flip: bool = False) -> bytes:
    """A published-layout Neurofinder zip of a simulated recording (frames as TIFF files)."""
    import tifffile

    folder = tmp / "src" / f"neurofinder.{name}"
    (folder / "images").mkdir(parents=True)
    movie = rec.movie.read()
    gt = rec.ground_truth("default")
    if flip:
        movie = movie[:, ::-1]
    for t, frame in enumerate(movie):
        tifffile.imwrite(folder / "images" / f"image{t:05d}.tiff", np.ascontiguousarray(frame))
    info = {"id": name, "rate-hz": rec.fps, "pixels-per-micron": rec.um_per_px, "indicator": rec.indicator}
    (folder / "info.json").write_text(json.dumps(info))
    if not name.endswith(".test"):
        regions = []
        for k in range(gt.n):
            r, c = gt.coordinates(k)
            r = gt.shape[0] - 1 - r if flip else r
            regions.append({"coordinates": [[int(a), int(b)] for a, b in zip(r, c)]})
        (folder / "regions").mkdir()
        (folder / "regions" / "regions.json").write_text(json.dumps(regions))
    return writers.zip_folder(folder, tmp / f"neurofinder.{name}.zip").read_bytes()


def _grader1_for_test(rec, root):
    """The test set's grader-1 marking file, as the STNeuroNet authors store it (v5, rows x cols x N)."""
    from scipy.io import savemat

    gt = rec.ground_truth("default").to_dense()[:, 4:-4, 4:-4]  # Neurofinder 01 crop: 4 px a side
    gt = gt[gt.reshape(len(gt), -1).any(axis=1)]
    path = root / "stneuronet" / "Markings" / "Neurofinder" / "test" / "Grader1" / "FinalMasks_100.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"FinalMasks": np.ascontiguousarray(gt.transpose(1, 2, 0)).astype(np.uint8)})


def _run_args(out, schedule):
    return ["run", "--dataset", "neurofinder", "--methods", "stnn,unet2ds,suite2p", "--train", "split",
            "--train-schedule", str(schedule), "--tune", "none", "--out", str(out), "--quiet"]


@pytest.mark.slow
def test_fetch_train_in_the_run_resume_and_report(tmp_path, http_server, writers, monkeypatch):
    url, state = http_server
    tiny = get_dataset("synthetic-tiny")
    train_rec, test_rec = tiny["tiny00"], tiny["tiny01"]
    state.files["/neurofinder.01.00.zip"] = _zip_of(train_rec, "01.00", tmp_path, writers)
    state.files["/neurofinder.01.01.zip"] = _zip_of(test_rec, "01.01", tmp_path, writers, flip=True)
    state.files["/neurofinder.01.00.test.zip"] = _zip_of(test_rec, "01.00.test", tmp_path, writers)
    root = data_root()

    assert main(["fetch", "neurofinder", "--only", "01.00", "01.01", "01.00.test", "--no-progress", "--no-markings",
                 "--base-url", f"neurofinder={url}", "--base-url", f"stneuronet={url}"]) == 0
    assert (root / "neurofinder" / "neurofinder.01.00.test.zip").is_file()
    _grader1_for_test(test_rec, root)
    schedule = tmp_path / "tiny.toml"
    schedule.write_text(SCHEDULE)

    # A first run, stopped while STNeuroNet trains (after its first checkpoint).
    proc = subprocess.Popen([sys.executable, "-m", "bench", *_run_args(tmp_path / "run1", schedule)],
                            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    first = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((root / "trained" / "stnn").glob("*/checkpoints/ckpt-00000010.pt"))
        if found:
            first = found[0]
            break
        time.sleep(0.2)
    assert first is not None, "training never wrote its first checkpoint"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    stamp = first.stat().st_mtime_ns
    assert not (first.parent.parent / "manifest.json").exists()

    # Run again: STNeuroNet resumes from its checkpoint, UNet2DS trains, the test set is evaluated.
    calls: list[str] = []
    real = jobs.run_in_worker
    monkeypatch.setattr(jobs, "run_in_worker", lambda *a, **k: (calls.append(k.get("action", "segment")),
                                                                 real(*a, **k))[1])
    assert main(_run_args(tmp_path / "run1", schedule)) == 0
    assert calls.count("train") in (1, 2)  # stnn resumed; unet2ds trained (unless it finished before SIGTERM)
    assert first.stat().st_mtime_ns == stamp  # iterations 1-10 were not run again
    history = json.loads((first.parent.parent / "history.json").read_text())
    assert len(history["loss"]) == 60
    rows = read_table(tmp_path / "run1" / "results.csv")
    assert {r["recording"] for r in rows} == {"01.00.test"} and {r["grader"] for r in rows} == {"grader1"}
    by = {r["method"]: r for r in rows}
    for m in ("stnn", "unet2ds", "suite2p"):
        assert by[m]["status"] == "ok", (m, by[m]["error"])
        assert 0 <= by[m]["f1"] <= 1 and by[m]["n_gt"] > 0
    for m in ("stnn", "unet2ds"):
        assert by[m]["weights"] == "fold-trained" and by[m]["weights_key"] and by[m]["tuned_on"] == "01.00;01.01"
        assert by[m]["train_s"] > 0 and by[m]["train_device"] == "cpu"
    assert by["stnn"]["train_iterations"] == 60 and by["stnn"]["crop"] == "4,4,4,4"
    report = (tmp_path / "run1" / "report" / "report.md").read_text()
    assert "fold-trained" in report

    # A second run (another folder) trains nothing: the weights are reused from the cache.
    calls.clear()
    assert main(_run_args(tmp_path / "run2", schedule)) == 0
    assert calls.count("train") == 0 and calls.count("prepare") == 3  # stnn, unet2ds and suite2p stages
