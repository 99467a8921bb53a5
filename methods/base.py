"""What every method adapter is and returns: `Method` and `Segmentation`.

Adapters register through the entry-point group ``bench.methods`` (the
suite's own included), so an outside package adds a method by declaring, in
its own ``pyproject.toml``::

    [project.entry-points."bench.methods"]
    mymethod = "mypackage.adapter:MyMethod"
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Recording
from datasets.registry import closest
from methods.params import Param, validate

__all__ = ["Method", "Segmentation", "methods", "get_method", "resolve_method", "json_default", "save_stage",
           "load_stage", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "bench.methods"


@dataclass
class Segmentation:
    """What a method returns for one recording.

    Parameters
    ----------
    masks : Masks
        The detected neurons over the recording's frame.
    params : dict
        The parameters actually used.
    init_s, process_s, io_s : float
        Seconds spent initialising (model load, first-batch prefetch),
        processing (the paper's speed denominator) and reading/writing.
    n_frames : int
        Frames processed (for frames per second).
    probability_maps : ndarray, optional
        Per-batch (n_batches, H, W) maps, for methods that produce them.
    versions : dict
        Method and library versions.
    snapshots : list of (float, Masks)
        For online methods: the masks known ``t`` seconds into the recording.
    """

    masks: Masks
    params: dict = field(default_factory=dict)
    init_s: float = 0.0
    process_s: float = 0.0
    io_s: float = 0.0
    n_frames: int = 0
    probability_maps: np.ndarray | None = None
    versions: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)

    @classmethod
    def from_stage(cls, masks: Masks, params: dict[str, Any], stage_info: Mapping[str, Any],
                   finish_s: float = 0.0) -> Segmentation:
        """A staged method's result: the expensive stage's timings (``init_s``, ``process_s``, ``io_s``,
        ``n_frames``, ``versions`` as its ``prepare`` returned them) plus ``finish_s`` of the cheap stage."""
        return cls(
            masks=masks,
            params=params,
            init_s=stage_info["init_s"],
            process_s=stage_info["process_s"] + finish_s,
            io_s=stage_info["io_s"],
            n_frames=stage_info["n_frames"],
            versions=stage_info["versions"],
        )

    @property
    def frames_per_s(self) -> float:
        """Frames per processing second (NaN when not timed)."""
        return self.n_frames / self.process_s if self.process_s > 0 else float("nan")

    def info(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-able."""
        return {
            "params": self.params,
            "init_s": float(self.init_s),
            "process_s": float(self.process_s),
            "io_s": float(self.io_s),
            "n_frames": int(self.n_frames),
            "versions": self.versions,
            "snapshot_times": [float(t) for t, _ in self.snapshots],
        }

    def save(self, folder: str | Path, *, maps: bool = True) -> Path:
        """Write ``masks.npz``, ``segmentation.json`` (last: it marks the folder complete) and the maps."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.masks.save(folder / "masks.npz")
        if maps and self.probability_maps is not None:
            np.save(folder / "probability_maps.npy", np.asarray(self.probability_maps, np.float32))
        for i, (_, m) in enumerate(self.snapshots):
            m.save(folder / f"snapshot-{i:04d}.npz")
        tmp = folder / "segmentation.json.tmp"
        tmp.write_text(json.dumps(self.info(), default=json_default))
        tmp.replace(folder / "segmentation.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, maps: bool = False) -> Segmentation:
        """Read what :meth:`save` wrote (maps only when asked: they can be large)."""
        folder = Path(folder)
        info = json.loads((folder / "segmentation.json").read_text())
        p = folder / "probability_maps.npy"
        times = info.get("snapshot_times", [])
        snaps = [(t, Masks.load(folder / f"snapshot-{i:04d}.npz")) for i, t in enumerate(times)]
        return cls(
            masks=Masks.load(folder / "masks.npz"),
            params=info["params"],
            init_s=info["init_s"],
            process_s=info["process_s"],
            io_s=info.get("io_s", 0.0),
            n_frames=info["n_frames"],
            probability_maps=np.load(p) if maps and p.is_file() else None,
            versions=info.get("versions", {}),
            snapshots=snaps,
        )


def save_stage(out: Path, info: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """A staged method's expensive result: ``info`` (timings, versions) as JSON, ``arrays`` as one ``.npz``."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "stage.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    (out / "stage.json").write_text(json.dumps(dict(info), default=json_default))


def load_stage(stage: Path, method: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(info, arrays)`` as :func:`save_stage` wrote them (never unpickles); an InputError names the folder."""
    try:
        info = json.loads((stage / "stage.json").read_text())
        with np.load(stage / "stage.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"unreadable {method} stage ({type(exc).__name__}: {exc})", path=stage) from exc
    return info, arrays


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars, arrays and paths."""
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"value {obj!r} is not JSON-serialisable")


class Method:
    """An adapter that segments active neurons in a recording.

    The contract, declared once per adapter (like benchopt's solver
    ``parameters``):

    - ``parameters``: every accepted parameter as a :class:`~methods.params.Param`
      (type, bounds, choices, and its *stage*); ``default_params`` gives the
      values for a recording and ``param_grid`` what leave-one-out tuning
      searches. :meth:`check_params` validates, so a run refuses a bad value
      when it is planned, before any worker starts.
    - Staged methods (``staged = True``) split :meth:`segment` into an
      expensive :meth:`prepare` (e.g. pre-processing and the network: the
      probability maps) whose result is cached per (recording, expensive
      parameters), and a cheap :meth:`finish` (threshold, minimum area) run
      once per grid point.
    - Methods that learn (``learns = True``) implement :meth:`train`; the
      run then trains them on the data set's own training recordings and
      passes the weights through the parameter named ``weights_param``.

    Class attributes
    ----------------
    name : str
        Registry name, e.g. ``"suite2p"``.
    description : str
        One line for listings.
    requirements : tuple of str
        Import names needed in the interpreter that runs the method.
    in_default_run : bool
        Whether ``--methods all`` includes it (False for very slow methods).
    needs_argument : bool
        Whether the method needs ``name:ARG`` (then never part of ``all``).
    needs_movie : bool
        Whether it reads the movie (False: e.g. saved masks).
    default_timeout_s : float
        Seconds a run allows one unit unless ``--timeout`` says otherwise.
    devices : tuple of str
        Devices the ``device`` parameter accepts (empty: no such parameter).
    """

    name: str = ""
    description: str = ""
    requirements: tuple[str, ...] = ()
    in_default_run: bool = True
    needs_argument: bool = False
    needs_movie: bool = True
    default_timeout_s: float = 3600.0
    devices: tuple[str, ...] = ()
    parameters: Mapping[str, Param] = {}
    staged: bool = False
    learns: bool = False
    #: The parameter through which trained weights reach the method.
    weights_param: str = "weights"
    #: Data set the shipped weights were trained on (learning methods).
    shipped_dataset: str | None = None
    #: Named training schedules: name -> settings (learning methods); 'paper' and 'quick' at least.
    train_schedules: Mapping[str, Mapping[str, Any]] = {}
    #: Parameters the weights carry a tuned value for: None means "the weights' value",
    #: which is what units with weights trained in the run use.
    tuned_with_weights: tuple[str, ...] = ()
    #: Seconds a training unit may take by default.
    train_timeout_s: float = 48 * 3600.0

    def default_params(self, recording: Recording) -> dict[str, Any]:
        """Parameters for a recording (derived from its frame rate and pixel size)."""
        return {}

    def param_grid(self, recording: Recording) -> dict[str, list]:
        """Small grid searched by leave-one-out tuning (name -> candidate values)."""
        return {}

    def estimate_s(self, recording: Recording, params: Mapping[str, Any]) -> float | None:
        """Estimated CPU seconds of one run on ``recording`` with ``params``, or None (no time model).

        A method left out of ``--methods all`` (``in_default_run = False``)
        joins it when its estimate fits the run's time budget
        (:func:`bench.budget.admit`).
        """
        return None

    def check_params(self, recording: Recording, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The full parameter set for ``recording``: defaults overlaid with ``params``, validated.

        Raises
        ------
        InputError
            Naming the method, the parameter and the allowed values.
        """
        if self.needs_movie and recording.movie is None:
            raise InputError(f"method '{self.name}' needs the movie of recording {recording.name}, which has none")
        if not self.parameters:
            # A plugin that declares no parameters gets them unchecked (its segment() checks them).
            p = {**self.default_params(recording), **(params or {})}
        else:
            p = validate(self.name, self.parameters, self.default_params(recording), params)
        self.check_consistency(recording, p)
        return p

    def check_consistency(self, recording: Recording, params: dict[str, Any]) -> None:
        """Checks across parameters (override; raise InputError)."""
        return None

    def is_available(self) -> tuple[bool, str]:
        """Whether the method can run here, and why not (with how to install it)."""
        missing = [m for m in self.requirements if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing Python package(s): {', '.join(missing)}"
        return True, ""

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        """Segment one recording with the given parameters.

        Staged methods need not override it: it runs :meth:`prepare` into a
        temporary folder, then :meth:`finish`.
        """
        if not self.staged:
            raise NotImplementedError(f"method '{self.name}' implements neither segment() nor prepare()/finish()")
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-stage-") as tmp:
            self.prepare(recording, params, Path(tmp))
            return self.finish(recording, params, Path(tmp))

    def prepare(self, recording: Recording, params: dict[str, Any], out: Path) -> dict[str, Any]:
        """Expensive stage: write its result into ``out``; return its timings (``init_s``, ``process_s``)."""
        raise NotImplementedError(f"method '{self.name}' has no expensive stage")

    def finish(self, recording: Recording, params: dict[str, Any], stage: Path) -> Segmentation:
        """Cheap stage: the segmentation from the expensive stage's folder."""
        raise NotImplementedError(f"method '{self.name}' has no cheap stage")

    def train(
        self,
        recordings: Sequence[Recording],
        settings: Mapping[str, Any],
        out: Path,
        *,
        device: str = "cpu",
        progress: bool = True,
    ) -> dict[str, Any]:
        """Train on ``recordings`` (with their ground truth) into ``out``, resuming a killed run.

        Returns a JSON-able summary with at least ``weights`` (file name
        inside ``out``), ``iterations`` and ``train_s``. Threshold and minimum
        area are tuned on the training recordings and stored with the weights.
        """
        raise NotImplementedError(f"method '{self.name}' does not learn")

    def check_train_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validated training settings (override; raise InputError naming the bad key)."""
        return dict(settings)

    def code_version(self) -> str:
        """A hash of the code that produces this method's trained weights (cache key)."""
        return _source_hash(type(self).__module__)


def _source_hash(*modules: str) -> str:
    h = hashlib.sha1()
    for mod in modules:
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        files = sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def _entry_points() -> tuple:
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def methods() -> dict[str, Method | Exception]:
    """Registered methods by name: an instance, or the exception that stopped its import.

    A plugin that fails to import is listed with its error rather than
    hiding every other method.
    """
    found: dict[str, Method | Exception] = {}
    for ep in _entry_points():
        try:
            obj = ep.load()
            found[ep.name] = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
            found[ep.name] = exc
    return dict(sorted(found.items()))


def resolve_method(name: str) -> tuple[str, str | None]:
    """The entry-point target (``"module:attr"``) of a method reference, and its argument.

    A reference is a registered name, optionally with an argument after a
    colon: ``"suite2p"``, ``"files:results/{recording}.mat"``.
    """
    base, sep, arg = name.partition(":")
    eps = {ep.name: ep for ep in _entry_points()}
    if base not in eps:
        raise InputError(f"unknown method '{base}'", hint=closest(base, sorted(eps)))
    return eps[base].value, (arg if sep else None)


def get_method(name: str) -> Method:
    """The method registered as ``name`` (``name:ARG`` passes ARG to its constructor).

    An unknown name suggests the closest one.
    """
    base, sep, arg = name.partition(":")
    found = methods()
    if base not in found:
        raise InputError(f"unknown method '{base}'", hint=closest(base, found))
    obj = found[base]
    if isinstance(obj, Exception):
        raise InputError(f"method '{base}' failed to import: {type(obj).__name__}: {obj}")
    return type(obj)(arg) if sep else obj
