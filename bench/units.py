"""The units of a run and where their results live.

A run is a set of units, each a key (what it computes, from what inputs,
with what code) and files; anything with the same key is reused, by a
resumed run or by another machine that sees the same folders:

- :class:`TrainUnit`: a learning method trained on one fold's training
  recordings with one schedule, giving weights (kept in the weights cache,
  shared by runs);
- :class:`StageUnit`: a staged method's expensive stage on one recording
  (e.g. STNeuroNet's probability maps), shared by the parameter points that
  differ only in cheap parameters;
- :class:`SegmentUnit`: one method on one recording with one parameter
  point, giving a :class:`~methods.base.Segmentation` and its scores.

:class:`UnitStore` owns the folders. A unit's record file is written last
(atomic rename), so a killed run never leaves a unit that looks finished; a
record that cannot be read is set aside (renamed, logged) and the unit
computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results import atomic_write_text
from datasets.masks import Masks
from datasets.records import Recording
from methods.base import Segmentation, json_default
from methods.worker import safe_name

__all__ = [
    "params_hash",
    "recording_fingerprint",
    "TrainUnit",
    "StageUnit",
    "SegmentUnit",
    "UnitStore",
    "WeightsCache",
    "safe_name",
]

log = logging.getLogger(__name__)


def params_hash(params: dict) -> str:
    """Short stable hash of a JSON-able dict."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def recording_fingerprint(rec: Recording, grader: str | None = None) -> str:
    """What identifies a recording's data for caching: its files (size, mtime) and ground truth.

    Checksums in the recording's provenance are used when present (hashing a
    50 GB movie for a cache key would take longer than many runs).
    """
    h = hashlib.sha1(rec.name.encode())
    prov = rec.provenance or {}
    sums = prov.get("sha256") or prov.get("checksums")
    if sums:
        h.update(json.dumps(sums, sort_keys=True, default=str).encode())
    elif rec.movie is not None:
        try:
            spec = rec.movie.to_spec()
        except Exception:  # noqa: BLE001 - an in-memory movie: its shape stands in
            spec = {"shape": list(rec.movie.shape)}
        h.update(json.dumps(spec, sort_keys=True, default=str).encode())
        path = spec.get("path") if isinstance(spec, dict) else None
        if path and Path(path).exists():
            st = Path(path).stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    if grader is not None:
        csr = rec.ground_truth(grader).matrix
        h.update(csr.indptr.tobytes())
        h.update(csr.indices.tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- units
@dataclass
class TrainUnit:
    """Train one learning method on one fold.

    Attributes
    ----------
    method : str
        Label of the method in the run.
    ref : str
        Method reference (registry name).
    fold : str
        ``"split"`` or the held-out recording of a leave-one-out fold.
    recordings : tuple of Recording
        Training recordings.
    grader : str
        Ground truth trained on.
    schedule : str
        Schedule name or file.
    settings : dict
        The schedule's settings (validated).
    device : str
        Where it trains.
    key : str
        Cache key: method, code version, settings, recordings with their fingerprints.
    """

    method: str
    ref: str
    fold: str
    recordings: tuple[Recording, ...]
    grader: str
    schedule: str
    settings: dict
    device: str
    key: str

    @property
    def id(self) -> str:
        return f"train/{self.method}/{self.key}"


@dataclass
class StageUnit:
    """A staged method's expensive stage on one recording."""

    method: str
    ref: str
    recording: Recording
    params: dict  # the full parameters (its expensive part is in the key)
    key: str
    train: TrainUnit | None = None

    @property
    def id(self) -> str:
        return f"stage/{self.method}/{self.recording.name}/{self.key}"


@dataclass
class SegmentUnit:
    """One method on one recording with one parameter point."""

    method: str
    ref: str
    recording: Recording
    point: dict  # the grid values; params = defaults(recording) | point
    params: dict
    stage: StageUnit | None = None
    train: TrainUnit | None = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        # The full parameters, not only the grid point: a changed default must not reuse a stale result.
        self.key = params_hash({"method": self.ref, "recording": self.recording.name, "params": self.params})

    @property
    def id(self) -> str:
        return f"unit/{self.method}/{self.recording.name}/{self.key}"

    @property
    def deps(self) -> tuple[str, ...]:
        if self.stage is not None:
            return (self.stage.id,)
        return (self.train.id,) if self.train is not None else ()


# ---------------------------------------------------------------------------- store
def _read_record(path: Path) -> dict | None:
    """A record file, or None when absent; a corrupt one is set aside and logged."""
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict) or "status" not in info:
            raise ValueError("not a unit record")
        return info
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        path.replace(aside)
        log.warning("%s is unreadable (%s): set aside as %s; the unit runs again", path, exc, aside.name)
        return None


