"""Data sets a user registers from their own annotated recordings, served like any other data set.

``add_recording`` checks a movie (multi-page TIFF, folder of TIFF frames,
HDF5/NWB with a key, ``.npy``) and optional masks (any format
:func:`datasets.maskio.load_masks` reads, or an NWB PlaneSegmentation), then
adds it to the small JSON manifest ``<root>/user/<NAME>.json``; the files stay
where they are. A manifest is a data set named NAME holding any number of
recordings (each with an id, a split and a group), so a lab's own annotations
can train and test a method. :class:`UserDatasets` (registered as ``user``)
offers every manifest as a data set of its own name and gathers them all.

Registration reads the movie once, in chunks: NaN or Inf anywhere, a constant
movie or too few frames are refused, and the registration border is detected
(:func:`datasets.borders.detect_border`) unless given. The movie is then
always opened inside that crop, and the masks are cropped to match.

The manifests are the registry: nothing is held in memory between calls.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from datasets.borders import crop_ground_truth, crop_slices, detect_border, pixel_stats
from datasets.errors import InputError
from datasets.inventory import RecordingStatus, folder_bytes, inventory_availability
from datasets.jsonio import read_json, write_json_atomic
from datasets.masks import Masks
from datasets.movie_files import open_movie
from datasets.movies import HDF5Movie
from datasets.nwb import nwb_series, read_nwb_masks
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider, closest, data_root, registered_providers

__all__ = [
    "add_recording",
    "remove_recording",
    "user_names",
    "user_providers",
    "UserDataset",
    "UserDatasets",
    "manifest_path",
    "USER_FOLDER",
    "MIN_FRAMES",
]

log = logging.getLogger(__name__)

USER_FOLDER = "user"
_FORMAT = "bench-user-dataset-v2"
#: Manifests written before a data set could hold several recordings (read, and upgraded when added to).
_FORMAT_V1 = "bench-user-recording-v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Names that would shadow the suite's own data sets (also when their plugin fails to import).
_RESERVED = {"user", "neurofinder", "abo", "synthetic", "synthetic-neurofinder", "synthetic-tiny"}
#: Fewest frames a registered movie may have: temporal statistics (SD, correlation image) of
#: fewer frames are noise, and every method fails on them later instead of now.
MIN_FRAMES = 10


def _root(root) -> Path:
    return Path(data_root() if root is None else root).expanduser()


def manifest_path(name: str, root: str | Path | None = None) -> Path:
    """``<root>/user/<name>.json``."""
    return _root(root) / USER_FOLDER / f"{name}.json"


def user_names(root: str | Path | None = None) -> list[str]:
    """Names of the registered user data sets, sorted."""
    folder = _root(root) / USER_FOLDER
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _check_id(text: str, what: str) -> None:
    if not _NAME.match(text or ""):
        raise InputError(
            f"invalid {what} '{text}'",
            hint="use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)",
        )


def _check_name(name: str) -> None:
    _check_id(name, "name")
    taken = set(_RESERVED)
    try:
        # Entry points only: a user data set's own name is not "built in", so adding to it works.
        taken |= set(registered_providers())
    except Exception:  # noqa: BLE001 - a broken plugin must not block registering
        pass
    if name in taken:
        raise InputError(f"'{name}' is the name of a built-in data set", hint="choose another name")


def _movie_kind(path: Path) -> str:
    if path.is_dir():
        return "tiff-folder"
    return {".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".nwb": "nwb"}.get(path.suffix.lower(), "hdf5")


def _load_masks(path: Path, frame: tuple[int, int], var, axes) -> tuple[Masks, dict]:
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


def _masks_in_frame(path: Path, raw: tuple[int, int], cropped: tuple[int, int], var, axes) -> tuple[Masks, dict]:
    """Masks of the movie's whole frame (the usual case) or, failing that, of the cropped frame."""
    try:
        masks, info = _load_masks(path, raw, var, axes)
        return masks, {**info, "frame": "raw"}
    except InputError:
        if cropped == raw:
            raise
    try:
        masks, info = _load_masks(path, cropped, var, axes)
    except InputError as exc:
        raise InputError(
            f"the masks fit neither the {raw[0]}x{raw[1]} movie frame nor its {cropped[0]}x{cropped[1]} crop",
            path=path,
            hint="masks must index the movie's frame; pass --var/--axes when ambiguous",
        ) from exc
    return masks, {**info, "frame": "cropped"}


