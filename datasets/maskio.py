"""Reading and writing mask files in the formats real pipelines produce.

Formats read: MATLAB v5 and v7.3 (any single mask variable; uint8, float or
bool), ``.npy``/``.npz`` stacks and label images, HDF5, Neurofinder
``regions.json``, Suite2p ``stat.npy``, label images (TIFF/PNG), ImageJ
ROI files (``.roi``, ``.zip``) and NWB PlaneSegmentations (``.nwb``).

Orientation. A dense file stores masks as a 3-D array whose mask axis and
in-plane order depend on its producer: MATLAB pipelines store (x, y, N) or
(rows, cols, N) depending on how they read the movie, and Python writers
store (N, rows, cols). Every array is therefore described by the permutation
``axes`` that maps the array *as stored* (scipy's view of a v5 file, h5py's
view of a v7.3 file) to (N, rows, cols). The caller who knows the producer
passes ``axes``; otherwise :func:`load_masks` uses the format's default
(v5: (2, 1, 0), i.e. the same view h5py gives of a v7.3 file of the same
array; everything else as stored) and, given a reference frame, keeps only
the permutations that fit it, choosing among several (square frames) by
agreement with the reference masks. The choice is reported in
:attr:`LoadedMasks.note`.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.safeload import load_npy

__all__ = [
    "LoadedMasks",
    "load_masks",
    "read_regions_json",
    "regions_coordinates",
    "write_regions_json",
    "save_masks",
    "write_mat",
    "is_mat73",
    "MASK_SUFFIXES",
]

log = logging.getLogger(__name__)

MASK_SUFFIXES = (".mat", ".h5", ".hdf5", ".npy", ".npz", ".json", ".tif", ".tiff", ".png", ".roi", ".zip")
_MATLAB_META = {"__header__", "__version__", "__globals__"}


@dataclass(frozen=True)
class LoadedMasks:
    """Masks read from a file, with how they were read.

    Attributes
    ----------
    masks : Masks
        The masks over (rows, cols).
    path : Path
        The file read.
    format : str
        ``mat-v5``, ``mat-v7.3``, ``hdf5``, ``npy``, ``npz``, ``bench-npz``,
        ``regions-json``, ``suite2p-stat``, ``label-image``, ``imagej-roi``, ``nwb-plane-segmentation``.
    variable : str or None
        The variable or dataset read, for container formats.
    stored_shape : tuple or None
        Shape of the array as stored (dense formats).
    axes : tuple or None
        Permutation applied to the stored array to get (N, rows, cols); for a
        2-D label image, (0, 1) or (1, 0).
    note : str
        How the orientation was decided.
    """

    masks: Masks
    path: Path
    format: str
    variable: str | None = None
    stored_shape: tuple[int, ...] | None = None
    axes: tuple[int, ...] | None = None
    note: str = ""


# ---------------------------------------------------------------------------- public API
def load_masks(
    path: str | Path,
    *,
    var: str | None = None,
    axes: tuple[int, ...] | None = None,
    frame: tuple[int, int] | None = None,
    reference: Masks | None = None,
) -> LoadedMasks:
    """Read masks from a file.

    Parameters
    ----------
    path : str or Path
        The mask file.
    var : str, optional
        Variable (MATLAB), dataset (HDF5) or array (``.npz``) to read; needed
        when the file holds several candidates.
    axes : tuple of int, optional
        Permutation of the stored array to (N, rows, cols), when known.
    frame : (int, int), optional
        The (rows, cols) frame the masks must fit; required for formats that
        store pixel coordinates (regions JSON, Suite2p stat, ImageJ ROI)
        unless ``reference`` is given.
    reference : Masks, optional
        Masks over the target frame (usually the ground truth): fixes
        ``frame`` and resolves ambiguous orientations by agreement.

    Returns
    -------
    LoadedMasks

    Raises
    ------
    InputError
        For a missing, unreadable or truncated file, several candidate
        variables, an empty stack, non-binary values, or masks that fit the
        frame in no orientation.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        raise InputError("is a folder, expected a mask file", path=path)
    if reference is not None:
        if frame is not None and tuple(frame) != reference.shape:
            raise InputError(f"frame {frame} differs from the reference frame {reference.shape}", path=path)
        frame = reference.shape
    suffix = path.suffix.lower()
    name = path.name.lower()

    if suffix == ".json":
        loaded = LoadedMasks(read_regions_json(path, _need_frame(path, frame)), path, "regions-json")
    elif suffix in (".roi", ".zip"):
        loaded = LoadedMasks(_read_imagej(path, _need_frame(path, frame)), path, "imagej-roi")
    elif suffix == ".npy" and name.startswith("stat"):
        loaded = LoadedMasks(_read_suite2p_stat(path, _need_frame(path, frame)), path, "suite2p-stat")
    elif suffix == ".nwb":
        from datasets.nwb import read_nwb_masks

        masks = read_nwb_masks(path, frame, name=var)
        _check_frame(path, masks.shape, frame)
        loaded = LoadedMasks(masks, path, "nwb-plane-segmentation", variable=var)
    elif suffix == ".npz" and _is_bench_npz(path):
        masks = Masks.load(path)
        _check_frame(path, masks.shape, frame)
        loaded = LoadedMasks(masks, path, "bench-npz", axes=(0, 1, 2))
    else:
        array, fmt, variable = _read_array(path, suffix, var)
        loaded = _orient(path, array, fmt, variable, axes, frame, reference)
    return _drop_empty(loaded)


