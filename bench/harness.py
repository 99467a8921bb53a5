"""The benchmark run: every (method x recording x parameter point) in a worker, scored and tabulated.

A *unit* is one method run on one recording with one parameter point; its
outcome (masks, timings, status) is cached under ``OUT/units`` by an atomic
rename as soon as it finishes, so a killed run started again skips every
finished unit. The results table is a function of the cached units, rebuilt
after each method and at the end.

Leave-one-out tuning follows the paper: for each held-out recording, the
parameter point with the best mean F1 on the other recordings (default
grader) is chosen, and the held-out recording is scored with it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.environment import environment, hardware_summary
from bench.metrics import match, neurofinder_combined
from bench.results import atomic_write_text, write_table
from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Dataset, Recording
from datasets.registry import get as get_dataset
from methods.base import Method, get_method, methods
from methods.worker import WorkerLimits, WorkerResult, run_in_worker

__all__ = ["RunConfig", "run_benchmark", "select_methods", "params_hash"]

log = logging.getLogger(__name__)

NF_DISTANCE_UM = 5.0  # the Neurofinder challenge server's centre distance


@dataclass(frozen=True)
class RunConfig:
    """What a run computes; two runs with equal configs may share an output folder.

    Attributes
    ----------
    dataset : str
        Registered data set name.
    methods : tuple of str
        Method references (``"suite2p"``, ``"files:PATTERN"``).
    tune : {"none", "loo"}
        Default parameters, or leave-one-out tuning on each method's grid.
    split : {"all", "train", "test"}
        Recordings evaluated (and tuned on, for ``loo``).
    graders : tuple of str or None
        Ground truths scored; None: every grader of each recording.
    rule : {"stnn", "suns"}
        Matching rule of the scorer.
    device : str
        Passed to methods that take a ``device`` parameter.
    max_grid : int
        Cap on parameter points per method (the first points of the grid).
    """

    dataset: str
    methods: tuple[str, ...]
    tune: str = "loo"
    split: str = "test"
    graders: tuple[str, ...] | None = None
    rule: str = "stnn"
    device: str = "cpu"
    max_grid: int = 12

    def __post_init__(self) -> None:
        if self.tune not in ("none", "loo"):
            raise InputError(f"--tune must be 'none' or 'loo', got {self.tune!r}")
        if self.split not in ("all", "train", "test"):
            raise InputError(f"--split must be all, train or test, got {self.split!r}")
        if self.rule not in ("stnn", "suns"):
            raise InputError(f"--rule must be stnn or suns, got {self.rule!r}")
        if self.max_grid < 1:
            raise InputError(f"--max-grid must be >= 1, got {self.max_grid}")


def params_hash(params: dict) -> str:
    """Short stable hash of a parameter dict."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def split_label(entry: str) -> tuple[str, str]:
    """``'LABEL=REF'`` -> (LABEL, REF); a bare reference is its own label."""
    label, sep, ref = entry.partition("=")
    return (label.strip(), ref.strip()) if sep else (entry.strip(), entry.strip())


def select_methods(spec: str) -> tuple[str, ...]:
    """Method entries from ``'a,b'`` or ``'all'`` (every available method that needs no argument).

    An entry may carry a label for the tables: ``'ST=files:out/ST_{recording}.mat'``.
    """
    if spec.strip() == "all":
        chosen = []
        for name, m in methods().items():
            if isinstance(m, Exception) or getattr(m, "needs_argument", False):
                continue
            if not m.in_default_run:
                log.info("skipping method %s in 'all': too slow for the default run; name it in --methods", name)
                continue
            ok, reason = m.is_available()
            if ok:
                chosen.append(name)
            else:
                log.info("skipping method %s: %s", name, reason)
        return tuple(chosen)
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    labels = [split_label(n)[0] for n in names]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise InputError(f"method label(s) {', '.join(dupes)} given twice")
    for n in names:
        get_method(split_label(n)[1])  # unknown names fail early, with a suggestion
    return names


