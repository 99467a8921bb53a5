"""bench run on Dask: a LocalCluster on 127.0.0.1 gives the local executor's table; lost workers are survived."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time

import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

from bench.cluster import DaskExecutor, job_script, read_cluster_config  # noqa: E402
from bench.executors import Task  # noqa: E402
from bench.harness import RunConfig, run_benchmark  # noqa: E402
from bench.results import read_table  # noqa: E402
from datasets.errors import InputError  # noqa: E402

#: Columns that legitimately differ between executors.
_VARYING = {"run_id", "init_s", "process_s", "io_s", "frames_per_s", "peak_memory_mb", "hardware", "versions"}


@pytest.fixture
def local_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def _config():
    return RunConfig("synthetic-tiny", ("stnn", "unet2ds"), tune="loo", split="all", train="shipped", max_grid=2)


def _comparable(rows):
    out = []
    for r in rows:
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in r.items() if k not in _VARYING})
    return sorted(out, key=lambda r: (r["method"], r["recording"], r["grader"]))


@pytest.mark.slow
def test_dask_table_equals_the_local_table(local_cluster, tmp_path):
    _, client = local_cluster
    local = read_table(run_benchmark(_config(), tmp_path / "local", progress=False))
    dask = read_table(run_benchmark(_config(), tmp_path / "dask", progress=False, executor=DaskExecutor(client=client)))
    assert {r["status"] for r in dask} == {"ok"}
    assert _comparable(dask) == _comparable(local)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(local_cluster, tmp_path):
    _, client = local_cluster
    pids = client.run(os.getpid)
    out = tmp_path / "dask"

    def kill_one_when_work_started():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("stages/*/*/*/unit.json")):
            time.sleep(0.2)
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    killer = threading.Thread(target=kill_one_when_work_started, daemon=True)
    killer.start()
    rows = read_table(run_benchmark(_config(), out, progress=False, executor=DaskExecutor(client=client)))
    killer.join(timeout=5)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows if r["status"] != "ok"]
    keys = [(r["method"], r["recording"], r["grader"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2  # methods x recordings x graders, nothing duplicated
    assert len(list(out.glob("units/*/*/*/unit.json"))) == 2 * 2 * 2  # every grid point stored once


def test_slurm_job_script_from_a_cluster_config(tmp_path):
    cfg = tmp_path / "slurm.toml"
    cfg.write_text(
        'cores = 8\nmemory = "32GB"\nqueue = "gpu"\nwalltime = "04:00:00"\naccount = "lab"\nprocesses = 1\n'
        'job_extra_directives = ["--gres=gpu:1"]\nworker_extra_args = ["--resources", "GPU=1"]\nn_workers = 4\n'
    )
    script = job_script("slurm", read_cluster_config(cfg, "slurm"))
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:00:00",
                 "#SBATCH --gres=gpu:1", "--resources GPU=1", "tcp://127.0.0.1:8786"):
        assert line in script, line


def test_cluster_config_with_unknown_keys_is_refused(tmp_path):
    cfg = tmp_path / "slurm.toml"
    cfg.write_text('cores = 8\nwaltime = "01:00:00"\n')
    with pytest.raises(InputError, match=r"unknown key\(s\) 'waltime'.*walltime"):
        read_cluster_config(cfg, "slurm")


def test_unreachable_scheduler_is_one_clear_error():
    ex = DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 2 s"):
        ex.run([Task("t", lambda: {"status": "ok"})], lambda t, r: None)
    assert time.monotonic() - t0 < 30  # no hang


def test_a_worker_without_the_suite_is_named():
    class FakeClient:
        def run(self, fn):
            return {"tcp://127.0.0.1:4000": {"bench": "No module named 'bench'"}}

    with pytest.raises(InputError, match=r"Dask worker tcp://127.0.0.1:4000 cannot import the suite's package 'bench'"):
        DaskExecutor._check_workers(FakeClient())
