"""bench run: units, leave-one-out tuning, failure rows, resume, output-folder protection, reports."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import bench.jobs as jobs
from bench.cli import main
from bench.harness import RunConfig, run_benchmark
from bench.report import make_report
from bench.results import COLUMNS, read_table, write_table
from datasets.errors import InputError
from datasets.movies import HDF5Movie
from datasets.records import Dataset, Recording
from tests.conftest import disk_masks

METHODS = ("example-threshold", "example-raises")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(1)
    recs = []
    for k in range(3):
        centres = [tuple(c) for c in rng.integers(8, 44, size=(5, 2))]
        gt = disk_masks(centres, 4, (52, 52))
        brightness = (40 + 30 * k) * gt.to_dense().sum(axis=0)  # the best threshold differs between recordings
        frames = rng.poisson(100 + brightness[None] * (1 + rng.random((30, 1, 1)))).astype(np.uint16)
        with h5py.File(d / f"r{k}.h5", "w") as f:
            f["data"] = frames
        recs.append(
            Recording(
                f"r{k}",
                HDF5Movie(d / f"r{k}.h5"),
                30.0,
                1.0,
                {"default": gt, "other": gt.subset([0, 1, 2])},
                split="test",
            )
        )
    return Dataset("toy", recs)


def _run(dataset, out, methods=METHODS, **kw):
    cfg = RunConfig(dataset="toy", methods=methods, tune=kw.pop("tune", "loo"))
    return run_benchmark(cfg, out, dataset=dataset, progress=False, **kw)


def test_loo_rows_failures_and_columns(plugin_site, dataset, tmp_path):
    table = _run(dataset, tmp_path / "run")
    rows = read_table(table)
    assert set(rows[0]) == set(COLUMNS)
    ok = [r for r in rows if r["method"] == "example-threshold"]
    assert len(ok) == 3 * 2  # 3 held-out recordings x 2 graders
    assert {r["fold"] for r in ok} == {0, 1, 2}
    for r in ok:
        assert r["status"] == "ok" and 0 <= r["f1"] <= 1 and r["frames"] == 30 and r["frames_per_s"] > 0
        held, tuned = r["recording"], r["tuned_on"].split(";")
        assert held not in tuned and len(tuned) == 2  # tuned on the others only
        assert np.isfinite(r["tune_mean_f1"]) and r["params_hash"]
    bad = [r for r in rows if r["method"] == "example-raises"]
    assert bad and all(r["status"] == "error" and "always fails" in r["error"] for r in bad)
    # The tuned choice is the grid point with the best mean F1 on the other recordings.
    assert any((tmp_path / "run" / "units" / "example-threshold").rglob("masks.npz"))
    assert any((tmp_path / "run" / "units" / "example-threshold").rglob("unit.json"))


def test_killed_run_resumes_without_recomputing(plugin_site, dataset, tmp_path, monkeypatch):
    calls = []
    real = jobs.run_in_worker

    def counting(*a, **k):
        calls.append(a[0])
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed midway
        return real(*a, **k)

    monkeypatch.setattr(jobs, "run_in_worker", counting)
    with pytest.raises(KeyboardInterrupt):
        _run(dataset, tmp_path / "run", methods=("example-threshold",))
    first = len(calls)
    assert first == 4
    calls.clear()
    monkeypatch.setattr(jobs, "run_in_worker", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    table = _run(dataset, tmp_path / "run", methods=("example-threshold",))
    n_units = 3 * 6  # recordings x grid points (k: 3 values x min_area: 2 values)
    assert len(calls) == n_units - 3  # the 3 finished before the kill are not run again
    assert len(read_table(table)) == 6
    calls.clear()
    _run(dataset, tmp_path / "run", methods=("example-threshold",))
    assert calls == []  # everything done


def test_output_folder_of_another_run_is_refused(plugin_site, dataset, tmp_path):
    _run(dataset, tmp_path / "run", methods=("example-threshold",), tune="none")
    with pytest.raises(InputError, match="different run.*--resume.*--force"):
        _run(dataset, tmp_path / "run", methods=("example-raises",), tune="none")
    _run(dataset, tmp_path / "run", methods=("example-raises",), tune="none", force=True)
    assert {r["method"] for r in read_table(tmp_path / "run" / "results.csv")} == {"example-raises"}


def test_report_is_a_pure_function_of_the_table(plugin_site, dataset, tmp_path):
    table = _run(dataset, tmp_path / "run")
    a = make_report(table, tmp_path / "rep1")
    b = make_report(table, tmp_path / "rep2")
    for name in ("report.md", "summary.csv", "report.html", "scores.svg", "f1_vs_speed.svg", "scores.png"):
        assert (tmp_path / "rep1" / name).read_bytes() == (tmp_path / "rep2" / name).read_bytes(), name
    text = a.read_text()
    assert "| example-threshold |" in text and "## Failures" in text and "always fails" in text
    assert "smallest attainable p" in text and b.exists()


def test_report_refuses_tables_with_missing_columns(tmp_path):
    write_table([{"run_id": "x"}], tmp_path / "results.csv")
    text = (tmp_path / "results.csv").read_text().replace("f1,", "")
    (tmp_path / "results.csv").write_text(text)
    with pytest.raises(InputError, match="lacks column"):
        make_report(tmp_path / "results.csv", tmp_path / "rep")
    assert main(["report", str(tmp_path / "results.csv")]) == 2


def test_cli_run_unknown_names_suggest(capsys):
    assert main(["run", "--dataset", "synthetc"]) in (0, 2)
    err = capsys.readouterr()
    assert "did you mean" in err.err or "no data set registered" in err.out
    assert main(["run", "--methods", "filez"]) in (0, 2)


def test_hang_and_memory_hog_become_rows_and_other_results_are_kept(plugin_site, dataset, tmp_path):
    methods = ("example-threshold", "example-hangs", "example-hog")
    table = _run(dataset, tmp_path / "run", methods=methods, tune="none", timeout_s=4, memory_mb=600)
    rows = read_table(table)
    status = {(r["method"], r["recording"]): r["status"] for r in rows}
    assert {status[("example-hangs", r.name)] for r in dataset} == {"timeout"}
    assert {status[("example-hog", r.name)] for r in dataset} == {"memory"}
    ok = [r for r in rows if r["method"] == "example-threshold"]
    assert ok and all(r["status"] == "ok" and r["f1"] > 0 for r in ok)


def test_sigterm_kills_the_worker(plugin_site, tmp_path):
    """A terminated run leaves no worker behind (workers run in their own session)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from datasets.user import add_recording

    movie = tmp_path / "movie.npy"
    np.save(movie, np.random.default_rng(0).poisson(100, (20, 24, 24)).astype(np.uint16))
    env = {**os.environ, "BENCH_DATA": str(tmp_path / "data")}
    add_recording("termtest", movie, fps=10.0, um_per_px=1.0, root=tmp_path / "data")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--dataset",
            "termtest",
            "--methods",
            "example-hangs",
            "--tune",
            "none",
            "--split",
            "all",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
            "--no-report",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def workers():
        out = subprocess.run(["pgrep", "-f", "methods.worker"], capture_output=True, text=True).stdout.split()
        mine = []
        for pid in out:
            try:
                if str(tmp_path) in open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"):
                    mine.append(pid)
            except OSError:
                continue
        return mine

    deadline = time.monotonic() + 60
    while not workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers(), "the worker never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert workers() == []