def _drop_empty(loaded: LoadedMasks) -> LoadedMasks:
    """Drop masks without pixels, saying so in the log.

    An empty mask can never match, so it would count as a false positive (or
    an unfindable neuron) without a word; dense stacks preallocated with
    spare all-zero slots are common in MATLAB pipelines, so they are dropped
    rather than refused.
    """
    masks = loaded.masks
    empty = masks.areas == 0
    if not empty.any():
        return loaded
    log.warning(
        "%s: dropped %d empty mask(s) (no pixel set) of %d; %d left",
        loaded.path, int(empty.sum()), masks.n, int((~empty).sum()),
    )
    return replace(loaded, masks=masks.subset(np.flatnonzero(~empty)))


def read_regions_json(path: str | Path, shape: tuple[int, int]) -> Masks:
    """Read a Neurofinder ``regions.json`` (``[{"coordinates": [[row, col], ...]}, ...]``)."""
    path = Path(path)
    try:
        regions = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path=path) from exc
    try:
        return Masks.from_coordinates(regions_coordinates(regions, path), shape)
    except InputError as exc:
        raise InputError(str(exc), path=path) from exc


def regions_coordinates(regions, path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-region (rows, cols) of parsed Neurofinder regions, checked: [row, col] pairs only, never reshaped.

    Whole-number checks of the values happen in :meth:`Masks.from_coordinates`.
    """
    if not isinstance(regions, list) or not all(isinstance(r, dict) and "coordinates" in r for r in regions):
        raise InputError(
            "not a Neurofinder regions file: expected a list of {'coordinates': [[row, col], ...]}", path=path
        )
    coords = []
    for k, r in enumerate(regions):
        try:
            c = np.asarray(r["coordinates"])
        except ValueError:  # points of different lengths
            c = np.asarray(None, dtype=object)
        if c.size == 0:
            c = np.zeros((0, 2), np.int64)
        if c.ndim != 2 or c.shape[1] != 2 or c.dtype == object:
            found = f"points of {c.shape[1]} numbers" if c.ndim == 2 else "points of differing or nested shape"
            raise InputError(f"region {k}: coordinates must be [row, col] pairs, found {found}", path=path)
        coords.append((c[:, 0], c[:, 1]))
    return coords


def write_regions_json(masks: Masks, path: str | Path) -> Path:
    """Write masks as a Neurofinder ``regions.json``."""
    path = Path(path)
    regions = []
    for i in range(masks.n):
        r, c = masks.coordinates(i)
        regions.append({"id": i, "coordinates": np.stack([r, c], axis=1).tolist()})
    path.write_text(json.dumps(regions))
    return path


def write_mat(masks: Masks, path: str | Path, *, variable: str = "FinalMasks", version: str = "5") -> Path:
    """Write masks as a MATLAB file in the STNeuroNet authors' layout.

    ``version="5"`` writes a uint8 (rows, cols, N) array as MATLAB would see
    the movie read by tifffile; ``version="7.3"`` writes an HDF5 MAT-file of
    float64 whose h5py view is (N, rows, cols), like their FinalGT files.
    """
    path = Path(path)
    dense = masks.to_dense()
    if version == "5":
        import scipy.io

        scipy.io.savemat(path, {variable: np.ascontiguousarray(dense.transpose(1, 2, 0).astype(np.uint8))})
    elif version == "7.3":
        import h5py

        # A MATLAB v7.3 file is HDF5 with a 512-byte user block holding the MAT header.
        with h5py.File(path, "w", userblock_size=512) as f:
            f.create_dataset(variable, data=dense.astype(np.float64))
        header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: bench".ljust(116) + b"\x00" * 8
        header += b"\x00\x02IM"
        with open(path, "r+b") as fh:
            fh.write(header.ljust(512, b"\x00"))
    else:
        raise InputError(f"MATLAB version must be '5' or '7.3', got {version!r}")
    return path


def save_masks(masks: Masks, path: str | Path) -> Path:
    """Write masks in the format named by the file's suffix.

    ``.npz``: exact sparse (:meth:`Masks.save`); ``.json``: Neurofinder
    regions; ``.mat``: MATLAB v5 (rows, cols, N); ``.npy``: dense (N, rows,
    cols) uint8; ``.tif``/``.tiff``/``.png``: label image (overlaps lost).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return masks.save(path)
    if suffix == ".json":
        return write_regions_json(masks, path)
    if suffix == ".mat":
        return write_mat(masks, path)
    if suffix == ".npy":
        np.save(path, masks.to_dense().astype(np.uint8))
        return path
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, masks.to_label_image())
        return path
    if suffix == ".png":
        from PIL import Image

        labels = masks.to_label_image()
        if labels.max(initial=0) > 65535:
            raise InputError("too many masks for a 16-bit PNG label image", path=path)
        Image.fromarray(labels.astype(np.uint16)).save(path)
        return path
    raise InputError(f"cannot write masks as '{suffix}'", path=path, hint=f"use one of {', '.join(MASK_SUFFIXES[:-2])}")


