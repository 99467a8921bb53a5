"""The benchmark run: plan units, execute them, score each once, tune, tabulate.

The unit model (see ``README.md``, "How a run works"):

```
plan ──▶ units (+ dependencies) ──▶ executor (local processes | dask.distributed | dask-jobqueue)
  │         train(method, fold's training recordings, schedule)   ──▶ weights      (cached by key, resumable)
  │         stage(method, recording, weights, expensive params)   ──▶ stage result (e.g. probability maps)
  │         segment(method, stage result, cheap params)           ──▶ Segmentation (saved by itself)
  └──▶ score (once per finished unit, stored with it) ──▶ tune (pure) ──▶ tables ──▶ report
```

- :mod:`bench.plan` makes the units and validates every parameter first;
- :mod:`bench.units` keys them and stores their results (a finished unit is
  reused by a resumed run; a corrupt record is set aside and recomputed);
- :mod:`bench.executors` runs them in dependency order;
- :mod:`bench.scoring` scores a unit when it finishes; :mod:`bench.tuning`
  chooses leave-one-out parameter points from stored scores;
  :mod:`bench.tables` makes the rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.environment import environment, hardware_summary
from bench.executors import Executor, LocalExecutor, Task
from bench.jobs import Job, execute_job
from bench.metrics import match
from bench.online import score_snapshots, write_online_csv
from bench.plan import Plan, RunConfig, plan_run, select_methods, split_label
from bench.results import atomic_write_text, write_table
from bench.scoring import score_masks
from bench.tables import result_rows
from bench.units import SegmentUnit, StageUnit, TrainUnit, UnitStore, WeightsCache, params_hash, safe_name
from datasets.errors import InputError
from datasets.records import Dataset, Recording
from datasets.registry import data_root
from datasets.registry import get as get_dataset
from methods.base import Segmentation
from methods.worker import WorkerLimits, clean_stale_workdirs, progress_line

__all__ = ["RunConfig", "run_benchmark", "select_methods", "params_hash", "split_label"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- run folder
def _check_out_dir(out: Path, config: RunConfig, resume: bool, force: bool) -> dict:
    if out.exists() and not out.is_dir():
        raise InputError("--out names a file, expected a folder", path=out)
    meta_path = out / "run.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            previous = meta["config"]
        except (OSError, ValueError, KeyError, TypeError):
            aside = meta_path.with_name(f"run.json.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            meta_path.replace(aside)
            log.warning("%s is unreadable: set aside as %s; finished units are kept and reused", meta_path, aside.name)
            meta, previous = None, None
        if meta is not None and not force:
            # Fields added to RunConfig since that run was written count as their defaults.
            if {**RunConfig(config.dataset, ()).as_dict(), "methods": [], **previous} == config.as_dict() or resume:
                return meta
            raise InputError(
                f"holds the results of a different run (data set {previous.get('dataset')}, "
                f"methods {','.join(previous.get('methods', []))}, tune {previous.get('tune')})",
                path=out,
                hint="choose another --out, or --resume to add to it, or --force to replace it",
            )
        if meta is not None and force:
            for p in sorted(out.rglob("*"), reverse=True):
                if p.is_file() or p.is_symlink():
                    p.unlink()
                elif p.is_dir():
                    p.rmdir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out: cannot create the folder ({exc.strerror or exc})", path=out) from None
    return {"run_id": uuid.uuid4().hex[:12], "config": config.as_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---------------------------------------------------------------------------- tasks
class _Runner:
    """Makes the tasks of a plan (picklable jobs) and stores what they return, in this process."""

    def __init__(self, plan: Plan, config: RunConfig, ds: Dataset, store: UnitStore, cache: WeightsCache,
                 timeout_s: float | None, memory_mb: float | None, bar):
        self.plan, self.config, self.ds, self.store, self.cache = plan, config, ds, store, cache
        self.timeout_s, self.memory_mb, self.bar = timeout_s, memory_mb, bar
        #: Set when the run is interrupted: running workers are killed, nothing more is stored.
        self.cancel = threading.Event()
        self.units = {u.id: u for u in (*plan.trains, *plan.stages, *plan.units)}

    def _limits(self, label: str, train: bool = False) -> WorkerLimits:
        m = self.plan.adapters[label]
        default = m.train_timeout_s if train else m.default_timeout_s
        return WorkerLimits(timeout_s=self.timeout_s or default, memory_mb=self.memory_mb)

    def _spec(self, rec: Recording) -> dict:
        # An in-memory movie is written once into the run folder, where every worker can read it.
        spill = self.store.root / "movies" / safe_name(rec.name)
        spill.mkdir(parents=True, exist_ok=True)
        return rec.to_spec(spill=spill)

    # ---------------------------------------------------------------- jobs
    def train_job(self, u: TrainUnit) -> Job:
        folder = self.cache.folder(u)
        (folder / "ground-truth").mkdir(parents=True, exist_ok=True)
        training = []
        for r in u.recordings:
            gt = folder / "ground-truth" / f"{safe_name(r.name)}.npz"
            r.ground_truth(u.grader).save(gt)
            training.append((self._spec(r), str(gt)))
        return Job("train", self.plan.refs[u.method], None, {"device": u.device}, stage=str(folder),
                   training=tuple(training), settings=u.settings, limits=self._limits(u.method, train=True))

    def stage_job(self, u: StageUnit) -> Job:
        folder = self.store.stage_folder(u)
        folder.mkdir(parents=True, exist_ok=True)
        return Job("prepare", self.plan.refs[u.method], self._spec(u.recording), u.params, stage=str(folder),
                   limits=self._limits(u.method))

    def segment_job(self, u: SegmentUnit) -> Job:
        stage = str(self.store.stage_folder(u.stage)) if u.stage is not None else None
        return Job("finish" if stage else "segment", self.plan.refs[u.method], self._spec(u.recording), u.params,
                   stage=stage, out=str(self.store.folder(u)), limits=self._limits(u.method))

    def local(self, job: Job, u) -> Callable[[], dict]:
        """The task's callable on this machine: progress shown, interruption honoured."""

        def show(work: Path) -> None:
            line = progress_line(work)
            if line:
                self.bar.set_postfix_str(f"training {u.method} ({u.fold}): {line}", refresh=True)

        poll = show if isinstance(u, TrainUnit) else None
        return partial(execute_job, job, on_poll=poll, cancel=self.cancel)

    # ---------------------------------------------------------------- results (parent only)
    def store_result(self, task_id: str, record: dict) -> dict:
        """Store what a task returned (a derived failure too); the unit's record for the tables."""
        u = self.units[task_id]
        info = {k: v for k, v in record.items() if k != "info"}
        info.update(record.get("info") or {})
        if isinstance(u, TrainUnit):
            folder = self.cache.folder(u)
            if info["status"] == "ok" and not (folder / str(info.get("weights", ""))).is_file():
                info.update(status="error", error=f"training wrote no weights file {info.get('weights')!r}")
            return self.cache.save(u, info)
        if isinstance(u, StageUnit):
            if "peak_memory_mb" in record:  # a stage that ran (not one skipped after a failed training)
                self.store.save_stage_record(u, {**info, "params": u.params})
            return info
        return self._store_segment(u, info, ran="peak_memory_mb" in record)

    def _store_segment(self, u: SegmentUnit, outcome: dict, ran: bool) -> dict:
        seg = Segmentation.load(self.store.folder(u)) if outcome["status"] == "ok" else None
        info = {
            "method": u.method,
            "recording": u.recording.name,
            "point": u.point,
            "params": seg.params if seg else u.params,
            "status": outcome["status"],
            "error": outcome.get("error", ""),
            "peak_memory_mb": outcome.get("peak_memory_mb", math.nan),
            "wall_s": outcome.get("wall_s", math.nan),
            "init_s": seg.init_s if seg else math.nan,
            "process_s": seg.process_s if seg else math.nan,
            "io_s": seg.io_s if seg else math.nan,
            "frames": seg.n_frames if seg else u.recording.n_frames,
            "versions": seg.versions if seg else {},
            "stage": u.stage.key if u.stage else None,
            "weights_key": u.train.key if u.train else None,
        }
        if seg is not None:
            if u.stage is not None:  # the expensive stage's peak memory counts too
                st = self.store.stage_record(u.stage) or {}
                info["peak_memory_mb"] = max(info["peak_memory_mb"], st.get("peak_memory_mb", 0.0))
            info["scores"] = {self.config.rule: score_masks(u.recording, seg.masks, self.config.rule)}
            grader = self.ds.grader_for(u.recording)
            if seg.snapshots and grader is not None:  # an online method: F1 against time into the recording
                info["online"] = score_snapshots(u.method, u.recording.name, seg.snapshots,
                                                 u.recording.ground_truth(grader), grader=grader, rule=self.config.rule)
        if ran:  # else not run because a dependency failed: derived, not stored
            info = self.store.save(u, info, None)  # the segmentation's files are already in its folder
        if seg is not None:
            info["masks"] = seg.masks
        return info