# ---------------------------------------------------------------------------- units
@dataclass
class Unit:
    method: str
    recording: Recording
    point: dict  # the grid values; params = defaults(recording) | point
    params: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        # The full parameters, not only the grid point: a changed default must not reuse a stale result.
        return params_hash({"method": self.method, "recording": self.recording.name, "params": self.params})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class UnitStore:
    """Finished units under ``OUT/units/<method>/<recording>/<key>.{json,npz}``."""

    def __init__(self, root: Path):
        self.root = root

    def _base(self, unit: Unit) -> Path:
        return self.root / _safe(unit.method) / _safe(unit.recording.name) / unit.key

    def load(self, unit: Unit) -> dict | None:
        p = self._base(unit).with_suffix(".json")
        if not p.is_file():
            return None
        info = json.loads(p.read_text())
        if info["status"] == "ok":
            info["masks"] = Masks.load(self._base(unit).with_suffix(".npz"))
        return info

    def save(self, unit: Unit, res: WorkerResult) -> dict:
        base = self._base(unit)
        base.parent.mkdir(parents=True, exist_ok=True)
        seg = res.segmentation
        info = {
            "method": unit.method,
            "recording": unit.recording.name,
            "point": unit.point,
            "params": seg.params if seg else unit.params,
            "status": res.status,
            "error": res.message,
            "init_s": seg.init_s if seg else float("nan"),
            "process_s": seg.process_s if seg else float("nan"),
            "frames": seg.n_frames if seg else unit.recording.n_frames,
            "peak_memory_mb": res.peak_memory_mb,
            "wall_s": res.wall_s,
            "versions": seg.versions if seg else {},
        }
        if seg is not None:
            # Masks first, then the JSON that marks the unit finished.
            tmp = base.with_name(base.name + ".tmp.npz")
            seg.masks.save(tmp)
            tmp.replace(base.with_suffix(".npz"))
        atomic_write_text(base.with_suffix(".json"), json.dumps(info, default=_json_default))
        if seg is not None:
            info["masks"] = seg.masks
        return info


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _points(method: Method, rec: Recording, tune: str, max_grid: int) -> list[dict]:
    if tune == "none":
        return [{}]
    grid = method.param_grid(rec)
    if not grid:
        return [{}]
    keys = sorted(grid)
    pts = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    return pts[:max_grid]


# ---------------------------------------------------------------------------- run
def _check_out_dir(out: Path, config: RunConfig, resume: bool, force: bool) -> dict:
    meta_path = out / "run.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if not force and (meta.get("config") == _config_dict(config) or resume):
            return meta
        if not force:
            raise InputError(
                f"holds the results of a different run (data set {meta['config']['dataset']}, "
                f"methods {','.join(meta['config']['methods'])}, tune {meta['config']['tune']})",
                path=out,
                hint="choose another --out, or --resume to add to it, or --force to replace it",
            )
        for p in sorted(out.rglob("*"), reverse=True):
            if p.is_file():
                p.unlink()
            elif p.is_dir():
                p.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "run_id": uuid.uuid4().hex[:12],
        "config": _config_dict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return meta