def _check_movie(movie, where: Path):
    """Read the whole movie once, in chunks: enough frames, no NaN/Inf anywhere, not constant."""
    if movie.n_frames < MIN_FRAMES:
        raise InputError(
            f"the movie has {movie.n_frames} frame(s); at least {MIN_FRAMES} are needed",
            path=where,
            hint="register the whole recording, not a few frames",
        )
    stats = pixel_stats(movie)
    if stats.constant:
        raise InputError(
            f"the movie is constant (every pixel of every frame is {stats.vmin:g})",
            path=where,
            hint="is this the right file (or --key dataset)?",
        )
    return stats


def _empty_manifest(name: str) -> dict:
    return {"format": _FORMAT, "name": name, "recordings": []}


def _upgrade(data: dict) -> dict:
    """A v1 manifest (one recording named as its data set) as a v2 data set of that one recording."""
    rec = {k: data.get(k) for k in ("movie", "masks", "fps", "um_per_px", "indicator", "split", "added")}
    rec.update(id=data["name"], group=data["name"], crop=[0, 0, 0, 0], crop_source="none (registered before crops)")
    return {"format": _FORMAT, "name": data["name"], "recordings": [rec]}


def _read_manifest(path: Path) -> dict:
    data = read_json(path)
    if data.get("format") == _FORMAT_V1:
        return _upgrade(data)
    if data.get("format") != _FORMAT or not isinstance(data.get("recordings"), list):
        raise InputError(f"not a user data set manifest (format {data.get('format')!r})", path=path)
    return data