def _tasks(plan: Plan, runner: _Runner, retry_failed: bool) -> tuple[list[Task], dict, dict]:
    """Tasks for the units not done yet; the records of those done (segment units, training)."""
    tasks: list[Task] = []
    records: dict[str, dict] = {}
    trained: dict[str, dict] = {}
    gpu = {"GPU": 1} if runner.config.device == "cuda" else {}

    def done(info: dict | None) -> bool:
        return info is not None and (info["status"] == "ok" or not retry_failed)

    def task(u, job: Job, deps: tuple[str, ...], label: str, resources: dict) -> Task:
        return Task(u.id, runner.local(job, u), deps, label, resources, remote=partial(execute_job, job))

    for t in plan.trains:
        info = runner.cache.load(t)
        if done(info):
            trained[t.id] = info
        else:
            tasks.append(task(t, runner.train_job(t), (), f"train {t.method} {t.fold}", gpu))
    stage_failed: dict[str, dict] = {}
    for s in plan.stages:
        info = runner.store.stage_record(s)
        deps = (s.train.id,) if s.train is not None else ()
        if not done(info):
            tasks.append(task(s, runner.stage_job(s), deps, f"{s.method} {s.recording.name} (stage)", gpu))
        elif info["status"] != "ok":
            stage_failed[s.id] = info
    for u in plan.units:
        info = runner.store.load(u)
        if done(info):
            records[u.id] = info
            continue
        failed = next((d for d in u.deps if d in stage_failed), None)
        if failed is not None:  # its stage failed in an earlier attempt (not retried): a failure row
            records[u.id] = {"status": "error", "error": f"not run: {failed} failed: {stage_failed[failed]['error']}"}
            continue
        tasks.append(task(u, runner.segment_job(u), u.deps, f"{u.method} {u.recording.name}", {}))
    return tasks, records, trained