def _config_dict(config: RunConfig) -> dict:
    d = asdict(config)
    d["methods"] = list(d["methods"])
    d["graders"] = list(d["graders"]) if d["graders"] is not None else None
    return d


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
) -> Path:
    """Run, score and tabulate; returns the path of ``results.csv``.

    Parameters
    ----------
    config : RunConfig
        What to compute.
    out : Path
        Output folder: ``run.json``, ``results.csv``, ``units/``.
    resume, force : bool
        Continue an output folder holding a different run; or start afresh,
        deleting what the folder holds.
    retry_failed : bool
        Run again the units that failed (crash, timeout, error) in an earlier attempt.
    jobs : int
        Units run at once (each in its own worker process).
    timeout_s, memory_mb : float, optional
        Per-unit limits (default: the method's ``default_timeout_s``, no memory limit).
    progress : bool
        Show a progress bar (stderr).
    dataset : Dataset, optional
        Use this data set object instead of loading ``config.dataset``.
    analyse_psnr : bool
        Compute each GT neuron's PSNR (one pass over each movie) for the
        detection-versus-PSNR analysis.
    """
    out = Path(out)
    meta = _check_out_dir(out, config, resume, force)
    ds = dataset if dataset is not None else get_dataset(config.dataset)
    recs = list(ds.recordings if config.split == "all" else ds.split(config.split)) or list(ds.recordings)
    env = environment()
    meta["environment"] = env
    meta["default_grader"] = ds.default_grader
    atomic_write_text(out / "run.json", json.dumps(meta, indent=2))
    store = UnitStore(out / "units")

    units: list[Unit] = []
    failures: dict[str, str] = {}
    adapters: dict[str, Method] = {}
    refs = dict(split_label(e) for e in config.methods)
    for entry in config.methods:
        name, ref = split_label(entry)
        m = get_method(ref)
        ok, reason = m.is_available()
        if not ok:
            failures[name] = f"unavailable: {reason}"
            continue
        adapters[name] = m
        for rec in recs:
            for point in _points(m, rec, config.tune, config.max_grid):
                params = {**m.default_params(rec), **point}
                if "device" in params:
                    params["device"] = config.device
                units.append(Unit(name, rec, point, params))

    done: dict[str, dict] = {}
    todo = []
    for u in units:
        info = store.load(u)
        if info is None or (retry_failed and info["status"] != "ok"):
            todo.append(u)
        else:
            done[u.key] = info
    log.info("%d units, %d already done, %d to run", len(units), len(done), len(todo))

    def execute(u: Unit) -> tuple[Unit, dict]:
        m = adapters[u.method]
        limits = WorkerLimits(timeout_s=timeout_s or getattr(m, "default_timeout_s", 3600.0), memory_mb=memory_mb)
        return u, store.save(u, run_in_worker(refs[u.method], u.recording, u.params, limits=limits))

    bar = _progress(len(units), len(done), progress)
    table = out / "results.csv"

    def record(u: Unit, info: dict) -> None:
        done[u.key] = info
        if info["status"] != "ok":
            log.warning("%s on %s failed (%s): %s", u.method, u.recording.name, info["status"], info["error"])
        bar.set_postfix_str(f"{u.method} {u.recording.name}", refresh=False)
        bar.update(1)

    try:
        if jobs <= 1:
            for u in todo:
                record(*execute(u))
        else:
            pool = ThreadPoolExecutor(max_workers=jobs)
            try:
                for fut in as_completed([pool.submit(execute, u) for u in todo]):
                    record(*fut.result())
            except BaseException:
                # Interrupted: queued units must not start; finished ones are already stored.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        bar.close()
        rows, chosen = _rows(config, ds, recs, units, done, failures, meta["run_id"], hardware_summary(env))
        write_table(rows, table)
    _side_tables(out, config, ds, recs, chosen, analyse_psnr)
    return table


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="bench run", disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------------- rows
def _score_rows(config: RunConfig, rec: Recording, info: dict) -> list[dict]:
    graders = rec.graders if config.graders is None else [g for g in config.graders if g in rec.graders]
    rows = []
    for g in graders:
        row = {"grader": g}
        if info["status"] == "ok":
            gt = rec.ground_truth(g)
            s = match(gt, info["masks"], rule=config.rule)
            nf = neurofinder_combined(gt, info["masks"], threshold_px=NF_DISTANCE_UM / rec.um_per_px)
            row.update(
                n_gt=s.n_gt,
                n_pred=s.n_pred,
                tp=s.tp,
                recall=s.recall,
                precision=s.precision,
                f1=s.f1,
                nf_combined=nf.combined,
            )
        else:
            row.update(n_gt=rec.ground_truth(g).n)
        rows.append(row)
    return rows


def _timing(info: dict) -> dict:
    proc = info["process_s"]
    ok = info["frames"] and proc and not math.isnan(proc) and proc > 0
    fps = info["frames"] / proc if ok else float("nan")  # no movie read: no speed
    return {
        "init_s": info["init_s"],
        "process_s": proc,
        "frames": info["frames"],
        "frames_per_s": fps,
        "peak_memory_mb": info["peak_memory_mb"],
        "status": info["status"],
        "error": info["error"],
        "versions": info["versions"],
    }


def _default_f1(config: RunConfig, ds: Dataset, rec: Recording, info: dict, cache: dict) -> float:
    key = (rec.name, id(info))
    if key not in cache:
        if info["status"] != "ok":
            cache[key] = 0.0  # a point that fails cannot win the tuning
        else:
            grader = ds.default_grader if ds.default_grader in rec.graders else rec.graders[0]
            cache[key] = match(rec.ground_truth(grader), info["masks"], rule=config.rule).f1
    return cache[key]


