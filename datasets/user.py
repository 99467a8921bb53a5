"""Recordings a user registers from their own files, served like any other data set.

``add_recording`` checks a movie (multi-page TIFF, folder of TIFF frames,
HDF5/NWB with a key, ``.npy``) and optional masks (any format
:func:`datasets.maskio.load_masks` reads, or an NWB PlaneSegmentation), then
writes a small JSON manifest ``<root>/user/<NAME>.json``; the files stay where
they are. Each manifest is a data set named NAME with one recording, and
:class:`UserDatasets` (registered as ``user``) gathers them all.

The manifests are the registry: nothing is held in memory between calls.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.layouts import RecordingStatus, format_bytes, nwb_series, open_movie, read_json, write_json_atomic
from datasets.masks import Masks
from datasets.movies import HDF5Movie, Movie
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider, closest, data_root

__all__ = [
    "add_recording",
    "remove_recording",
    "user_names",
    "user_providers",
    "UserDataset",
    "UserDatasets",
    "manifest_path",
    "USER_FOLDER",
]

log = logging.getLogger(__name__)

USER_FOLDER = "user"
_FORMAT = "bench-user-recording-v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Names that would shadow the suite's own data sets.
_RESERVED = {"user", "neurofinder", "abo", "synthetic", "synthetic-neurofinder", "synthetic-tiny"}


def _root(root) -> Path:
    return Path(data_root() if root is None else root).expanduser()


def manifest_path(name: str, root: str | Path | None = None) -> Path:
    """``<root>/user/<name>.json``."""
    return _root(root) / USER_FOLDER / f"{name}.json"


def user_names(root: str | Path | None = None) -> list[str]:
    """Names of the registered user recordings, sorted."""
    folder = _root(root) / USER_FOLDER
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise InputError(
            f"invalid name '{name}'",
            hint="use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)",
        )
    taken = set(_RESERVED)
    try:
        from datasets.registry import providers

        taken |= set(providers())
    except Exception:  # noqa: BLE001 - a broken plugin must not block registering
        pass
    if name in taken:
        raise InputError(f"'{name}' is the name of a built-in data set", hint="choose another name")


def _movie_kind(path: Path) -> str:
    if path.is_dir():
        return "tiff-folder"
    return {".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".nwb": "nwb"}.get(path.suffix.lower(), "hdf5")


def _load_masks(path: Path, frame: tuple[int, int], var, axes, key) -> tuple[Masks, dict]:
    from datasets.layouts import read_nwb_masks
    from datasets.maskio import load_masks

    if path.suffix.lower() == ".nwb":
        masks = read_nwb_masks(path, frame, name=var)
        return masks, {"format": "nwb-plane-segmentation", "var": var}
    try:
        loaded = load_masks(path, var=var, axes=axes, frame=frame)
    except InputError as exc:
        raise InputError(
            f"{exc} - the masks do not fit the {frame[0]}x{frame[1]} movie frame"
            if "fit" in str(exc) or "frame" in str(exc)
            else str(exc),
            hint="masks must index the movie's frame (same size and crop); pass --var/--axes when ambiguous",
        ) from exc
    return loaded.masks, {
        "format": loaded.format,
        "var": loaded.variable,
        "axes": list(loaded.axes) if loaded.axes is not None else None,
        "note": loaded.note,
    }


def _sample_check(movie: Movie, where: Path) -> None:
    """Read the first and last frame: the file is readable to its end and, for floats, finite there."""
    if movie.n_frames == 0:
        raise InputError("the movie has no frames", path=where)
    for i in sorted({0, movie.n_frames - 1}):
        block = movie.read(i, i + 1)  # the checked movie raises on NaN/Inf
        if block.dtype.kind not in "uifb":
            raise InputError(f"movie values must be numeric, got dtype {block.dtype}", path=where)


def add_recording(
    name: str,
    movie_path: str | Path,
    masks_path: str | Path | None = None,
    fps: float | None = None,
    um_per_px: float | None = None,
    key: str | None = None,
    root: str | Path | None = None,
    *,
    indicator: str | None = None,
    split: str = "test",
    var: str | None = None,
    axes: tuple[int, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Register a recording from the user's files; return the manifest written.

    Parameters
    ----------
    name : str
        Data set name (letters, digits, ``._-``); also the recording name.
    movie_path : str or Path
        Multi-page TIFF, folder of TIFF frames, HDF5 (``key`` = dataset), NWB
        (``key`` = TwoPhotonSeries name, optional when there is one) or ``.npy``.
    masks_path : str or Path, optional
        Ground-truth masks (MATLAB, ``.npy``/``.npz``, HDF5, regions JSON,
        Suite2p ``stat.npy``, label image, ImageJ ROI, NWB PlaneSegmentation);
        they must fit the movie's frame.
    fps, um_per_px : float
        Frame rate (Hz) and pixel size (um). ``fps`` may be omitted for an NWB
        movie that stores its rate.
    key : str, optional
        HDF5 dataset or NWB series holding the movie.
    root : str or Path, optional
        Data root (default :func:`datasets.registry.data_root`).
    indicator, split : str
        Calcium indicator and ``"train"``/``"test"``.
    var, axes : optional
        Passed to :func:`datasets.maskio.load_masks` for ambiguous mask files.
    overwrite : bool
        Replace an existing registration of the same name.

    Raises
    ------
    InputError
        For a bad name, a missing or unreadable movie, frames of different
        sizes, NaN/Inf in the first or last frame, masks that do not fit the
        frame, or a missing frame rate or pixel size.
    """
    _check_name(name)
    out = manifest_path(name, root)
    if out.exists() and not overwrite:
        raise InputError(f"a recording named '{name}' is already registered", path=out, hint="use --overwrite")
    movie_path = Path(movie_path).expanduser().resolve()
    movie = open_movie(movie_path, key=key)
    kind = _movie_kind(movie_path)
    if fps is None and kind == "nwb":
        fps = nwb_series(movie_path, key)[1]
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise InputError("the frame rate is unknown or not positive", path=movie_path, hint="pass --fps HZ")
    if um_per_px is None or not np.isfinite(um_per_px) or um_per_px <= 0:
        raise InputError("the pixel size is unknown or not positive", path=movie_path, hint="pass --um-per-px UM")
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    _sample_check(movie, movie_path)

    masks_info = None
    if masks_path is not None:
        masks_path = Path(masks_path).expanduser().resolve()
        masks, masks_info = _load_masks(masks_path, movie.frame_shape, var, axes, key)
        masks_info.update({"path": str(masks_path), "n": masks.n})

    stat = movie_path.stat()
    manifest = {
        "format": _FORMAT,
        "name": name,
        "movie": {
            "path": str(movie_path),
            "kind": kind,
            # NWB: the series name given (None: the only one); HDF5: the dataset path resolved.
            "key": key if kind == "nwb" or not isinstance(movie, HDF5Movie) else movie.key,
            "shape": list(movie.shape),
            "dtype": str(movie.dtype),
            "bytes": _bytes(movie_path),
            "mtime": stat.st_mtime,
        },
        "masks": masks_info,
        "fps": float(fps),
        "um_per_px": float(um_per_px),
        "indicator": indicator,
        "split": split,
        "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out, manifest)
    log.info("registered %s: %s %s", name, movie_path, "x".join(map(str, movie.shape)))
    return out


def remove_recording(name: str, root: str | Path | None = None) -> Path:
    """Forget a registered recording (its files are left alone); return the manifest removed."""
    path = manifest_path(name, root)
    if not path.is_file():
        raise InputError(f"no user recording '{name}'", hint=closest(name, user_names(root)))
    path.unlink()
    return path


def _bytes(path: Path) -> int:
    from datasets.layouts import folder_bytes

    return folder_bytes(path)


def _read_manifest(path: Path) -> dict:
    data = read_json(path)
    if data.get("format") != _FORMAT:
        raise InputError(f"not a user recording manifest (format {data.get('format')!r})", path=path)
    return data


def _recording(m: dict, where: Path) -> Recording:
    mv = m["movie"]
    path = Path(mv["path"])
    if not path.exists():
        raise InputError(
            "the registered movie is gone",
            path=path,
            hint=f"move it back or register it again (python -m bench datasets add {m['name']} --movie PATH ...)",
        )
    movie = open_movie(path, key=mv.get("key"))
    if list(movie.shape) != list(mv["shape"]):
        raise InputError(
            f"the movie is now {movie.shape}, it was {tuple(mv['shape'])} when registered",
            path=path,
            hint="register it again",
        )
    gts = {}
    if m.get("masks"):
        info = m["masks"]
        mpath = Path(info["path"])
        frame = movie.frame_shape

        def load(info=info, mpath=mpath, frame=frame):
            axes = tuple(info["axes"]) if info.get("axes") else None
            masks, _ = _load_masks(mpath, frame, info.get("var"), axes, None)
            return masks

        gts["default"] = load
    return Recording(
        name=m["name"],
        movie=movie,
        fps=m["fps"],
        um_per_px=m["um_per_px"],
        ground_truths=gts,
        indicator=m.get("indicator"),
        split=m.get("split", "test"),
        group=m["name"],
        provenance={"manifest": str(where), "movie": mv["path"], "masks": (m.get("masks") or {}).get("path")},
    )


class UserDataset(DatasetProvider):
    """One registered recording, served as a data set of its own name."""

    def __init__(self, name: str):
        self.name = name
        self.description = f"user recording '{name}'"

    def _manifest(self, root: Path) -> tuple[Path, dict]:
        path = manifest_path(self.name, root)
        if not path.is_file():
            raise InputError(f"no user recording '{self.name}'", path=path, hint=closest(self.name, user_names(root)))
        return path, _read_manifest(path)

    def inventory(self, root: Path) -> list[RecordingStatus]:
        path, m = self._manifest(root)
        movie = Path(m["movie"]["path"])
        return [
            RecordingStatus(
                name=self.name,
                on_disk=movie.exists(),
                bytes_on_disk=_bytes(movie) if movie.exists() else 0,
                missing=() if movie.exists() else (str(movie),),
                note=str(path),
            )
        ]

    def availability(self, root: Path) -> Availability:
        try:
            (status,) = self.inventory(root)
        except InputError as exc:
            return Availability(False, reason=str(exc), recordings_total=1)
        return Availability(
            available=status.on_disk,
            reason=f"{format_bytes(status.bytes_on_disk)} at {status.note}"
            if status.on_disk
            else f"the movie {status.missing[0]} is missing",
            how_to_get="" if status.on_disk else f"register it again: python -m bench datasets add {self.name} ...",
            recordings_on_disk=int(status.on_disk),
            recordings_total=1,
        )

    def load(self, root: Path) -> Dataset:
        path, m = self._manifest(root)
        rec = _recording(m, path)
        return Dataset(self.name, [rec], self.description, default_grader="default")


class UserDatasets(DatasetProvider):
    """Every registered user recording in one data set (registered as ``user``)."""

    name = "user"
    description = "all recordings registered with `python -m bench datasets add`"

    def availability(self, root: Path) -> Availability:
        names = user_names(root)
        if not names:
            return Availability(
                False,
                reason="no recording registered",
                how_to_get="python -m bench datasets add NAME --movie PATH [--masks PATH] --fps F --um-per-px P",
            )
        stats = [UserDataset(n).availability(root) for n in names]
        on = sum(s.recordings_on_disk for s in stats)
        return Availability(
            available=on > 0,
            reason=f"{on}/{len(names)} registered recordings on disk: {', '.join(names)}",
            recordings_on_disk=on,
            recordings_total=len(names),
        )

    def load(self, root: Path) -> Dataset:
        names = user_names(root)
        if not names:
            raise InputError(
                "no user recording is registered",
                path=Path(root) / USER_FOLDER,
                hint="python -m bench datasets add NAME --movie PATH --fps F --um-per-px P",
            )
        recs = [_recording(_read_manifest(manifest_path(n, root)), manifest_path(n, root)) for n in names]
        return Dataset(self.name, recs, self.description, default_grader="default")


def user_providers(root: str | Path | None = None) -> dict[str, DatasetProvider]:
    """A provider per registered user recording, by name (for listings beside the entry points)."""
    return {n: UserDataset(n) for n in user_names(root)}