# ---------------------------------------------------------------------------- readers
def _need_frame(path: Path, frame) -> tuple[int, int]:
    if frame is None:
        raise InputError(
            "this format stores pixel coordinates, so the frame size is needed",
            path=path,
            hint="pass the frame size (--shape ROWSxCOLS) or a ground truth to align with",
        )
    return tuple(int(s) for s in frame)


def _check_frame(path: Path, shape, frame) -> None:
    if frame is not None and tuple(shape) != tuple(frame):
        raise InputError(f"masks are {shape[0]}x{shape[1]}, the frame is {frame[0]}x{frame[1]}", path=path)


def _is_bench_npz(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "format" in z.files and "indptr" in z.files
    except Exception as exc:  # noqa: BLE001 - any failure is reported as unreadable
        raise InputError(f"not a readable .npz file ({exc})", path=path) from exc


def _is_candidate(a) -> bool:
    shape = getattr(a, "shape", ())
    dtype = getattr(a, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        return False
    return len(shape) == 3 or (len(shape) == 2 and min(shape) > 1)


def _pick(path: Path, candidates: dict, var: str | None, what: str):
    if var is not None:
        if var not in candidates:
            raise InputError(
                f"no {what} '{var}'", path=path, hint=f"mask {what}s in the file: {', '.join(candidates) or 'none'}"
            )
        return var
    if not candidates:
        raise InputError(f"no 2-D or 3-D numeric {what} that could hold masks", path=path)
    if len(candidates) > 1:
        names = ", ".join(f"{k} {tuple(v)}" for k, v in candidates.items())
        raise InputError(f"several {what}s could hold the masks: {names}", path=path, hint="choose one with --var NAME")
    return next(iter(candidates))


def is_mat73(path: Path) -> bool:
    """Whether a ``.mat`` file is MATLAB v7.3 (HDF5 behind a 512-byte header) rather than v5."""
    with open(path, "rb") as fh:
        head = fh.read(520)
    return head.startswith(b"MATLAB 7.3") or b"\x89HDF\r\n\x1a\n" in (head[:8], head[512:520])


def _read_array(path: Path, suffix: str, var: str | None) -> tuple[np.ndarray, str, str | None]:
    if suffix == ".mat":
        if is_mat73(path):
            arr, name = _read_hdf5(path, var)
            return arr, "mat-v7.3", name
        import scipy.io

        try:
            contents = scipy.io.loadmat(path)
        except NotImplementedError:  # v7.3 without the usual header
            arr, name = _read_hdf5(path, var)
            return arr, "mat-v7.3", name
        except Exception as exc:  # noqa: BLE001 - scipy raises many types for damaged files
            raise InputError(f"unreadable or truncated MATLAB file ({type(exc).__name__}: {exc})", path=path) from exc
        cands = {k: v.shape for k, v in contents.items() if k not in _MATLAB_META and _is_candidate(v)}
        name = _pick(path, cands, var, "variable")
        return np.asarray(contents[name]), "mat-v5", name
    if suffix in (".h5", ".hdf5"):
        arr, name = _read_hdf5(path, var)
        return arr, "hdf5", name
    if suffix == ".npy":
        return load_npy(path), "npy", None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                cands = {k: z[k].shape for k in z.files if _is_candidate(z[k])}
                name = _pick(path, cands, var, "array")
                return z[name], "npz", name
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - damaged members raise ValueError/zipfile errors
            raise InputError(f"damaged .npz file ({type(exc).__name__}: {exc})", path=path) from exc
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.imread(path), "label-image", None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"unreadable TIFF file ({exc})", path=path) from exc
    if suffix == ".png":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return np.asarray(im), "label-image", None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"unreadable PNG file ({exc})", path=path) from exc
    raise InputError(
        f"unknown mask file type '{suffix or path.name}'", path=path, hint=f"supported: {', '.join(MASK_SUFFIXES)}"
    )


