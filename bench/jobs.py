"""What one task sends to a worker, and how it runs: picklable, so any executor can move it.

A :class:`Job` holds only specs and paths (recordings by
:meth:`~datasets.records.Recording.to_spec`, ground truth of training
recordings as files, stage and output folders on the run's filesystem), so a
Dask worker on another machine runs it as this machine would. The parent
scores and stores what comes back (:mod:`bench.harness`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets.masks import Masks
from datasets.records import Recording
from methods.worker import WorkerLimits, WorkerResult, run_in_worker

__all__ = ["Job", "execute_job"]


@dataclass(frozen=True)
class Job:
    """One worker run.

    Attributes
    ----------
    action : {"train", "prepare", "finish", "segment"}
    ref : str
        Method reference.
    recording : dict or None
        :meth:`Recording.to_spec` of the recording (None for training).
    params : dict
        Method parameters (training: ``{"device": ...}``).
    stage : str or None
        Stage folder (prepare, finish) or training folder.
    out : str or None
        Folder the segmentation is saved into (finish, segment).
    training : tuple of (dict, str)
        Training recordings' specs and their ground-truth ``.npz`` files.
    settings : dict
        Training settings.
    limits : WorkerLimits
    """

    action: str
    ref: str
    recording: dict | None
    params: dict
    stage: str | None = None
    out: str | None = None
    training: tuple = ()
    settings: dict = field(default_factory=dict)
    limits: WorkerLimits = WorkerLimits()


def execute_job(
    job: Job, on_poll: Callable[[Path], None] | None = None, cancel: threading.Event | None = None
) -> dict:
    """Run ``job`` in an isolated worker process; its record (``status``, ``error``, timings, ``info``).

    A segmentation is saved into ``job.out`` before the record is returned.
    """
    rec = Recording.from_spec(job.recording) if job.recording is not None else None
    training = [(Recording.from_spec(spec), Masks.load(gt)) for spec, gt in job.training]
    res: WorkerResult = run_in_worker(
        job.ref,
        rec,
        job.params,
        limits=job.limits,
        action=job.action,
        stage=Path(job.stage) if job.stage else None,
        training=training,
        settings=job.settings,
        on_poll=on_poll,
        cancel=cancel,
    )
    record = {"status": res.status, "error": res.message, "peak_memory_mb": res.peak_memory_mb,
              "wall_s": res.wall_s, "info": res.info}
    if res.segmentation is not None and job.out is not None:
        res.segmentation.save(job.out, maps=False)
    return record
