"""Run one method on one recording in its own process.

Isolation is what lets a benchmark survive its methods: a crash, a hang past
the timeout or a run past the memory limit becomes a :class:`WorkerResult`
with a status and message, never an exception that stops the run. The worker
gets a private HOME, MPLCONFIGDIR, TMPDIR and CaImAn data folder (Suite2p and
CaImAn write into HOME), thread limits, and optionally another Python
interpreter (CaImAn needs numpy < 2 and TensorFlow).

Inputs and outputs travel as files: the job is a small JSON file naming the
movie file (never the frames), and the worker writes ``masks.npz``,
``result.json`` and, for methods that make them, ``probability_maps.npy``.
The worker never receives ground truth.

Interpreter per method: the environment variable ``BENCH_PYTHON_<NAME>``
(name upper-cased, ``-`` as ``_``, e.g. ``BENCH_PYTHON_CAIMAN_BATCH``) or the
``[python]`` table of the user config file ``$XDG_CONFIG_HOME/bench/config.toml``
(``caiman-batch = "/opt/conda/envs/caiman/bin/python"``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Recording
from methods.base import Segmentation, json_default, resolve_method

__all__ = ["WorkerLimits", "WorkerResult", "run_in_worker", "interpreter_for", "clean_stale_workdirs", "config_path",
           "user_config", "safe_name",
           "progress_line", "REPO_ROOT", "ACTIONS"]

log = logging.getLogger(__name__)

#: The folder holding the ``bench``, ``methods``, ``datasets`` and ``stnn`` packages;
#: put on PYTHONPATH so that another interpreter imports the same code.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: What a worker job can do.
ACTIONS = ("segment", "prepare", "finish", "train")
#: Prefix of job folders in the temporary directory (stale ones are removed at the next run).
WORK_PREFIX = "bench-worker-"

Status = Literal["ok", "error", "timeout", "memory", "crash"]
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True)
class WorkerLimits:
    """Limits of one worker run.

    Attributes
    ----------
    timeout_s : float
        Wall-clock limit; the whole process group is killed past it.
    memory_mb : float or None
        Resident-memory limit of the process group (sampled every 0.1 s).
    threads : int or None
        Value of OMP/MKL/OpenBLAS thread variables (default: all cores).
    python : str or None
        Interpreter to run the method under (default: configured, else this one).
    """

    timeout_s: float = 3600.0
    memory_mb: float | None = None
    threads: int | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise InputError(f"worker timeout must be > 0 s, got {self.timeout_s}")
        if self.memory_mb is not None and self.memory_mb <= 0:
            raise InputError(f"worker memory limit must be > 0 MB, got {self.memory_mb}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"worker threads must be >= 1, got {self.threads}")


@dataclass
class WorkerResult:
    """Outcome of one worker run: a segmentation, or why there is none."""

    status: Status
    message: str = ""
    segmentation: Segmentation | None = None
    peak_memory_mb: float = float("nan")
    wall_s: float = 0.0
    log_tail: str = field(default="", repr=False)
    #: What the job returned besides a segmentation (stage timings, training summary).
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def interpreter_for(method: str) -> str | None:
    """The Python interpreter configured for ``method``, or None for this one.

    Raises
    ------
    InputError
        When a configured interpreter does not exist.
    """
    env_name = "BENCH_PYTHON_" + method.upper().replace("-", "_").replace(":", "_")
    path = os.environ.get(env_name)
    source = env_name
    if not path:
        cfg = user_config().get("python", {})
        path = cfg.get(method)
        source = f"[python] {method} in {config_path()}"
    if not path:
        return None
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise InputError(
            f"method '{method}': configured interpreter {path} does not exist or is not executable",
            hint=f"set by {source}; point it at the python of the method's environment",
        )
    return path


def config_path() -> Path:
    """The suite's user configuration file: ``$XDG_CONFIG_HOME/bench/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bench" / "config.toml"


