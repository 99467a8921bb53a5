"""Running a benchmark's units on a Dask cluster (``bench run --executor dask``).

Units are tasks with files in and files out, which is what
``dask.distributed`` schedules and ``dask-jobqueue`` puts on SLURM, PBS, SGE
or LSF. Each task is a picklable :class:`bench.jobs.Job`; on the Dask worker
it starts the same isolated worker process as on a laptop (timeout, memory
limit, private HOME), writes into the run folder (which must be on a
filesystem every worker sees), and returns a small record that this process
scores and stores. A task's dependencies (fold training before its stages,
a stage before its post-processing points) are Dask dependencies; GPU units
ask for a ``GPU`` worker resource; a worker that dies has its tasks retried
elsewhere by the scheduler.

Dask and dask-jobqueue are the optional extra ``.[cluster]``, imported only here.
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.executors import Executor, Task, dependency_failure, topological
from datasets.errors import InputError

__all__ = ["DaskExecutor", "CLUSTERS", "make_cluster", "read_cluster_config", "job_script", "worker_check"]

log = logging.getLogger(__name__)

#: ``--cluster`` names and their dask-jobqueue classes.
CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
#: Keys of a cluster-config file that are not the job class's own.
_CLUSTER_KEYS = ("n_workers",)
#: What a Dask worker must be able to import to run the suite's units.
SUITE_PACKAGES = ("bench", "methods", "datasets", "stnn")

INSTALL_HINT = 'pip install -e ".[cluster]"'


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise InputError(
            "--executor dask needs the Python packages dask and distributed", hint=f"install them with: {INSTALL_HINT}"
        ) from None
    return distributed


def read_cluster_config(path: str | Path, kind: str) -> dict[str, Any]:
    """Keyword arguments of a dask-jobqueue cluster from a TOML file, unknown keys refused.

    The file's keys are those of the cluster's job class (``cores``, ``memory``,
    ``queue``, ``account``, ``walltime``, ``job_extra_directives``,
    ``worker_extra_args`` ...), plus ``n_workers`` (jobs started at once).
    """
    import tomllib

    path = Path(path)
    if kind not in CLUSTERS:
        raise InputError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {kind!r}")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("cluster-config file not found", path=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable cluster-config file ({exc})", path=path) from None
    allowed = _allowed_keys(kind)
    unknown = sorted(set(data) - allowed)
    if unknown:
        from datasets.registry import closest

        raise InputError(
            f"cluster-config has unknown key(s) {', '.join(map(repr, unknown))} for --cluster {kind}",
            path=path,
            hint=closest(unknown[0], sorted(allowed)) or f"known: {', '.join(sorted(allowed))}",
        )
    return data


def _cluster_class(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise InputError(
            "--cluster needs the Python package dask-jobqueue", hint=f"install it with: {INSTALL_HINT}"
        ) from None
    return getattr(dask_jobqueue, CLUSTERS[kind])


def _allowed_keys(kind: str) -> set[str]:
    from dask_jobqueue.core import Job, JobQueueCluster

    cls = _cluster_class(kind)
    keys: set[str] = set(_CLUSTER_KEYS)
    for fn in (cls.job_cls.__init__, Job.__init__, JobQueueCluster.__init__):
        keys |= {p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return keys - {"self", "scheduler", "name", "config_name", "job_cls", "loop", "security", "shared_temp_directory"}


def job_script(kind: str, config: Mapping[str, Any], scheduler: str = "tcp://127.0.0.1:8786") -> str:
    """The batch script one worker job would be submitted with (no cluster is started)."""
    cls = _cluster_class(kind)
    job_keys = _allowed_keys(kind) - set(_CLUSTER_KEYS)
    from dask_jobqueue.core import JobQueueCluster

    cluster_only = set(inspect.signature(JobQueueCluster.__init__).parameters)
    kwargs = {k: v for k, v in config.items() if k in job_keys and k not in cluster_only}
    return cls.job_cls(scheduler=scheduler, name="bench-worker", **kwargs).job_script()


def make_cluster(kind: str, config: Mapping[str, Any]):
    """A dask-jobqueue cluster (not yet scaled) from validated config."""
    cls = _cluster_class(kind)
    kwargs = {k: v for k, v in config.items() if k not in _CLUSTER_KEYS}
    return cls(**kwargs)


def worker_check() -> dict[str, str]:
    """On a Dask worker: the suite's packages it cannot import, with why."""
    import importlib

    missing = {}
    for name in SUITE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing[name] = str(exc)
    return missing


