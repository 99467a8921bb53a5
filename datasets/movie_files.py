"""Which files open as which movie: TIFF stacks, folders of TIFF frames, HDF5, NWB and ``.npy``.

:func:`open_movie` opens any supported layout lazily (metadata only) with the
NaN/Inf check of :class:`datasets.movies.Movie` switched on, so that
non-finite frames are reported, naming the file and frame, when they are read.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets.errors import InputError
from datasets.movies import HDF5Movie, Movie, NpyMovie, TiffMovie, _check_frame
from datasets.nwb import nwb_series

__all__ = ["open_movie", "tiff_frames", "TIFF_SUFFIXES"]

#: File name endings of TIFF files (any case).
TIFF_SUFFIXES = (".tif", ".tiff")


def natural_key(name: str) -> list:
    """Sort key putting ``image10.tiff`` after ``image9.tiff`` even without zero padding."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def tiff_frames(folder: Path) -> list[Path]:
    """The TIFF frames of a folder in time (natural name) order, checked to share one frame size.

    Raises
    ------
    InputError
        When the folder holds no TIFF file, or frames differ in size.
    """
    folder = Path(folder)
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError("no TIFF frames (*.tif, *.tiff) in the folder", path=folder)
    # Uncompressed frames of one size have one file size; only when sizes differ are headers
    # opened, so opening a 3,000-frame folder stays a matter of stat() calls.
    sizes = {p.stat().st_size for p in files}
    if len(sizes) > 1:
        _check_tiff_shapes(files)
    return files


def _check_tiff_shapes(files: list[Path]) -> None:
    import tifffile

    first = None
    for p in files:
        try:
            with tifffile.TiffFile(p) as tf:
                shape = tuple(tf.pages[0].shape)
        except (tifffile.TiffFileError, OSError) as exc:
            raise InputError(f"not a readable TIFF file ({exc})", path=p) from exc
        if first is None:
            first = (p, shape)
        else:
            _check_frame(shape, first[1], p.name, first[0].name, p)


def _check_single_series(path: Path) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            shapes = [tuple(s.shape) for s in tf.series]
    except (tifffile.TiffFileError, OSError) as exc:
        raise InputError(f"not a readable TIFF file ({exc})", path=path) from exc
    if len(shapes) > 1:
        raise InputError(
            f"the TIFF holds pages of different sizes ({', '.join('x'.join(map(str, s)) for s in shapes[:4])})",
            path=path,
            hint="all frames of a movie must have one size",
        )


def open_movie(path: str | Path, key: str | None = None, **crop) -> Movie:
    """Open a movie lazily from any supported layout.

    Parameters
    ----------
    path : str or Path
        A multi-page TIFF, a folder of single-frame TIFFs, an HDF5 file
        (``key`` names the (T, H, W) dataset; default ``data`` or the only
        3-D dataset), an NWB file (``key`` names the TwoPhotonSeries; default
        the only one) or a ``.npy`` file (memory-mapped).
    key : str, optional
        Dataset (HDF5) or series (NWB) name.
    **crop
        ``rows``, ``cols``, ``frames`` slices passed to the movie, and
        ``check_finite`` (default True: float frames holding NaN/Inf raise when read).

    Returns
    -------
    Movie
        Opened, not read: only metadata is touched.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("movie not found", path=path)
    crop.setdefault("check_finite", True)
    if path.is_dir():
        return TiffMovie(tiff_frames(path), **crop)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        _check_single_series(path)
        return TiffMovie(path, **crop)
    if suffix == ".npy":
        return NpyMovie(path, **crop)
    if suffix == ".nwb":
        series, _ = nwb_series(path, key)
        return HDF5Movie(path, f"{series}/data", **crop)
    if suffix in (".h5", ".hdf5", ".hdf"):
        return HDF5Movie(path, key or _default_h5_key(path), **crop)
    raise InputError(
        f"unknown movie file type '{suffix or path.name}'",
        path=path,
        hint="use a multi-page TIFF, a folder of TIFF frames, HDF5/NWB (with --key) or .npy",
    )


def _default_h5_key(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" in f and isinstance(f["data"], h5py.Dataset):
                return "data"
            found: list[str] = []
            f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", path=path) from exc
    if len(found) == 1:
        return found[0]
    raise InputError(
        "cannot tell which dataset holds the movie" if found else "no 3-D dataset that could hold a (T, H, W) movie",
        path=path,
        hint=f"pass --key NAME; 3-D datasets: {', '.join(found) or 'none'}",
    )
