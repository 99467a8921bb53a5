"""``bench export``: a finished run's masks in the formats of the field.

For every (method, recording) of a run folder's results table, the unit the
table scored (the one whose parameters hash to the row's ``params_hash``: the
tuned point under leave-one-out, the defaults otherwise) is written as

* ``nwb``: ``OUT/<method>/<recording>.nwb`` (pynwb; the method's masks, the
  recording's ground truths, the imaging metadata and the movie linked as an
  external file; :mod:`datasets.nwbio`);
* ``roi``: ``OUT/<method>/<recording>_RoiSet.zip`` (ImageJ / Fiji);
* ``suite2p``: ``OUT/<method>/<recording>/stat.npy`` (Suite2p-style);
* ``npz``: ``OUT/<method>/<recording>.npz`` (the suite's exact sparse format).

Units that failed in the run are listed, not exported; existing files are
never replaced unless ``overwrite`` is given (checked before anything is written).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.plan import split_label
from bench.results import read_table
from bench.units import params_hash
from datasets.errors import InputError
from datasets.interchange import write_imagej_rois, write_suite2p_stat
from datasets.masks import Masks
from datasets.nwbio import NWB_GROUND_TRUTH_PREFIX, NWBSegmentation, nwb_name, write_nwb
from datasets.records import Dataset, Recording
from datasets.registry import closest

__all__ = ["FORMATS", "ExportReport", "NotExported", "export_run", "parse_formats"]

log = logging.getLogger(__name__)

FORMATS = ("nwb", "roi", "suite2p", "npz")


@dataclass(frozen=True)
class NotExported:
    """A (method, recording) of the run with nothing to export, and why."""

    method: str
    recording: str
    status: str
    error: str


@dataclass
class ExportReport:
    """What :func:`export_run` wrote and what it could not."""

    out: Path
    files: list[Path] = field(default_factory=list)
    not_exported: list[NotExported] = field(default_factory=list)


@dataclass(frozen=True)
class _Chosen:
    method: str
    recording: str
    row: dict
    unit: dict
    masks: Masks


def parse_formats(text: str) -> tuple[str, ...]:
    """``'nwb,roi'`` or ``'all'`` -> formats, in :data:`FORMATS` order."""
    names = FORMATS if text.strip() == "all" else tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise InputError(
            f"unknown export format {', '.join(unknown) or repr(text)}", hint=f"formats: {', '.join(FORMATS)}, all"
        )
    return tuple(f for f in FORMATS if f in names)


def _targets(out: Path, method: str, recording: str) -> dict[str, Path]:
    folder = out / nwb_name(method)
    rec = nwb_name(recording)
    return {
        "nwb": folder / f"{rec}.nwb",
        "roi": folder / f"{rec}_RoiSet.zip",
        "suite2p": folder / rec / "stat.npy",  # the reader recognises Suite2p files by this name
        "npz": folder / f"{rec}.npz",
    }


def _read_run(run: Path) -> tuple[dict, list[dict]]:
    if not run.exists():
        raise InputError("run folder not found", path=run, hint="give the --out folder of 'python -m bench run'")
    meta_path = run / "run.json"
    if not meta_path.is_file():
        raise InputError(
            "not a run folder (no run.json)", path=run, hint="give the --out folder of 'python -m bench run'"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable run.json ({exc})", path=meta_path) from exc
    return meta, read_table(run / "results.csv", required=("method", "recording", "params_hash", "status", "error"))


def _unit_index(run: Path) -> dict[tuple[str, str, str], tuple[dict, Path]]:
    """Finished units by (method, recording, params hash), read from ``units/*/*/*/unit.json``."""
    index = {}
    for p in sorted((run / "units").glob("*/*/*/unit.json")):
        try:
            info = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("%s: unreadable unit record, skipped", p)
            continue
        if info.get("status") == "ok":
            index[(info["method"], info["recording"], params_hash(info["params"]))] = (info, p.with_name("masks.npz"))
    return index


def _choose(run: Path, rows: list[dict], methods: Sequence[str]) -> tuple[list[_Chosen], list[NotExported]]:
    units = _unit_index(run)
    chosen: dict[tuple[str, str], _Chosen] = {}
    failed: dict[tuple[str, str], NotExported] = {}
    for row in rows:
        key = (row["method"], row["recording"])
        if row["method"] not in methods or key in chosen:
            continue
        if row["status"] != "ok":
            failed[key] = NotExported(*key, row["status"], row["error"] or "")
            continue
        found = units.get((*key, row["params_hash"]))
        if found is None or not found[1].is_file():
            failed[key] = NotExported(*key, "missing", f"no finished unit with params_hash {row['params_hash']}")
            continue
        failed.pop(key, None)
        chosen[key] = _Chosen(*key, row, found[0], Masks.load(found[1]))
    return list(chosen.values()), [f for k, f in failed.items() if k not in chosen]


def _description(meta: dict, c: _Chosen) -> str:
    """The method, its parameters and versions, and how the point was chosen, as JSON."""
    config = meta.get("config", {})
    refs = dict(split_label(e) for e in config.get("methods", []))
    return json.dumps(
        {
            "method": c.method,
            "reference": refs.get(c.method, c.method),
            "params": c.unit["params"],
            "params_hash": c.row["params_hash"],
            "versions": c.unit.get("versions", {}),
            "tune": config.get("tune"),
            "tuned_on": c.row.get("tuned_on") or None,
            "dataset": config.get("dataset"),
            "run_id": meta.get("run_id"),
        },
        sort_keys=True,
        default=str,
    )


def _write_nwb(path: Path, meta: dict, c: _Chosen, rec: Recording) -> Path:
    segs = [NWBSegmentation(c.method, c.masks, _description(meta, c))]
    segs += [
        NWBSegmentation(
            NWB_GROUND_TRUTH_PREFIX + g, rec.ground_truth(g), f"ground truth '{g}' of {meta['config']['dataset']}"
        )
        for g in rec.graders
    ]
    return write_nwb(
        path,
        rec,
        segs,
        session_description=f"{c.method} segmentation of recording {rec.name} ({meta['config']['dataset']}), "
        f"exported from bench run {meta.get('run_id')}",
        overwrite=True,  # existing targets were refused (or allowed) before anything was written
    )


def export_run(
    run: str | Path,
    formats: Sequence[str],
    *,
    methods: Sequence[str] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    dataset: Dataset | None = None,
) -> ExportReport:
    """Export the masks a run's results table scored.

    Parameters
    ----------
    run : str or Path
        A run folder (``run.json``, ``results.csv``, ``units/``).
    formats : sequence of str
        Any of :data:`FORMATS`.
    methods : sequence of str, optional
        Method labels as in the results table (default: all of the run's).
    out : str or Path, optional
        Output folder (default ``RUN/export``).
    overwrite : bool
        Replace existing files; otherwise any existing target is an error and nothing is written.
    dataset : Dataset, optional
        The run's data set (default: loaded from the registry by the name in ``run.json``);
        only the NWB format needs it (frame rate, pixel size, indicator, movie, ground truths).

    Returns
    -------
    ExportReport

    Raises
    ------
    InputError
        For a missing or damaged run folder, an unknown method or format, an
        existing target without ``overwrite``, or a run with nothing to export.
    """
    run = Path(run)
    formats = parse_formats(",".join(formats))
    meta, rows = _read_run(run)
    known = list(
        dict.fromkeys(
            [split_label(e)[0] for e in meta.get("config", {}).get("methods", [])] + [r["method"] for r in rows]
        )
    )
    if methods:
        for m in methods:
            if m not in known:
                raise InputError(f"run has no method '{m}'", path=run, hint=closest(m, known))
    chosen, failed = _choose(run, rows, list(methods) if methods else known)
    out = Path(out) if out is not None else run / "export"
    report = ExportReport(out, not_exported=failed)
    if not chosen:
        what = "; ".join(f"{f.method} on {f.recording}: {f.status}" for f in failed) or "no results"
        raise InputError(f"nothing to export ({what})", path=run)
    plan = [(c, fmt, _targets(out, c.method, c.recording)[fmt]) for c in chosen for fmt in formats]
    existing = [p for _, _, p in plan if p.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{len(existing)} target file(s) exist already", path=existing[0], hint="pass --overwrite to replace them"
        )
    recordings: dict[str, Recording] = {}
    if "nwb" in formats:
        from datasets.registry import get as get_dataset

        ds = dataset if dataset is not None else get_dataset(meta["config"]["dataset"])
        recordings = {r.name: r for r in ds.recordings}
    writers: dict[str, Callable[[Path, _Chosen], Path]] = {
        "nwb": lambda p, c: _write_nwb(p, meta, c, _recording(recordings, c.recording, run)),
        "roi": lambda p, c: write_imagej_rois(c.masks, p),
        "suite2p": lambda p, c: write_suite2p_stat(c.masks, p),
        "npz": lambda p, c: c.masks.save(p),
    }
    for c, fmt, path in plan:
        if fmt == "roi" and c.masks.n == 0:
            report.not_exported.append(NotExported(c.method, c.recording, "empty", "no mask: no ImageJ ROI set"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        report.files.append(writers[fmt](path, c))
    return report


def _recording(recordings: dict[str, Recording], name: str, run: Path) -> Recording:
    if name not in recordings:
        raise InputError(f"the run's recording '{name}' is not in its data set any more", path=run)
    return recordings[name]
