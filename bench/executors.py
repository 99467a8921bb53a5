"""Executors: they run a run's tasks in dependency order and never know what a method does.

A :class:`Task` is an id, the ids it depends on and a callable returning a
record (a dict with at least ``status``). An executor calls each task once
all its dependencies have finished with status ``ok``; a task whose
dependency failed is not run, and is reported with status ``error`` naming
the failed dependency.

- :class:`LocalExecutor`: threads on this machine, each task starting its
  own isolated worker process (``methods.worker``); the default.
- :class:`bench.cluster.DaskExecutor`: tasks on a ``dask.distributed``
  cluster (an existing scheduler, or SLURM/PBS/SGE/LSF via dask-jobqueue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from datasets.errors import InputError

__all__ = ["Task", "Executor", "LocalExecutor", "dependency_failure"]

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One unit of work.

    Attributes
    ----------
    id : str
        Unique within the run (``train/...``, ``stage/...``, ``unit/...``).
    fn : callable
        Returns the unit's record (a dict with ``status``); must not raise
        for failures of the method itself.
    deps : tuple of str
        Ids of tasks that must succeed first (tasks not in the list are
        taken as already done).
    label : str
        Shown in the progress bar.
    resources : dict
        What a worker must offer (``{"GPU": 1}`` for GPU units), for cluster executors.
    remote : callable, optional
        A picklable equivalent of ``fn`` for executors that run tasks on other
        machines (no progress display, no local cancellation).
    """

    id: str
    fn: Callable[[], dict]
    deps: tuple[str, ...] = ()
    label: str = ""
    resources: dict = field(default_factory=dict)
    remote: Callable[[], dict] | None = None


def dependency_failure(task: Task, dep: str, record: dict) -> dict:
    """The record of a task not run because ``dep`` failed."""
    return {"status": "error", "error": f"not run: {dep} failed ({record.get('status')}: {record.get('error', '')})"}


class Executor:
    """Runs tasks; ``on_done(task, record)`` is called in the caller's thread as each finishes."""

    def run(self, tasks: Sequence[Task], on_done: Callable[[Task, dict], None]) -> None:  # pragma: no cover
        raise NotImplementedError


def _check_graph(tasks: Sequence[Task]) -> None:
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique")


class LocalExecutor(Executor):
    """Threads on this machine: at most ``jobs`` tasks at once.

    Parameters
    ----------
    jobs : int
        Tasks running at once (each starts its own worker process).
    """

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise InputError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = jobs

    def run(self, tasks: Sequence[Task], on_done: Callable[[Task, dict], None]) -> None:
        _check_graph(tasks)
        if self.jobs == 1:
            return self._run_inline(tasks, on_done)
        by_id = {t.id: t for t in tasks}
        pending = list(tasks)
        results: dict[str, dict] = {}
        running: dict[Future, Task] = {}
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            while pending or running:
                # Start what is ready, in plan order (training before stages before units).
                still = []
                for t in pending:
                    waiting = [d for d in t.deps if d in by_id and d not in results]
                    failed = next((d for d in t.deps if d in results and results[d].get("status") != "ok"), None)
                    if failed is not None:
                        results[t.id] = dependency_failure(t, failed, results[failed])
                        on_done(t, results[t.id])
                    elif waiting or len(running) >= self.jobs:
                        still.append(t)
                    else:
                        running[pool.submit(t.fn)] = t
                pending = still
                if not running:
                    if pending:  # a dependency cycle or a missing task: cannot happen with plan_run
                        raise RuntimeError(f"tasks wait on each other: {[t.id for t in pending][:3]}")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    t = running.pop(fut)
                    results[t.id] = fut.result()
                    on_done(t, results[t.id])
        except BaseException:
            # Interrupted: queued tasks must not start; finished ones are already stored.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    @staticmethod
    def _run_inline(tasks: Sequence[Task], on_done: Callable[[Task, dict], None]) -> None:
        """One task at a time in this thread (Ctrl-C and SIGTERM reach the running worker's supervisor)."""
        by_id = {t.id: t for t in tasks}
        results: dict[str, dict] = {}
        order = _topological(tasks, by_id)
        for t in order:
            failed = next((d for d in t.deps if d in results and results[d].get("status") != "ok"), None)
            results[t.id] = dependency_failure(t, failed, results[failed]) if failed is not None else t.fn()
            on_done(t, results[t.id])


def _topological(tasks: Sequence[Task], by_id: dict[str, Task]) -> list[Task]:
    """Tasks in plan order, each after the tasks it depends on."""
    out: list[Task] = []
    seen: set[str] = set()

    def visit(t: Task, path: tuple[str, ...]) -> None:
        if t.id in seen:
            return
        if t.id in path:
            raise RuntimeError(f"tasks wait on each other: {t.id}")
        for d in t.deps:
            if d in by_id:
                visit(by_id[d], (*path, t.id))
        seen.add(t.id)
        out.append(t)

    for t in tasks:
        visit(t, ())
    return out