def _read_hdf5(path: Path, var: str | None) -> tuple[np.ndarray, str]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found: dict = {}

            def visit(name, obj):
                # MATLAB keeps cell contents under #refs# and class data under #subsystem#.
                if isinstance(obj, h5py.Dataset) and not name.startswith("#") and _is_candidate(obj):
                    found[name] = obj.shape

            f.visititems(visit)
            name = _pick(path, found, var, "variable")
            return f[name][()], name
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError for damaged files
        raise InputError(
            f"unreadable or truncated HDF5/MATLAB v7.3 file ({type(exc).__name__}: {exc})", path=path
        ) from exc


def _read_suite2p_stat(path: Path, frame: tuple[int, int]) -> Masks:
    # stat.npy is a pickled object array of dicts by Suite2p's design; only
    # files named stat*.npy are unpickled, and only through the allow-list.
    stat = load_npy(path, allow_objects=True)
    if stat.ndim != 1 or not all(isinstance(s, dict) and "ypix" in s and "xpix" in s for s in stat):
        raise InputError("not a Suite2p stat file: expected a list of dicts with 'ypix' and 'xpix'", path=path)
    coords = [(s["ypix"], s["xpix"]) for s in stat]
    try:
        return Masks.from_coordinates(coords, frame)
    except InputError as exc:
        raise InputError(str(exc), path=path) from exc


def _read_imagej(path: Path, frame: tuple[int, int]) -> Masks:
    import roifile
    from skimage.draw import polygon

    try:
        rois = roifile.roiread(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not a readable ImageJ ROI file ({exc})", path=path) from exc
    if not isinstance(rois, list):
        rois = [rois]
    coords = []
    for k, roi in enumerate(rois):
        xy = roi.coordinates()
        if xy is None or len(xy) < 3:
            raise InputError(f"ROI {k} ({roi.name or 'unnamed'}) is not an area (fewer than 3 points)", path=path)
        # Pixel centres inside the outline; ImageJ coordinates are (x, y) = (col, row).
        rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=frame)
        coords.append((rr, cc))
    return Masks.from_coordinates(coords, frame)


