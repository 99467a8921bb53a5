"""The unit model: planning validates first, stages are shared by the grid, training is a cached unit."""

from __future__ import annotations

import json

import pytest

import bench.jobs as jobs
from bench.executors import LocalExecutor, Task
from bench.harness import RunConfig, run_benchmark
from bench.plan import plan_run
from bench.results import read_table
from bench.tuning import choose_points
from bench.units import WeightsCache
from datasets.errors import InputError
from datasets.records import Dataset, Fold, Recording
from datasets.registry import get as get_dataset

TINY_SCHEDULE = """
[stnn]
crop = [32, 32]
frames = 16
iterations = 4
batch = 1
lr = 0.001
checkpoint_every = 2
validate_every = 0

[unet2ds]
iterations = 2
batch_size = 2
crop = 32
epoch_steps = 1
"""


def _counting(monkeypatch):
    calls: list[str] = []
    real = jobs.run_in_worker

    def counting(*a, **k):
        calls.append(k.get("action", "segment"))
        return real(*a, **k)

    monkeypatch.setattr(jobs, "run_in_worker", counting)
    return calls


# ---------------------------------------------------------------------------- pure parts
def test_choose_points_is_the_best_mean_on_the_other_recordings():
    recs = [Recording(n, None, 30.0, 1.0, shape=(8, 8)) for n in "abc"]
    folds = [Fold(i, tuple(r for r in recs if r is not h), h) for i, h in enumerate(recs)]
    f1 = {"a": {"p": 0.9, "q": 0.1}, "b": {"p": 0.2, "q": 0.6}, "c": {"p": 0.5, "q": 0.5}}
    chosen = {c.held_out: (c.point, round(c.mean_f1, 3)) for c in choose_points(f1, folds)}
    assert chosen == {"a": ("q", 0.55), "b": ("p", 0.7), "c": ("p", 0.55)}


def test_executor_runs_in_dependency_order_and_skips_dependents_of_failures():
    order = []

    def job(name, status="ok"):
        return lambda: (order.append(name), {"status": status, "error": "boom" if status != "ok" else ""})[1]

    tasks = [Task("c", job("c"), ("b",)), Task("b", job("b"), ("a",)), Task("a", job("a")),
             Task("x", job("x", "error")), Task("y", job("y"), ("x",))]
    done = {}
    LocalExecutor(2).run(tasks, lambda t, r: done.__setitem__(t.id, r))
    assert order.index("a") < order.index("b") < order.index("c")
    assert "y" not in order and done["y"]["status"] == "error" and "x failed" in done["y"]["error"]


def test_bad_parameters_are_refused_at_planning(tmp_path):
    from methods.params import Param
    from methods.stnn import STNeuroNetMethod

    ds = get_dataset("synthetic-tiny")
    with pytest.raises(InputError, match=r"method 'stnn': parameter 'threshold' must be <= 1"):
        STNeuroNetMethod().check_params(ds.recordings[0], {"threshold": 1.5})
    assert Param(float, low=0, high=1, optional=True).allowed() == "a number >= 0 and <= 1 (or None)"


def test_schedule_files_are_checked(tmp_path):
    ds = get_dataset("synthetic-tiny")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stnn]\niterationz = 3\n")
    cfg = RunConfig("synthetic-tiny", ("stnn",), train="split", train_schedule=str(bad))
    with pytest.raises(InputError, match=r"unknown training setting\(s\) 'iterationz'.*iterations"):
        plan_run(cfg, ds, list(ds.recordings), WeightsCache(tmp_path / "w"))
    bad.write_text("[stnn]\niterations = -3\n")
    with pytest.raises(InputError, match="iterations >= 0"):
        plan_run(cfg, ds, list(ds.recordings), WeightsCache(tmp_path / "w"))
    bad.write_text("[nosuch]\niterations = 3\n")
    with pytest.raises(InputError, match="no learning method"):
        plan_run(cfg, ds, list(ds.recordings), WeightsCache(tmp_path / "w"))


def test_training_needs_training_recordings_with_ground_truth(tmp_path):
    ds = get_dataset("synthetic-tiny")
    tests_only = Dataset("x", [r for r in ds.recordings if r.split == "test"])
    cfg = RunConfig("x", ("stnn",), train="split", train_schedule="quick")
    with pytest.raises(InputError, match="--train split has no training recordings in data set x"):
        plan_run(cfg, tests_only, list(tests_only.recordings), WeightsCache(tmp_path))
    train = [r for r in ds.recordings if r.split == "train"][0]
    no_gt = Recording("nogt", train.movie, train.fps, train.um_per_px, split="train")
    ds2 = Dataset("y", [no_gt, *[r for r in ds.recordings if r.split == "test"]])
    with pytest.raises(InputError, match="training recording\\(s\\) nogt of data set y have no ground truth"):
        plan_run(RunConfig("y", ("stnn",), train="split"), ds2, list(ds2.split("test")), WeightsCache(tmp_path))