def user_config() -> dict:
    """The user configuration (``{}`` without a file); InputError for a damaged one."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML ({exc})", path=path) from exc


# ---------------------------------------------------------------------------- parent side
def run_in_worker(
    method: str,
    recording: Recording | None,
    params: dict,
    *,
    limits: WorkerLimits = WorkerLimits(),
    keep_dir: Path | None = None,
    action: str = "segment",
    stage: Path | None = None,
    training: Sequence[tuple[Recording, Masks]] = (),
    settings: dict | None = None,
    on_poll: Callable[[Path], None] | None = None,
    cancel: threading.Event | None = None,
) -> WorkerResult:
    """Run one job of ``method`` (a registry name, optionally ``name:ARG``) in a new process.

    Parameters
    ----------
    method : str
        Registered method name, e.g. ``"suite2p"`` or ``"files:out/{recording}.mat"``.
    recording : Recording or None
        Its movie must live in a file (:meth:`datasets.movies.Movie.to_spec`);
        an in-memory movie is written to a temporary ``.npy`` first. None for
        a training job.
    params : dict
        JSON-able parameters passed to the method.
    limits : WorkerLimits
        Timeout, memory, threads and interpreter.
    keep_dir : Path, optional
        Keep the job folder (job, log, outputs) here instead of deleting it.
    action : {"segment", "prepare", "finish", "train"}
        ``segment``: the whole method; ``prepare``: the expensive stage,
        written into ``stage``; ``finish``: the cheap stage, reading
        ``stage``; ``train``: train on ``training`` into ``stage`` with
        ``settings`` (``params`` holds ``device``).
    stage : Path, optional
        The stage folder (``prepare``, ``finish``) or the training folder.
    training : sequence of (Recording, Masks)
        Training recordings and the ground truth each is trained on.
    on_poll : callable, optional
        Called with the job folder about every second while the worker runs
        (progress display).
    cancel : threading.Event, optional
        When set (the run was interrupted), the worker is killed and
        :class:`InterruptedError` raised: nothing is reported as a result.

    Returns
    -------
    WorkerResult
        Never raises for failures of the method itself.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown worker action {action!r}")
    entry, arg = resolve_method(method)
    python = limits.python or interpreter_for(method.split(":", 1)[0]) or sys.executable
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX)) if keep_dir is None else Path(keep_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "owner.pid").write_text(str(os.getpid()))
    try:
        job = {
            "action": action,
            "entry": entry,
            "arg": arg,
            "method": method,
            "params": params,
            "recording": None if recording is None else _recording_spec(recording, work),
            "stage": None if stage is None else str(stage),
            "settings": settings or {},
            "training": [_training_spec(rec, gt, work, i) for i, (rec, gt) in enumerate(training)],
            "out": str(work / "out"),
        }
        return _run(job, limits, python, work, on_poll, cancel)
    finally:
        if keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def clean_stale_workdirs(root: Path | None = None) -> int:
    """Remove job folders left by a parent that was killed (``kill -9``); returns how many.

    A folder is stale when the process that made it (``owner.pid``) is gone.
    """
    root = Path(root or tempfile.gettempdir())
    removed = 0
    for d in root.glob(WORK_PREFIX + "*"):
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _alive(pid):
            continue
        if pid is None and time.time() - d.stat().st_mtime < 3600:
            continue  # being created right now, or from an older version: leave it an hour
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed %d stale worker folder(s) under %s", removed, root)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recording_spec(recording: Recording, work: Path) -> dict:
    # A movie held in memory is written into the job folder (in chunks); a file movie is reopened lazily.
    spill = work / f"spill-{safe_name(recording.name)}"
    spill.mkdir(exist_ok=True)
    return recording.to_spec(spill=spill)


def _recording_from_spec(spec: dict, ground_truth: Masks | None = None) -> Recording:
    rec = Recording.from_spec(spec)
    if ground_truth is not None:
        rec.ground_truths = {"default": ground_truth}
    return rec