# ---------------------------------------------------------------------------- run
def run_benchmark(
    config: RunConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    jobs: int = 1,
    timeout_s: float | None = None,
    memory_mb: float | None = None,
    progress: bool = True,
    dataset: Dataset | None = None,
    analyse_psnr: bool = True,
    retry_failed: bool = False,
    executor: Executor | None = None,
    weights_root: Path | None = None,
) -> Path:
    """Plan, run, score and tabulate; returns the path of ``results.csv``.

    Parameters
    ----------
    config : RunConfig
        What to compute.
    out : Path
        Output folder: ``run.json``, ``results.csv``, ``units/``, ``stages/``.
    resume, force : bool
        Continue an output folder holding a different run; or start afresh,
        deleting what the folder holds.
    retry_failed : bool
        Run again the units that failed (crash, timeout, error) in an earlier attempt.
    jobs : int
        Units run at once by the default local executor.
    timeout_s, memory_mb : float, optional
        Per-unit limits (default: the method's ``default_timeout_s``, or
        ``train_timeout_s`` for training; no memory limit).
    progress : bool
        Show a progress bar (stderr).
    dataset : Dataset, optional
        Use this data set object instead of loading ``config.dataset``.
    analyse_psnr : bool
        Compute each GT neuron's PSNR (one pass over each movie) for the
        detection-versus-PSNR analysis.
    executor : Executor, optional
        Default: :class:`~bench.executors.LocalExecutor` with ``jobs``.
    weights_root : Path, optional
        Cache of weights trained in runs (default ``<data root>/trained``).
    """
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"--timeout must be > 0 seconds, got {timeout_s:g}")
    # Absolute: workers run in their own folders, so a relative --out would not resolve there.
    out = Path(out).resolve()
    executor = executor or LocalExecutor(jobs)
    ds = dataset if dataset is not None else get_dataset(config.dataset)
    recs = list(ds.recordings if config.split == "all" else ds.split(config.split)) or list(ds.recordings)
    cache = WeightsCache((Path(weights_root) if weights_root else data_root() / "trained").resolve())
    plan = plan_run(config, ds, recs, cache)  # bad parameters fail here, before anything runs or is written
    meta = _check_out_dir(out, config, resume, force)
    clean_stale_workdirs()
    env = environment()
    meta.update(environment=env, default_grader=ds.default_grader, train_modes=plan.train_modes, notes=plan.notes)
    atomic_write_text(out / "run.json", json.dumps(meta, indent=2))
    store = UnitStore(out)

    bar = _progress(progress)
    runner = _Runner(plan, config, ds, store, cache, timeout_s, memory_mb, bar)
    tasks, records, trained = _tasks(plan, runner, retry_failed)
    n_units = len(plan.trains) + len(plan.stages) + len(plan.units)
    bar.reset(total=n_units)
    bar.update(n_units - len(tasks))
    log.info("%d units (%d training, %d stages), %d to run", n_units, len(plan.trains), len(plan.stages), len(tasks))

    def on_done(task: Task, record: dict) -> None:
        info = runner.store_result(task.id, record)
        kind = task.id.split("/", 1)[0]
        if kind == "unit":
            records[task.id] = info
        elif kind == "train":
            trained[task.id] = info
        if info.get("status") != "ok":
            log.warning("%s failed (%s): %s", task.label, info.get("status"), info.get("error"))
        bar.set_postfix_str(task.label, refresh=False)
        bar.update(1)

    base = {"run_id": meta["run_id"], "dataset": config.dataset, "hardware": hardware_summary(env)}
    table = out / "results.csv"
    try:
        executor.run(tasks, on_done)
    except BaseException:
        runner.cancel.set()  # Ctrl-C or SIGTERM: kill the workers still running in other threads
        raise
    finally:
        bar.close()
        tables = result_rows(config, ds, recs, plan, records, trained, base)
        write_table(tables.rows, table)
    _side_tables(out, config, ds, recs, tables.chosen, analyse_psnr)
    return table