def _rows(config, ds, recs, units, done, failures, run_id, hardware) -> tuple[list[dict], dict]:
    """Table rows, and the unit scored for each (method, recording)."""
    base = {"run_id": run_id, "dataset": config.dataset, "hardware": hardware}
    rows: list[dict] = []
    chosen: dict[tuple[str, str], dict] = {}
    by = {}
    for u in units:
        if u.key in done:
            by.setdefault(u.method, {}).setdefault(u.recording.name, []).append((u, done[u.key]))
    f1_cache: dict = {}
    for method in (split_label(e)[0] for e in config.methods):
        if method in failures:
            for rec in recs:
                rows.append(
                    {
                        **base,
                        "recording": rec.name,
                        "split": rec.split,
                        "fold": -1,
                        "method": method,
                        "status": "unavailable",
                        "error": failures[method],
                    }
                )
            continue
        runs = by.get(method, {})
        if config.tune == "none":
            for rec in recs:
                for _u, info in runs.get(rec.name, []):
                    chosen[(method, rec.name)] = info
                    for sr in _score_rows(config, rec, info):
                        rows.append(
                            {
                                **base,
                                "recording": rec.name,
                                "split": rec.split,
                                "fold": -1,
                                "method": method,
                                "params": info["params"],
                                "params_hash": params_hash(info["params"]),
                                **_timing(info),
                                **sr,
                            }
                        )
            continue
        for fold in ds.folds(recs):
            held = fold.held_out
            cands = runs.get(held.name, [])
            if not cands:
                continue  # not run yet (interrupted)
            best_u, best_info, best_mean = cands[0][0], cands[0][1], float("nan")
            if fold.train:
                scored = []
                for u, info in cands:
                    f1s = []
                    for r in fold.train:
                        match_ = [i for uu, i in runs.get(r.name, []) if uu.point == u.point]
                        f1s.append(_default_f1(config, ds, r, match_[0], f1_cache) if match_ else 0.0)
                    scored.append((float(np.mean(f1s)), u, info))
                best_mean, best_u, best_info = max(scored, key=lambda s: s[0])  # first best on ties
            chosen[(method, held.name)] = best_info
            for sr in _score_rows(config, held, best_info):
                rows.append(
                    {
                        **base,
                        "recording": held.name,
                        "split": held.split,
                        "fold": fold.index,
                        "method": method,
                        "params": best_info["params"],
                        "params_hash": params_hash(best_info["params"]),
                        "tuned_on": ";".join(r.name for r in fold.train),
                        "tune_mean_f1": best_mean,
                        **_timing(best_info),
                        **sr,
                    }
                )
    return rows, chosen


# ---------------------------------------------------------------------------- side tables
def _default_grader(ds: Dataset, rec: Recording) -> str | None:
    if not rec.graders:
        return None
    return ds.default_grader if ds.default_grader in rec.graders else rec.graders[0]


def _side_tables(out: Path, config: RunConfig, ds: Dataset, recs, chosen: dict, analyse_psnr: bool) -> None:
    """``neurons.csv`` (PSNR and detection per GT neuron), ``graders.csv`` and overlay material."""
    from bench.psnr import neuron_psnr

    neuron_rows = []
    for rec in recs:
        grader = _default_grader(ds, rec)
        if grader is None:
            continue
        gt = rec.ground_truth(grader)
        psnr = np.full(gt.n, np.nan)
        if analyse_psnr and rec.movie is not None:
            cache = out / "psnr" / f"{_safe(rec.name)}__{_safe(grader)}.npy"
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
            s = match(gt, info["masks"], rule=config.rule)
            hit = np.zeros(gt.n, bool)
            hit[s.gt_index] = True
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
    _overlay_material(out, config, ds, recs, chosen)


def _overlay_material(out: Path, config: RunConfig, ds: Dataset, recs, chosen: dict) -> None:
    """Correlation image, GT and each method's masks for the first recording (the paper's Fig. 3A)."""
    from datasets.describe import summary_images

    rec = next((r for r in recs if r.movie is not None and _default_grader(ds, r)), None)
    if rec is None:
        return
    folder = out / "overlay"
    folder.mkdir(exist_ok=True)
    img = folder / "correlation.npy"
    if not img.is_file():
        np.save(img, summary_images(rec.movie)["corr"].astype(np.float32))
    rec.ground_truth(_default_grader(ds, rec)).save(folder / "gt.npz")
    for method in (split_label(e)[0] for e in config.methods):
        info = chosen.get((method, rec.name))
        if info is not None and info["status"] == "ok":
            info["masks"].save(folder / f"method__{_safe(method)}.npz")
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