def add_recording(
    name: str,
    movie_path: str | Path,
    masks_path: str | Path | None = None,
    fps: float | None = None,
    um_per_px: float | None = None,
    key: str | None = None,
    root: str | Path | None = None,
    *,
    recording: str | None = None,
    indicator: str | None = None,
    split: str = "test",
    group: str | None = None,
    var: str | None = None,
    axes: tuple[int, ...] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Add a recording to the user data set ``name`` (created when new); return the manifest written.

    Parameters
    ----------
    name : str
        Data set name (letters, digits, ``._-``).
    movie_path : str or Path
        Multi-page TIFF, folder of TIFF frames, HDF5 (``key`` = dataset), NWB
        (``key`` = TwoPhotonSeries name, optional when there is one) or ``.npy``.
    masks_path : str or Path, optional
        Ground-truth masks (MATLAB, ``.npy``/``.npz``, HDF5, regions JSON,
        Suite2p ``stat.npy``, label image, ImageJ ROI, NWB PlaneSegmentation)
        of the movie's whole frame (or of the cropped frame); they are cropped
        with the movie.
    fps, um_per_px : float
        Frame rate (Hz) and pixel size (um). ``fps`` may be omitted for an NWB
        movie that stores its rate.
    key : str, optional
        HDF5 dataset or NWB series holding the movie.
    root : str or Path, optional
        Data root (default :func:`datasets.registry.data_root`).
    recording : str, optional
        The recording's id within the data set (default: ``name``).
    indicator, split : str
        Calcium indicator and ``"train"``/``"test"``.
    group : str, optional
        Recordings of one group (same field of view or animal) are left out
        together in leave-one-out folds (default: the recording id).
    var, axes : optional
        Passed to :func:`datasets.maskio.load_masks` for ambiguous mask files.
    crop : (int, int, int, int), optional
        Pixels cut from the top, bottom, left and right; default: the
        registration border detected from the movie.
    overwrite : bool
        Replace a recording of the same id in the data set.

    Raises
    ------
    InputError
        For a bad name or id, a recording id already in the data set (without
        ``overwrite``), a missing or unreadable movie, frames of different
        sizes, NaN/Inf in any frame, a constant movie, fewer than
        :data:`MIN_FRAMES` frames, a crop larger than the frame, masks that do
        not fit the frame, or a missing frame rate or pixel size.
    """
    _check_name(name)
    rec_id = name if recording is None else recording
    _check_id(rec_id, "recording id")
    out = manifest_path(name, root)
    manifest = _read_manifest(out) if out.exists() else _empty_manifest(name)
    ids = [r["id"] for r in manifest["recordings"]]
    if rec_id in ids and not overwrite:
        raise InputError(
            f"data set '{name}' already holds a recording '{rec_id}'",
            path=out,
            hint="use --overwrite to replace it, or --recording ID to add another",
        )
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    movie_path = Path(movie_path).expanduser().resolve()
    movie = open_movie(movie_path, key=key)
    kind = _movie_kind(movie_path)
    if fps is None and kind == "nwb":
        fps = nwb_series(movie_path, key)[1]
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise InputError("the frame rate is unknown or not positive", path=movie_path, hint="pass --fps HZ")
    if um_per_px is None or not np.isfinite(um_per_px) or um_per_px <= 0:
        raise InputError("the pixel size is unknown or not positive", path=movie_path, hint="pass --um-per-px UM")
    raw = movie.frame_shape
    if crop is not None:
        crop_slices(crop, raw, where=movie_path)  # a crop larger than the frame fails before the long read
    stats = _check_movie(movie, movie_path)
    crop_source = "given" if crop is not None else "detected"
    border = tuple(int(v) for v in (crop if crop is not None else detect_border(stats)))
    rows, cols = crop_slices(border, raw, where=movie_path)
    cropped = (rows.stop - rows.start, cols.stop - cols.start)

    masks_info = None
    if masks_path is not None:
        masks_path = Path(masks_path).expanduser().resolve()
        masks, masks_info = _masks_in_frame(masks_path, raw, cropped, var, axes)
        masks_info.update({"path": str(masks_path), "n": masks.n})

    stat = movie_path.stat()
    entry = {
        "id": rec_id,
        "movie": {
            "path": str(movie_path),
            "kind": kind,
            # NWB: the series name given (None: the only one); HDF5: the dataset path resolved.
            "key": key if kind == "nwb" or not isinstance(movie, HDF5Movie) else movie.key,
            "shape": list(movie.shape),
            "dtype": str(movie.dtype),
            "bytes": folder_bytes(movie_path),
            "mtime": stat.st_mtime,
        },
        "crop": list(border),
        "crop_source": crop_source,
        "masks": masks_info,
        "fps": float(fps),
        "um_per_px": float(um_per_px),
        "indicator": indicator,
        "split": split,
        "group": group or rec_id,
        "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if rec_id in ids:  # replaced in place: the data set's order is the order recordings were added
        manifest["recordings"][ids.index(rec_id)] = entry
    else:
        manifest["recordings"].append(entry)
    write_json_atomic(out, manifest)
    log.info(
        "registered %s/%s: %s %s, crop T,B,L,R %s (%s)",
        name,
        rec_id,
        movie_path,
        "x".join(map(str, movie.shape)),
        ",".join(map(str, border)),
        crop_source,
    )
    return out


def remove_recording(name: str, root: str | Path | None = None, recording: str | None = None) -> Path:
    """Forget a user data set, or one recording of it (its files are left alone); return the manifest path."""
    path = manifest_path(name, root)
    if not path.is_file():
        raise InputError(f"no user data set '{name}'", hint=closest(name, user_names(root)))
    if recording is None:
        path.unlink()
        return path
    manifest = _read_manifest(path)
    ids = [r["id"] for r in manifest["recordings"]]
    if recording not in ids:
        raise InputError(f"data set '{name}' has no recording '{recording}'", path=path, hint=closest(recording, ids))
    manifest["recordings"] = [r for r in manifest["recordings"] if r["id"] != recording]
    if manifest["recordings"]:
        write_json_atomic(path, manifest)
    else:
        path.unlink()
    return path


def _recording(entry: dict, dataset: str, where: Path, rec_name: str | None = None) -> Recording:
    mv = entry["movie"]
    path = Path(mv["path"])
    if not path.exists():
        raise InputError(
            "the registered movie is gone",
            path=path,
            hint=f"move it back or register it again (python -m bench datasets add {dataset} "
            f"--recording {entry['id']} --movie PATH --fps HZ --um-per-px UM --overwrite)",
        )
    raw_movie = open_movie(path, key=mv.get("key"))
    if list(raw_movie.shape) != list(mv["shape"]):
        raise InputError(
            f"the movie is now {raw_movie.shape}, it was {tuple(mv['shape'])} when registered",
            path=path,
            hint="register it again",
        )
    raw = raw_movie.frame_shape
    rows, cols = crop_slices(entry.get("crop") or (0, 0, 0, 0), raw, where=where)
    movie = open_movie(path, key=mv.get("key"), rows=rows, cols=cols)
    gts = {}
    if entry.get("masks"):
        info = entry["masks"]
        mpath = Path(info["path"])

        def load(info=info, mpath=mpath):
            axes = tuple(info["axes"]) if info.get("axes") else None
            if info.get("frame", "raw") == "cropped":
                return _load_masks(mpath, movie.frame_shape, info.get("var"), axes)[0]
            masks, _ = _load_masks(mpath, raw, info.get("var"), axes)
            return crop_ground_truth(masks, rows, cols, mpath)

        gts["default"] = load
    return Recording(
        name=rec_name or entry["id"],
        movie=movie,
        fps=entry["fps"],
        um_per_px=entry["um_per_px"],
        ground_truths=gts,
        indicator=entry.get("indicator"),
        split=entry.get("split", "test"),
        group=entry.get("group") or entry["id"],
        provenance={
            "manifest": str(where),
            "dataset": dataset,
            "recording": entry["id"],
            "movie": mv["path"],
            "masks": (entry.get("masks") or {}).get("path"),
            "crop": {"rows": [rows.start, rows.stop], "cols": [cols.start, cols.stop]},
            "crop_source": entry.get("crop_source"),
        },
    )


class UserDataset(DatasetProvider):
    """One user data set (a manifest), served under its own name."""

    def __init__(self, name: str):
        self.name = name
        self.description = f"user data set '{name}'"

    def _manifest(self, root: Path) -> tuple[Path, dict]:
        path = manifest_path(self.name, root)
        if not path.is_file():
            raise InputError(f"no user data set '{self.name}'", path=path, hint=closest(self.name, user_names(root)))
        return path, _read_manifest(path)

    def inventory(self, root: Path) -> list[RecordingStatus]:
        """One :class:`RecordingStatus` per recording (no frame is read)."""
        path, m = self._manifest(root)
        out = []
        for entry in m["recordings"]:
            movie = Path(entry["movie"]["path"])
            out.append(
                RecordingStatus(
                    name=entry["id"],
                    on_disk=movie.exists(),
                    bytes_on_disk=folder_bytes(movie),
                    missing=() if movie.exists() else (str(movie),),
                    note=str(path),
                )
            )
        return out

    def availability(self, root: Path) -> Availability:
        try:
            inventory = self.inventory(root)
        except InputError as exc:
            return Availability(False, reason=str(exc), recordings_total=1)
        missing = [m for st in inventory for m in st.missing]
        return inventory_availability(
            self.name,
            inventory,
            manifest_path(self.name, root),
            f"missing: {', '.join(missing)}" if missing else "all movies in place",
            how_to_get=f"register them again: python -m bench datasets add {self.name} --recording ID "
            "--movie PATH --fps HZ --um-per-px UM --overwrite",
        )

    def load(self, root: Path) -> Dataset:
        path, m = self._manifest(root)
        recs = [_recording(entry, self.name, path) for entry in m["recordings"]]
        return Dataset(self.name, recs, self.description, default_grader="default")


class UserDatasets(DatasetProvider):
    """Every recording of every user data set in one data set (registered as ``user``).

    A recording is named ``NAME.ID`` here (just ``NAME`` when its id is the
    data set's name), so that ids repeated across data sets stay distinct.
    """

    name = "user"
    description = "all recordings registered with `python -m bench datasets add`"

    def sub_providers(self, root: Path) -> dict[str, DatasetProvider]:
        """A provider per user data set under ``root`` (listed by the registry beside the entry points)."""
        return user_providers(root)

    def availability(self, root: Path) -> Availability:
        names = user_names(root)
        if not names:
            return Availability(
                False,
                reason="no recording registered",
                how_to_get="python -m bench datasets add NAME --movie PATH --masks PATH --fps HZ --um-per-px UM",
            )
        stats = [UserDataset(n).availability(root) for n in names]
        on = sum(s.recordings_on_disk for s in stats)
        total = sum(s.recordings_total for s in stats)
        return Availability(
            available=on > 0,
            reason=f"{on}/{total} registered recordings on disk in {', '.join(names)}",
            recordings_on_disk=on,
            recordings_total=total,
        )

    def load(self, root: Path) -> Dataset:
        names = user_names(root)
        if not names:
            raise InputError(
                "no user recording is registered",
                path=Path(root) / USER_FOLDER,
                hint="python -m bench datasets add NAME --movie PATH --fps HZ --um-per-px UM",
            )
        recs = []
        for n in names:
            path = manifest_path(n, root)
            for entry in _read_manifest(path)["recordings"]:
                full = n if entry["id"] == n else f"{n}.{entry['id']}"
                recs.append(_recording(entry, n, path, rec_name=full))
        return Dataset(self.name, recs, self.description, default_grader="default")


def user_providers(root: str | Path | None = None) -> dict[str, DatasetProvider]:
    """A provider per registered user data set, by name (for listings beside the entry points)."""
    return {n: UserDataset(n) for n in user_names(root)}