# ---------------------------------------------------------------------------- orientation
def _orient(path, array, fmt, variable, axes, frame, reference) -> LoadedMasks:
    stored = tuple(int(s) for s in array.shape)
    if array.size == 0:
        raise InputError(f"empty mask array (shape {stored})", path=path)
    if array.dtype.kind not in "biuf":
        raise InputError(f"mask array holds {array.dtype} values, expected numbers or booleans", path=path)
    if array.dtype != bool and not np.all(np.isfinite(array)):
        raise InputError("mask array holds NaN or Inf values", path=path)
    if array.ndim == 2:
        return _orient_labels(path, array, fmt, variable, axes, frame, reference)
    if array.ndim != 3:
        raise InputError(f"mask array has {array.ndim} dimensions (shape {stored}), expected 2 or 3", path=path)

    default = (2, 1, 0) if fmt == "mat-v5" else (0, 1, 2)
    if axes is not None:
        axes = tuple(int(a) for a in axes)
        if sorted(axes) != [0, 1, 2]:
            raise InputError(f"axes {axes} is not a permutation of (0, 1, 2)", path=path)
        masks = _stack(path, array, axes)
        _check_frame(path, masks.shape, frame)
        return LoadedMasks(masks, path, fmt, variable, stored, axes, "axes given")
    if frame is None:
        return LoadedMasks(_stack(path, array, default), path, fmt, variable, stored, default, "format default")

    fits = [p for p in _permutations(default) if (stored[p[1]], stored[p[2]]) == tuple(frame)]
    if not fits:
        raise InputError(
            f"masks stored as {stored} fit the {frame[0]}x{frame[1]} frame in no orientation",
            path=path,
            hint="check that the masks belong to this recording and its crop",
        )
    if len(fits) == 1 or reference is None:
        chosen = fits[0]
        note = "fits the frame" if len(fits) == 1 else "format default among fitting orientations (no reference)"
        return LoadedMasks(_stack(path, array, chosen), path, fmt, variable, stored, chosen, note)
    # Convert once per mask axis; the other in-plane order is a cheap sparse transpose.
    converted: dict[tuple[int, ...], Masks] = {}
    for p in fits:
        swapped = (p[0], p[2], p[1])
        converted[p] = converted[swapped].transpose() if swapped in converted else _stack(path, array, p)
    return _best_of(path, fmt, variable, stored, list(converted.items()), reference)


def _orient_labels(path, array, fmt, variable, axes, frame, reference) -> LoadedMasks:
    stored = tuple(int(s) for s in array.shape)
    if axes is not None and tuple(axes) not in ((0, 1), (1, 0)):
        raise InputError(f"axes {tuple(axes)} is not a permutation of (0, 1) for a 2-D label image", path=path)
    cands = [tuple(axes)] if axes is not None else [(0, 1), (1, 0)]
    if frame is not None:
        cands = [p for p in cands if (stored[p[0]], stored[p[1]]) == tuple(frame)]
        if not cands:
            raise InputError(f"label image {stored} fits the {frame[0]}x{frame[1]} frame in no orientation", path=path)
    labels = [(p, Masks.from_label_image(array.transpose(p))) for p in cands]
    if len(labels) == 1 or reference is None:
        p, masks = labels[0]
        return LoadedMasks(masks, path, "label-image", variable, stored, p, "label image")
    return _best_of(path, "label-image", variable, stored, labels, reference)


def _permutations(default: tuple[int, ...]) -> list[tuple[int, ...]]:
    """All axis permutations, the format's default first."""
    return [default] + [p for p in itertools.permutations(range(len(default))) if p != default]


def _stack(path: Path, array: np.ndarray, axes: tuple[int, ...]) -> Masks:
    try:
        return Masks.from_dense(np.transpose(array, axes))
    except InputError as exc:
        raise InputError(str(exc), path=path) from exc


def _agreement(reference: Masks, masks: Masks) -> int:
    """Reference masks whose best IoU with ``masks`` is at least 0.5."""
    i, j, inter = reference.overlaps(masks)
    iou = inter / (reference.areas[i] + masks.areas[j] - inter)
    return int(np.unique(i[iou >= 0.5]).size)


def _best_of(path, fmt, variable, stored, candidates, reference) -> LoadedMasks:
    scored = [(_agreement(reference, m), k) for k, (_, m) in enumerate(candidates)]
    best_score, best = max(scored, key=lambda s: (s[0], -s[1]))
    axes, masks = candidates[best]
    others = ", ".join(f"{candidates[k][0]}: {s}" for s, k in scored if k != best)
    note = (
        f"square frame: chose axes {axes} ({best_score}/{reference.n} reference masks matched at IoU>=0.5; "
        f"other orientation {others})"
    )
    if best_score < 0.05 * max(reference.n, 1):
        log.warning("%s: masks agree with the reference in no orientation (%s)", path, note)
    return LoadedMasks(masks, path, fmt, variable, stored, axes, note)