class UnitStore:
    """The run folder's units: ``OUT/units/<method>/<recording>/<key>/`` and ``OUT/stages/...``.

    A segment unit's folder holds the segmentation (``masks.npz``,
    ``segmentation.json``) and ``unit.json``: status, error, timings, peak
    memory and the scores (scored once, when the unit finishes).
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    # segment units
    def folder(self, unit: SegmentUnit) -> Path:
        return self.root / "units" / safe_name(unit.method) / safe_name(unit.recording.name) / unit.key

    def load(self, unit: SegmentUnit) -> dict | None:
        """The unit's record (with ``masks`` when it succeeded), or None when it has not run."""
        folder = self.folder(unit)
        info = _read_record(folder / "unit.json")
        if info is not None and info["status"] == "ok":
            try:
                info["masks"] = Masks.load(folder / "masks.npz")
            except Exception as exc:  # noqa: BLE001 - any unreadable mask file means: run again
                log.warning("%s: masks unreadable (%s); the unit runs again", folder, exc)
                (folder / "unit.json").replace(folder / f"unit.json.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
                return None
        return info

    def save(self, unit: SegmentUnit, info: dict, segmentation: Segmentation | None) -> dict:
        """Store a finished unit: the segmentation first, then the record that marks it finished."""
        folder = self.folder(unit)
        folder.mkdir(parents=True, exist_ok=True)
        if segmentation is not None:
            segmentation.save(folder, maps=False)
        record = {k: v for k, v in info.items() if k != "masks"}
        atomic_write_text(folder / "unit.json", json.dumps(record, default=json_default))
        if segmentation is not None:
            info = {**info, "masks": segmentation.masks}
        return info

    # stage units
    def stage_folder(self, unit: StageUnit) -> Path:
        return self.root / "stages" / safe_name(unit.method) / safe_name(unit.recording.name) / unit.key

    def stage_record(self, unit: StageUnit) -> dict | None:
        return _read_record(self.stage_folder(unit) / "unit.json")

    def save_stage_record(self, unit: StageUnit, info: dict[str, Any]) -> None:
        atomic_write_text(self.stage_folder(unit) / "unit.json", json.dumps(info, default=json_default))


class WeightsCache:
    """Trained weights, keyed by :attr:`TrainUnit.key`: ``ROOT/<method>/<key>/``.

    ``manifest.json`` (written last) holds the weights' SHA-256 and the
    training summary; weights whose checksum no longer matches are set aside
    and trained again. A folder without a manifest is a training that was
    killed: its checkpoints let the next attempt resume.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, unit: TrainUnit) -> Path:
        return self.root / safe_name(unit.ref) / unit.key

    def weights_path(self, unit: TrainUnit) -> Path:
        return self.folder(unit) / "weights.pt"

    def load(self, unit: TrainUnit) -> dict | None:
        """The manifest of finished, intact weights, else None."""
        folder = self.folder(unit)
        manifest = _read_record(folder / "manifest.json")
        if manifest is None or manifest["status"] != "ok":
            return manifest
        weights = folder / manifest["weights"]
        if not weights.is_file() or _sha256(weights) != manifest["sha256"]:
            aside = folder.with_name(f"{folder.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            folder.replace(aside)
            log.warning("cached weights %s fail their checksum: set aside as %s and trained again", weights, aside)
            return None
        return manifest

    def save(self, unit: TrainUnit, info: dict) -> dict:
        folder = self.folder(unit)
        if info["status"] == "ok":
            info = {**info, "sha256": _sha256(folder / info["weights"])}
        info = {**info, "key": unit.key, "method": unit.ref, "fold": unit.fold,
                "recordings": [r.name for r in unit.recordings], "schedule": unit.schedule,
                "settings": unit.settings, "device": unit.device}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "manifest.json", json.dumps(info, indent=1, default=json_default))
        return info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
