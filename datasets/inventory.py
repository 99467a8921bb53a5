"""What of a data set is on disk: per-recording status, sizes, and the availability built from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from datasets.errors import InputError
from datasets.registry import Availability
from datasets.remote import fetch_command

__all__ = [
    "RecordingStatus",
    "folder_bytes",
    "format_bytes",
    "load_on_disk",
    "inventory_availability",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingStatus:
    """Whether one recording's files are on disk (for ``datasets`` listings)."""

    name: str
    on_disk: bool
    bytes_on_disk: int = 0
    missing: tuple[str, ...] = ()
    note: str = ""


def folder_bytes(path: Path) -> int:
    """Total size of a file or of the files under a folder (0 when absent)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def format_bytes(n: float) -> str:
    """Human-readable size (1.5 GB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def load_on_disk(dataset: str, ids, load_one, *, folder: Path, what: str, hint: str) -> list:
    """Recordings of ``ids`` whose files are on disk; the others are named in a warning.

    Parameters
    ----------
    dataset : str
        Data set name (for messages and the fetch command).
    ids : iterable of str
        Recording ids in order.
    load_one : callable
        ``load_one(id)`` returns a Recording, or None when its files are not on disk.
    folder, what, hint : Path, str, str
        For the error when nothing is on disk: the data set folder, what is
        missing ("ABO movie") and how to get it.

    Raises
    ------
    InputError
        If no recording is on disk.
    """
    recs, missing = [], []
    for rid in ids:
        rec = load_one(rid)
        if rec is None:
            missing.append(rid)
        else:
            recs.append(rec)
    if not recs:
        raise InputError(f"no {what} on disk", path=folder, hint=hint)
    if missing:
        log.warning(
            "%s: %d recording(s) not on disk (%s); get them with `%s`",
            dataset,
            len(missing),
            ", ".join(missing),
            fetch_command(dataset, missing),
        )
    return recs


def inventory_availability(
    dataset: str, inventory: list, folder: Path, detail: str, how_to_get: str | None = None
) -> Availability:
    """Availability of a data set from its per-recording inventory.

    ``detail`` is appended to the on-disk count (e.g. what the markings are);
    ``how_to_get`` is offered when a recording misses files (default: the fetch command).
    """
    on = [st for st in inventory if st.on_disk]
    need = [st.name for st in inventory if st.missing]
    size = sum(st.bytes_on_disk for st in on)
    reason = f"{len(on)}/{len(inventory)} recordings on disk ({format_bytes(size)}) under {folder}; {detail}"
    if on:
        reason += f"; on disk: {', '.join(st.name for st in on)}"
    return Availability(
        available=bool(on),
        reason=reason,
        how_to_get=(how_to_get or fetch_command(dataset, need if len(need) < len(inventory) else [])) if need else "",
        recordings_on_disk=len(on),
        recordings_total=len(inventory),
    )