def test_default_training_mode_follows_the_shipped_weights(tmp_path):
    ds = get_dataset("synthetic-tiny")
    plan = plan_run(RunConfig("synthetic-tiny", ("stnn",), tune="none"), ds, list(ds.split("test")),
                    WeightsCache(tmp_path))
    assert plan.train_modes == {"stnn": "split"} and len(plan.trains) == 1
    ds.name = "synthetic"  # the shipped weights' own data set
    plan = plan_run(RunConfig("synthetic", ("stnn",), tune="none"), ds, list(ds.split("test")),
                    WeightsCache(tmp_path))
    assert plan.train_modes == {"stnn": "shipped"} and not plan.trains


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_grid_runs_the_network_once_per_recording(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    cfg = RunConfig("synthetic-tiny", ("stnn",), tune="loo", split="test", train="shipped")
    rows = read_table(run_benchmark(cfg, tmp_path / "run", progress=False))
    assert calls.count("prepare") == 1  # one recording: one network pass
    assert calls.count("finish") == 12  # the 12-point post-processing grid
    assert {r["status"] for r in rows} == {"ok"} and {r["weights"] for r in rows} == {"shipped"}
    calls.clear()
    run_benchmark(cfg, tmp_path / "run", progress=False)
    assert calls == []


@pytest.mark.slow
def test_training_in_the_run_is_cached_and_resumed(tmp_path, monkeypatch, caplog):
    schedule = tmp_path / "tiny.toml"
    schedule.write_text(TINY_SCHEDULE)
    weights = tmp_path / "weights"
    cfg = RunConfig("synthetic-tiny", ("stnn", "unet2ds"), tune="loo", split="test", train="split",
                    train_schedule=str(schedule))
    ds = get_dataset("synthetic-tiny")
    plan = plan_run(cfg, ds, list(ds.split("test")), WeightsCache(weights))
    stnn_train = next(t for t in plan.trains if t.method == "stnn")

    # A training killed midway left its first checkpoint: the run resumes from it.
    from stnn.train import TrainConfig, train

    folder = WeightsCache(weights).folder(stnn_train)
    train(list(stnn_train.recordings), folder, config=TrainConfig(**{**stnn_train.settings, "iterations": 2}),
          device="cpu", progress=False, tune_at_end=False)
    (folder / "weights.pt").unlink()  # killed before the end: no weights, no manifest
    first_ckpt = folder / "checkpoints" / "ckpt-00000002.pt"
    stamp = first_ckpt.stat().st_mtime_ns

    calls = _counting(monkeypatch)
    table = run_benchmark(cfg, tmp_path / "run", progress=False, weights_root=weights)
    rows = read_table(table)
    assert calls.count("train") == 2
    assert first_ckpt.stat().st_mtime_ns == stamp  # iterations 1-2 were not run again
    history = json.loads((folder / "history.json").read_text())
    assert len(history["loss"]) == 4
    for r in rows:
        assert r["status"] == "ok", (r["method"], r["error"])
        assert r["weights"] == "fold-trained" and r["weights_key"] and r["train_iterations"] in (2, 4)
        assert r["tuned_on"] == "tiny00" and r["train_device"] == "cpu"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["recordings"] == ["tiny00"]

    # A second run trains nothing and reuses every unit.
    calls.clear()
    run_benchmark(cfg, tmp_path / "run2", progress=False, weights_root=weights)
    assert calls.count("train") == 0

    # Corrupt cached weights are set aside, said in the log, and trained again.
    (folder / "weights.pt").write_bytes(b"garbage")
    calls.clear()
    with caplog.at_level("WARNING"):
        run_benchmark(cfg, tmp_path / "run3", progress=False, weights_root=weights)
    assert calls.count("train") == 1 and "fail their checksum" in caplog.text


@pytest.mark.slow
def test_a_relative_output_folder_works_for_staged_methods(tmp_path, monkeypatch):
    """Workers run in their own folders: stage paths must not be relative to the caller's."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    cfg = RunConfig("synthetic-tiny", ("stnn",), tune="none", split="test", train="shipped")
    rows = read_table(run_benchmark(cfg, Path("runs") / "rel", progress=False))
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