def _run_task(fn: Callable[[], dict], deps: Mapping[str, dict]) -> dict:
    """On a Dask worker: the task, unless one of its dependencies failed (Dask passes their records)."""
    for dep_id, record in deps.items():
        if record.get("status") != "ok":
            return dependency_failure(dep_id, record)
    return fn()


class DaskExecutor(Executor):
    """Tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:8786``).
    cluster : {"slurm", "pbs", "sge", "lsf"}, optional
        Start a dask-jobqueue cluster instead, configured by ``cluster_config``.
    cluster_config : str or Path, optional
        TOML file of the cluster's settings (see :func:`read_cluster_config`).
    client : distributed.Client, optional
        Use this client (tests, notebooks).
    connect_timeout_s : float
        How long to wait for the scheduler before giving up.
    retries : int
        Extra attempts of a task that raised on its worker.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        cluster: str | None = None,
        cluster_config: str | Path | None = None,
        client=None,
        connect_timeout_s: float = 30.0,
        retries: int = 2,
    ):
        if client is None and not scheduler and not cluster:
            raise InputError("--executor dask needs --scheduler ADDRESS or --cluster KIND --cluster-config FILE")
        if cluster and not cluster_config:
            raise InputError(f"--cluster {cluster} needs --cluster-config FILE")
        self.scheduler, self.cluster, self.client = scheduler, cluster, client
        self.config = read_cluster_config(cluster_config, cluster) if cluster else None
        self.connect_timeout_s, self.retries = connect_timeout_s, retries

    def _connect(self):
        distributed = _require_dask()
        if self.client is not None:
            return self.client, None
        if self.cluster:
            cl = make_cluster(self.cluster, self.config)
            cl.scale(jobs=int(self.config.get("n_workers", 1)))
            return distributed.Client(cl, timeout=self.connect_timeout_s), cl
        try:
            return distributed.Client(self.scheduler, timeout=self.connect_timeout_s), None
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"cannot reach the Dask scheduler at {self.scheduler} within {self.connect_timeout_s:g} s "
                f"({type(exc).__name__})",
                hint="check the address and that the scheduler runs (dask scheduler), or use --executor local",
            ) from None

    def run(self, tasks: Sequence[Task], on_done: Callable[[Task, dict], None]) -> None:
        distributed = _require_dask()
        client, cluster = self._connect()
        try:
            self._check_workers(client)
            by_id = {t.id: t for t in tasks}
            futures: dict[str, Any] = {}
            run = uuid.uuid4().hex[:8]
            for t in topological(tasks, by_id):
                if t.remote is None:
                    raise ValueError(f"task {t.id} has no picklable form for a cluster")
                deps = {d: futures[d] for d in t.deps if d in futures}
                futures[t.id] = client.submit(
                    _run_task, t.remote, deps,
                    key=_dask_key(t.id, run), pure=False, retries=self.retries, resources=t.resources or None,
                )
            owner = {f.key: by_id[i] for i, f in futures.items()}
            for fut in distributed.as_completed(list(futures.values())):
                task = owner[fut.key]
                try:
                    record = fut.result()
                except Exception as exc:  # noqa: BLE001 - a task that failed on every attempt is a failure row
                    record = {"status": "crash", "error": f"on the Dask cluster: {type(exc).__name__}: {exc}"}
                on_done(task, record)
        finally:
            if self.client is None:
                client.close()
            if cluster is not None:
                cluster.close()

    @staticmethod
    def _check_workers(client) -> None:
        problems = client.run(worker_check)
        for address, missing in problems.items():
            if missing:
                name, why = next(iter(missing.items()))
                raise InputError(
                    f"Dask worker {address} cannot import the suite's package '{name}' ({why})",
                    hint="install the suite in the workers' environment (pip install -e .) or share its folder",
                )


def _dask_key(task_id: str, run: str) -> str:
    return f"bench-{run}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)