def _training_spec(recording: Recording, gt: Masks, work: Path, i: int) -> dict:
    path = work / f"gt-{i:03d}.npz"
    gt.save(path)
    return {"recording": _recording_spec(recording, work), "gt": str(path)}


def safe_name(name: str) -> str:
    """A file-name-safe version of a method or recording name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _run(job: dict, limits: WorkerLimits, python: str, work: Path, on_poll, cancel) -> WorkerResult:
    home = work / "home"
    for sub in ("home", "tmp", "mpl", "out", "caiman"):
        (work / sub).mkdir(exist_ok=True)
    (work / "job.json").write_text(json.dumps(job, default=json_default))
    env = dict(os.environ)
    threads = str(limits.threads or os.cpu_count() or 1)
    env.update({v: threads for v in _THREAD_VARS})
    env.update(
        HOME=str(home),
        USERPROFILE=str(home),
        MPLCONFIGDIR=str(work / "mpl"),
        TMPDIR=str(work / "tmp"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        CAIMAN_DATA=str(work / "caiman"),
        CAIMAN_TEMP=str(work / "caiman"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
        # The worker runs in its job folder; relative paths given by the user mean the caller's folder.
        BENCH_ORIGIN_CWD=os.getcwd(),
    )
    logfile = work / "worker.log"
    start = time.perf_counter()
    with open(logfile, "wb") as logf:
        try:
            proc = subprocess.Popen(
                [python, "-m", "methods.worker", str(work / "job.json")],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(work),
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            return WorkerResult("crash", f"could not start {python}: {exc}", wall_s=0.0)
        try:
            poll = (lambda: on_poll(work)) if on_poll is not None else None
            status, message, peak = _supervise(proc, limits, poll, cancel)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM turned into SystemExit): the worker has its
            # own session, so it would outlive us unless killed here.
            _kill_group(proc)
            raise
    wall = time.perf_counter() - start
    tail = _tail(logfile)
    if status not in ("ok", "error"):
        return WorkerResult(status, message, None, peak, wall, tail)
    return _collect(work / "out", peak, wall, tail, proc.returncode, job["action"])


def progress_line(work: Path) -> str:
    """The last progress-bar state a worker printed (tqdm's ``\\r`` updates), or ''."""
    text = _tail(work / "worker.log", 600)
    last = text.replace("\n", "\r").split("\r")
    lines = [x.strip() for x in last if "it/s" in x or "s/it" in x or "%|" in x]
    return lines[-1] if lines else ""


def _supervise(proc: subprocess.Popen, limits: WorkerLimits, poll=None, cancel=None) -> tuple[str, str, float]:
    """Wait for the worker, enforcing the limits; returns (status, message, peak MB)."""
    deadline = time.monotonic() + limits.timeout_s
    peak_kb = 0
    rusage_kb = 0
    next_poll = time.monotonic() + 1.0
    while True:
        if cancel is not None and cancel.is_set():
            raise InterruptedError("the run was interrupted")  # the caller kills the group
        if poll is not None and time.monotonic() > next_poll:
            poll()
            next_poll = time.monotonic() + 1.0
        pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            rusage_kb = usage.ru_maxrss  # kB on Linux
            proc.returncode = os.waitstatus_to_exitcode(code)
            break
        rss = _group_rss_kb(proc.pid)
        peak_kb = max(peak_kb, rss)
        if limits.memory_mb is not None and rss > limits.memory_mb * 1024:
            _kill_group(proc)
            return (
                "memory",
                f"exceeded the memory limit of {limits.memory_mb:g} MB ({rss / 1024:.0f} MB resident)",
                rss / 1024,
            )
        if time.monotonic() > deadline:
            _kill_group(proc)
            return "timeout", f"did not finish within {limits.timeout_s:g} s", peak_kb / 1024
        time.sleep(0.1)
    peak_mb = max(peak_kb, rusage_kb) / 1024
    if proc.returncode == 0:
        return "ok", "", peak_mb
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        hint = " (killed: out of memory?)" if sig == "SIGKILL" else ""
        return "crash", f"worker died from {sig}{hint}", peak_mb
    return "error", "", peak_mb  # the message comes from error.json in _collect


def _collect(out: Path, peak_mb: float, wall: float, tail: str, returncode: int, action: str) -> WorkerResult:
    err = out / "error.json"
    if err.is_file():
        info = json.loads(err.read_text())
        return WorkerResult(
            "error", f"{info['type']}: {info['message']}", None, peak_mb, wall, info.get("traceback", tail)
        )
    res = out / "result.json"
    if returncode != 0 or not res.is_file():
        return WorkerResult(
            "crash", f"worker exited with code {returncode} without a result", None, peak_mb, wall, tail
        )
    info = json.loads(res.read_text())
    peak_mb = max(peak_mb, info.pop("peak_memory_mb", 0.0))
    if action in ("prepare", "train"):
        return WorkerResult("ok", "", None, peak_mb, wall, tail, info=info)
    seg = Segmentation.load(out / "segmentation", maps=True)
    seg.versions = {"python": info.get("python", ""), **seg.versions}
    if seg.process_s <= 0:
        seg.process_s = info["elapsed_s"]
    if not seg.n_frames:
        seg.n_frames = info["n_frames"]
    return WorkerResult("ok", "", seg, peak_mb, wall, tail, info=info)


def _group_rss_kb(pgid: int) -> int:
    """Resident memory of every process in a process group, in kB (Linux /proc)."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            # Fields after the command name (which may contain spaces): state ppid pgrp ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            rss_pages = int(fields[21])
            total += rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.wait4(proc.pid, 0)
    except ChildProcessError:
        pass


def _tail(path: Path, n: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


# ---------------------------------------------------------------------------- worker side
def _worker_main(job_path: str) -> int:
    import importlib
    import resource

    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        module, _, attr = job["entry"].partition(":")
        obj = getattr(importlib.import_module(module), attr)
        method = obj(job["arg"]) if job["arg"] is not None else obj()
        action = job["action"]
        # No ground truth crosses into the worker, except the training recordings' own.
        rec = _recording_from_spec(job["recording"]) if job["recording"] is not None else None
        stage = Path(job["stage"]) if job["stage"] else None
        t0 = time.perf_counter()
        result: dict = {}
        if action == "train":
            training = [_recording_from_spec(t["recording"], Masks.load(t["gt"])) for t in job["training"]]
            result = method.train(training, job["settings"], stage, device=job["params"].get("device", "cpu"))
        elif action == "prepare":
            result = method.prepare(rec, job["params"], stage)
        else:
            seg = method.finish(rec, job["params"], stage) if action == "finish" else method.segment(rec, job["params"])
            _check_output(job["method"], seg, rec)
            seg.save(out / "segmentation")
            result = {"n_frames": rec.n_frames}
        usage = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        )
        result.update(elapsed_s=time.perf_counter() - t0, python=sys.version.split()[0], peak_memory_mb=usage / 1024)
        tmp = out / "result.json.tmp"
        tmp.write_text(json.dumps(result, default=json_default))
        tmp.replace(out / "result.json")
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent
        (out / "error.json").write_text(
            json.dumps({"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()})
        )
        return 1


def _check_output(method: str, seg, rec: Recording) -> None:
    if not isinstance(seg, Segmentation):
        raise TypeError(f"method '{method}' returned {type(seg).__name__}, expected a Segmentation")
    if not isinstance(seg.masks, Masks):
        raise TypeError(f"method '{method}' returned masks of type {type(seg.masks).__name__}, expected Masks")
    if seg.masks.shape != rec.frame_shape:
        raise InputError(
            f"method '{method}' returned masks over a {seg.masks.shape[0]}x{seg.masks.shape[1]} frame, "
            f"the recording's frame is {rec.frame_shape[0]}x{rec.frame_shape[1]}"
        )


if __name__ == "__main__":  # pragma: no cover - exercised through run_in_worker
    sys.exit(_worker_main(sys.argv[1]))