def test_corrupt_run_record_and_unit_record_are_set_aside_and_nothing_is_lost(plugin_site, dataset, tmp_path,
                                                                              monkeypatch, caplog):
    out = tmp_path / "run"
    _run(dataset, out, methods=("example-threshold",), tune="none")
    (out / "run.json").write_text("{ not json")
    unit = sorted(out.glob("units/*/*/*/unit.json"))[0]
    unit.write_text("\x00\x01 garbage")
    calls = []
    real = jobs.run_in_worker
    monkeypatch.setattr(jobs, "run_in_worker", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    with caplog.at_level("WARNING"):
        rows = read_table(_run(dataset, out, methods=("example-threshold",), tune="none"))
    assert len(calls) == 1  # only the unit whose record was corrupt runs again
    assert list(out.glob("run.json.corrupt-*")) and list(unit.parent.glob("unit.json.corrupt-*"))
    assert "set aside" in caplog.text and {r["status"] for r in rows} == {"ok"}


def test_a_failed_unit_leaves_a_row_without_ground_truth_too(plugin_site, dataset, tmp_path):
    rec = dataset.recordings[0]
    bare = Dataset("bare", [Recording("nogt", rec.movie, rec.fps, rec.um_per_px, split="test")])
    cfg = RunConfig(dataset="bare", methods=("example-raises", "example-threshold"), tune="none")
    rows = read_table(run_benchmark(cfg, tmp_path / "run", dataset=bare, progress=False))
    by = {r["method"]: r for r in rows}
    assert by["example-raises"]["status"] == "error" and "always fails" in by["example-raises"]["error"]
    assert by["example-threshold"]["status"] == "ok" and by["example-threshold"]["grader"] in ("", None)


def test_stale_worker_folders_of_a_killed_run_are_removed(tmp_path):
    from methods.worker import WORK_PREFIX, clean_stale_workdirs

    dead = tmp_path / f"{WORK_PREFIX}dead"
    dead.mkdir()
    (dead / "owner.pid").write_text(str(2**22 + 12345))  # above Linux's largest pid: no such process
    alive = tmp_path / f"{WORK_PREFIX}alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(__import__("os").getpid()))
    assert clean_stale_workdirs(tmp_path) == 1
    assert not dead.exists() and alive.exists()
