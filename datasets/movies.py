"""Lazily opened movies: (T, H, W) frames read in chunks, never whole unless asked.

A 487x487x23,000-frame ABO movie is 10 GB; every consumer (pre-processing,
summary images, traces) therefore reads frames through :meth:`Movie.read` or
:meth:`Movie.chunks`. Opening a movie reads its metadata only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from datasets.errors import InputError

__all__ = ["Movie", "ArrayMovie", "HDF5Movie", "TiffMovie", "NpyMovie", "movie_from_spec"]


class Movie:
    """Base class of lazily read (T, H, W) movies with an optional crop.

    Parameters
    ----------
    rows, cols : slice, optional
        In-plane crop applied to every frame read (e.g. a registration border).
    frames : slice, optional
        Range of frames exposed (e.g. the first fifth of an ABO movie).

    Subclasses implement ``_raw_shape`` and ``_read_raw(start, stop)``.
    """

    def __init__(self, *, rows: slice | None = None, cols: slice | None = None, frames: slice | None = None):
        t, h, w = self._raw_shape()
        self._rows = slice(*(rows or slice(None)).indices(h))
        self._cols = slice(*(cols or slice(None)).indices(w))
        f = slice(*(frames or slice(None)).indices(t))
        if f.step != 1 or self._rows.step != 1 or self._cols.step != 1:
            raise InputError("movie crops must be contiguous (step 1)")
        self._frames = f
        n_rows = self._rows.stop - self._rows.start
        n_cols = self._cols.stop - self._cols.start
        if n_rows <= 0 or n_cols <= 0:
            raise InputError(f"crop leaves no pixels of the {h}x{w} frame")
        self.shape: tuple[int, int, int] = (max(f.stop - f.start, 0), n_rows, n_cols)

    def _crop_spec(self) -> dict:
        return {
            "rows": [self._rows.start, self._rows.stop],
            "cols": [self._cols.start, self._cols.stop],
            "frames": [self._frames.start, self._frames.stop],
        }

    def to_spec(self) -> dict:
        """A JSON-able description that reopens this movie (in another process) with :func:`movie_from_spec`.

        Raises
        ------
        InputError
            For movies held only in memory (write them to a file first).
        """
        raise InputError(f"{type(self).__name__} lives in memory only; save it to .npy or HDF5 to share it")

    # -- subclass interface
    def _raw_shape(self) -> tuple[int, int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_raw(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public API
    @property
    def n_frames(self) -> int:
        """Number of frames exposed."""
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) after cropping."""
        return self.shape[1], self.shape[2]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) as a (n, H, W) array in the file's dtype."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        if start < 0 or start > stop:
            raise IndexError(f"frame range [{start}, {stop}) outside 0..{self.n_frames}")
        raw = self._read_raw(self._frames.start + start, self._frames.start + stop)
        return np.asarray(raw[:, self._rows, self._cols])

    def chunks(self, size: int = 256) -> Iterator[np.ndarray]:
        """Iterate over consecutive blocks of at most ``size`` frames."""
        for start in range(0, self.n_frames, size):
            yield self.read(start, start + size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # Explicit whole-movie reads (np.asarray(movie)) are allowed; callers
        # that care about memory use chunks().
        out = self.read()
        return out if dtype is None else out.astype(dtype)

    def mean_image(self, chunk: int = 256) -> np.ndarray:
        """Temporal mean (H, W) in float64, read in chunks."""
        acc = np.zeros(self.frame_shape, np.float64)
        for block in self.chunks(chunk):
            acc += block.sum(axis=0, dtype=np.float64)
        return acc / max(self.n_frames, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


class ArrayMovie(Movie):
    """A movie held by any (T, H, W) array-like with numpy slicing (ndarray, memmap)."""

    def __init__(self, array, **crop):
        self._array = array
        if getattr(array, "ndim", None) != 3:
            raise InputError(f"a movie must be (T, H, W), got shape {getattr(array, 'shape', None)}")
        super().__init__(**crop)

    def _raw_shape(self):
        return tuple(int(s) for s in self._array.shape)

    def _read_raw(self, start, stop):
        return self._array[start:stop]

    @property
    def dtype(self):
        return np.dtype(self._array.dtype)


class NpyMovie(ArrayMovie):
    """A ``.npy`` file opened as a read-only memory map."""

    def to_spec(self) -> dict:
        return {"kind": "npy", "path": str(self.path), **self._crop_spec()}

    def __init__(self, path: str | Path, **crop):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("movie file not found", path=self.path)
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:  # EOFError: an empty file
            raise InputError(f"not a readable .npy array ({exc})", path=self.path) from exc
        super().__init__(arr, **crop)


class HDF5Movie(Movie):
    """A (T, H, W) dataset in an HDF5 file (ABO ``/data``, NWB ``TwoPhotonSeries/data``).

    The file is opened per read so that a Movie can be pickled to a worker
    process and so that no handle outlives its use.
    """

    def __init__(self, path: str | Path, key: str = "data", **crop):
        import h5py

        self.path = Path(path)
        self.key = key
        if not self.path.is_file():
            raise InputError("movie file not found", path=self.path)
        try:
            with h5py.File(self.path, "r") as f:
                if key not in f:
                    keys = _h5_datasets(f)
                    raise InputError(
                        f"no dataset '{key}'", path=self.path, hint=f"datasets in the file: {', '.join(keys) or 'none'}"
                    )
                ds = f[key]
                self._shape = tuple(int(s) for s in ds.shape)
                self._dtype = np.dtype(ds.dtype)
        except OSError as exc:
            raise InputError(f"not a readable HDF5 file ({exc})", path=self.path) from exc
        if len(self._shape) != 3:
            raise InputError(f"dataset '{key}' has shape {self._shape}, a movie must be (T, H, W)", path=self.path)
        super().__init__(**crop)

    def to_spec(self) -> dict:
        return {"kind": "hdf5", "path": str(self.path), "key": self.key, **self._crop_spec()}

    def _raw_shape(self):
        return self._shape

    def _read_raw(self, start, stop):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.key][start:stop]

    @property
    def dtype(self):
        return self._dtype


class TiffMovie(Movie):
    """A multi-page TIFF file, or an ordered list of single-frame TIFF files."""

    def __init__(self, paths: str | Path | Sequence[str | Path], **crop):
        import tifffile

        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError("no TIFF files given")
        for p in self.paths:
            if not p.is_file():
                raise InputError("TIFF file not found", path=p)
        try:
            if len(self.paths) == 1:
                with tifffile.TiffFile(self.paths[0]) as tf:
                    series = tf.series[0]
                    shape = series.shape
                    self._dtype = np.dtype(series.dtype)
                if len(shape) == 2:
                    shape = (1, *shape)
                if len(shape) != 3:
                    raise InputError(f"TIFF holds shape {shape}, a movie must be (T, H, W)", path=self.paths[0])
                self._shape = tuple(int(s) for s in shape)
            else:
                with tifffile.TiffFile(self.paths[0]) as tf:
                    page = tf.pages[0]
                    frame = tuple(page.shape)
                    self._dtype = np.dtype(page.dtype)
                self._shape = (len(self.paths), *frame)
        except (tifffile.TiffFileError, OSError) as exc:
            raise InputError(f"not a readable TIFF file ({exc})", path=self.paths[0]) from exc
        super().__init__(**crop)

    def to_spec(self) -> dict:
        return {"kind": "tiff", "paths": [str(p) for p in self.paths], **self._crop_spec()}

    def _raw_shape(self):
        return self._shape

    def _read_raw(self, start, stop):
        import tifffile

        if len(self.paths) == 1:
            with tifffile.TiffFile(self.paths[0]) as tf:
                if self._shape[0] == 1:
                    return tf.asarray()[None]
                return tf.asarray(key=range(start, stop)).reshape(stop - start, *self._shape[1:])
        frames = []
        for p in self.paths[start:stop]:
            img = tifffile.imread(p)
            if img.shape != self._shape[1:]:
                raise InputError(
                    f"frame has shape {img.shape}, the first frame {self.paths[0].name} has {self._shape[1:]}",
                    path=p,
                    hint="all frames of a movie must have one size",
                )
            frames.append(img)
        return np.stack(frames) if frames else np.zeros((0, *self._shape[1:]), self._dtype)

    @property
    def dtype(self):
        return self._dtype


def movie_from_spec(spec: dict) -> Movie:
    """Reopen a movie described by :meth:`Movie.to_spec`."""
    crop = {k: slice(*spec[k]) for k in ("rows", "cols", "frames") if k in spec}
    kind = spec.get("kind")
    if kind == "npy":
        return NpyMovie(spec["path"], **crop)
    if kind == "hdf5":
        return HDF5Movie(spec["path"], spec.get("key", "data"), **crop)
    if kind == "tiff":
        return TiffMovie(spec["paths"], **crop)
    raise InputError(f"unknown movie kind {kind!r} in movie spec")


def _h5_datasets(f) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names
