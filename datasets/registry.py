"""The data set registry.

Data sets are providers registered through the entry-point group
``bench.datasets`` (the suite's own included), so an outside package can add
one without editing the suite. There is no mutable module-level registry: the
entry points (and, for user recordings, manifests on disk) are the registry.
"""

from __future__ import annotations

import difflib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from datasets.errors import InputError
from datasets.records import Dataset

__all__ = [
    "DatasetProvider",
    "Availability",
    "data_root",
    "providers",
    "registered_providers",
    "get_provider",
    "get",
    "closest",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "bench.datasets"


@dataclass(frozen=True)
class Availability:
    """Whether a data set can be loaded now, and how to get it otherwise."""

    available: bool
    reason: str = ""
    how_to_get: str = ""
    recordings_on_disk: int = 0
    recordings_total: int = 0


class DatasetProvider(ABC):
    """A registered data set: knows where its files live and how to load them.

    Subclasses set ``name`` and ``description`` and implement
    :meth:`availability` and :meth:`load`.
    """

    name: str = ""
    description: str = ""

    @abstractmethod
    def availability(self, root: Path) -> Availability:
        """Say whether the data set is on disk under ``root`` (cheap: no frames read)."""

    @abstractmethod
    def load(self, root: Path) -> Dataset:
        """Open the data set under ``root`` (movies opened lazily, never read whole)."""


def data_root() -> Path:
    """The folder holding all data sets: ``$BENCH_DATA``, else ``$XDG_CACHE_HOME/bench`` or ``~/.cache/bench``."""
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bench"


@lru_cache(maxsize=1)
def _entry_points() -> tuple:
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def registered_providers() -> dict[str, DatasetProvider]:
    """Providers of the ``bench.datasets`` entry points by name (no data root is looked at).

    An entry point that fails to import is skipped here and reported by
    :func:`broken_entry_points`, so one broken plugin does not hide the others.
    """
    found: dict[str, DatasetProvider] = {}
    for ep in _entry_points():
        try:
            obj = ep.load()
        except Exception:  # noqa: BLE001 - reported by broken_entry_points
            continue
        provider = obj() if isinstance(obj, type) else obj
        found[provider.name or ep.name] = provider
    return found


def providers(root: Path | None = None) -> dict[str, DatasetProvider]:
    """Registered providers by name, in name order: entry points, then the data sets they find under ``root``.

    A provider may offer more data sets found on disk through a method
    ``sub_providers(root) -> {name: provider}`` (the ``user`` provider offers
    every data set registered with ``bench datasets add``); these never shadow
    an entry point of the same name.
    """
    root = data_root() if root is None else Path(root)
    found = registered_providers()
    for prov in list(found.values()):
        more = getattr(prov, "sub_providers", None)
        if more is not None:
            for name, sub in more(root).items():
                found.setdefault(name, sub)
    return dict(sorted(found.items()))


def broken_entry_points() -> dict[str, str]:
    """Entry points of ``bench.datasets`` that fail to import, with the error."""
    broken = {}
    for ep in _entry_points():
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
    return broken


def closest(name: str, names) -> str:
    """A 'did you mean' hint for an unknown name, or an empty string."""
    names = list(names)
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if match:
        return f"did you mean '{match[0]}'?"
    return f"known: {', '.join(names)}" if names else "none is registered yet"


def get_provider(name: str, root: Path | None = None) -> DatasetProvider:
    """The provider registered as ``name``; an unknown name suggests the closest one."""
    provs = providers(root)
    if name not in provs:
        raise InputError(f"unknown data set '{name}'", hint=closest(name, provs))
    return provs[name]


def get(name: str, root: Path | None = None) -> Dataset:
    """Load the data set registered as ``name`` from ``root`` (default :func:`data_root`)."""
    root = data_root() if root is None else Path(root)
    return get_provider(name, root).load(root)