def _progress(enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=0, unit="unit", desc="bench run", disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------------- side tables
def _side_tables(out: Path, config: RunConfig, ds: Dataset, recs, chosen: dict, analyse_psnr: bool) -> None:
    """``neurons.csv`` (PSNR and detection per GT neuron), ``graders.csv`` and overlay material."""
    from bench.psnr import neuron_psnr

    neuron_rows = []
    for rec in recs:
        grader = ds.grader_for(rec)
        if grader is None:
            continue
        gt = rec.ground_truth(grader)
        psnr = np.full(gt.n, np.nan)
        if analyse_psnr and rec.movie is not None:
            cache = out / "psnr" / f"{safe_name(rec.name)}__{safe_name(grader)}.npy"
            if cache.is_file():
                psnr = np.load(cache)
            else:
                cache.parent.mkdir(exist_ok=True)
                psnr = neuron_psnr(rec, grader)
                np.save(cache, psnr)
        for method in (split_label(e)[0] for e in config.methods):
            info = chosen.get((method, rec.name))
            if info is None or info["status"] != "ok":
                continue
            hit = np.zeros(gt.n, bool)
            hit[info["scores"][config.rule][grader]["detected"]] = True
            neuron_rows += [
                {"dataset": config.dataset, "recording": rec.name, "grader": grader, "neuron": i,
                 "psnr": psnr[i], "method": method, "detected": int(hit[i])}
                for i in range(gt.n)
            ]
    _write_csv(out / "neurons.csv", neuron_rows, ("dataset", "recording", "grader", "neuron", "psnr", "method",
                                                  "detected"))
    grader_rows = []
    for rec in recs:
        for a, b in itertools.permutations(rec.graders, 2):
            s = match(rec.ground_truth(a), rec.ground_truth(b), rule=config.rule)
            grader_rows.append({"recording": rec.name, "reference": a, "grader": b, "n_reference": s.n_gt,
                                "n_grader": s.n_pred, "tp": s.tp, "recall": s.recall, "precision": s.precision,
                                "f1": s.f1})
    _write_csv(out / "graders.csv", grader_rows, ("recording", "reference", "grader", "n_reference", "n_grader",
                                                  "tp", "recall", "precision", "f1"))
    online = [row for info in chosen.values() for row in info.get("online", [])]
    if online:
        write_online_csv(online, out / "online.csv")
    _overlay_material(out, config, ds, recs, chosen)


def _overlay_material(out: Path, config: RunConfig, ds: Dataset, recs, chosen: dict) -> None:
    """Correlation image, GT and each method's masks for the first recording (the paper's Fig. 3A)."""
    from datasets.describe import summary_images

    rec = next((r for r in recs if r.movie is not None and ds.grader_for(r)), None)
    if rec is None:
        return
    folder = out / "overlay"
    folder.mkdir(exist_ok=True)
    img = folder / "correlation.npy"
    if not img.is_file():
        np.save(img, summary_images(rec.movie)["corr"].astype(np.float32))
    rec.ground_truth(ds.grader_for(rec)).save(folder / "gt.npz")
    if rec.crop is not None and any(rec.crop):
        atomic_write_text(folder / "crop.txt", ",".join(map(str, rec.crop)) + "\n")
    for method in (split_label(e)[0] for e in config.methods):
        info = chosen.get((method, rec.name))
        if info is not None and info["status"] == "ok":
            info["masks"].save(folder / f"method__{safe_name(method)}.npz")
    atomic_write_text(folder / "recording.txt", rec.name + "\n")


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
