"""What every method adapter is and returns: `Method` and `Segmentation`.

Adapters register through the entry-point group ``bench.methods`` (the
suite's own included), so an outside package adds a method by declaring, in
its own ``pyproject.toml``::

    [project.entry-points."bench.methods"]
    mymethod = "mypackage.adapter:MyMethod"
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Recording
from datasets.registry import closest

__all__ = ["Method", "Segmentation", "methods", "get_method", "resolve_method", "ENTRY_POINT_GROUP"]

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
    snapshots : list
        For online methods: ``(seconds_into_recording, Masks)`` pairs, the
        masks the method had at that time of the recording (F1 against time).
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

    @property
    def frames_per_s(self) -> float:
        """Frames per processing second (NaN when not timed)."""
        return self.n_frames / self.process_s if self.process_s > 0 else float("nan")


class Method(ABC):
    """An adapter that segments active neurons in a recording.

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
    """

    name: str = ""
    description: str = ""
    requirements: tuple[str, ...] = ()
    #: False for methods too slow for the default run (``--methods all``); they run when named.
    in_default_run: bool = True

    def default_params(self, recording: Recording) -> dict[str, Any]:
        """Parameters for a recording (derived from its frame rate and pixel size)."""
        return {}

    def param_grid(self, recording: Recording) -> dict[str, list]:
        """Small grid searched by leave-one-out tuning (name -> candidate values)."""
        return {}

    def is_available(self) -> tuple[bool, str]:
        """Whether the method can run here, and why not (with how to install it)."""
        missing = [m for m in self.requirements if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing Python package(s): {', '.join(missing)}"
        return True, ""

    @abstractmethod
    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        """Segment one recording with the given parameters."""


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
