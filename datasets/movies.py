"""Lazily opened movies: (T, H, W) frames read in chunks, never whole unless asked.

A 487x487x23,000-frame ABO movie is 10 GB; every consumer (pre-processing,
summary images, traces) therefore reads frames through :meth:`Movie.read` or
:meth:`Movie.chunks`. Opening a movie reads its metadata only.

Every movie class of the suite lives here, and every one that reads a file
describes itself with :meth:`Movie.to_spec` (a small JSON-able dict) so that a
worker process reopens the same file with :func:`movie_from_spec` instead of
receiving a copy of its frames.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from datasets.errors import InputError

__all__ = [
    "Movie",
    "ArrayMovie",
    "HDF5Movie",
    "TiffMovie",
    "NpyMovie",
    "ZipTiffMovie",
    "movie_from_spec",
    "check_finite",
]


class Movie:
    """Base class of lazily read (T, H, W) movies with an optional crop.

    Parameters
    ----------
    rows, cols : slice, optional
        In-plane crop applied to every frame read (e.g. a registration border).
    frames : slice, optional
        Range of frames exposed (e.g. the first fifth of an ABO movie).
    check_finite : bool
        Floating-point blocks holding NaN or Inf raise an error naming the file
        and frame as they are read (never at open, which reads no frame).
        Integer movies (all published data) skip the test.

    Subclasses set ``kind`` (their name in a spec), implement ``_raw_shape``,
    ``_read_raw(start, stop)``, ``dtype`` and, for files, ``_source_spec``.
    """

    #: The ``kind`` of :meth:`to_spec`; None for movies held in memory only.
    kind: str | None = None

    def __init__(
        self,
        *,
        rows: slice | None = None,
        cols: slice | None = None,
        frames: slice | None = None,
        check_finite: bool = False,
    ):
        t, h, w = self._raw_shape()
        self.check_finite = bool(check_finite)
        self._rows = slice(*(rows or slice(None)).indices(h))
        self._cols = slice(*(cols or slice(None)).indices(w))
        f = slice(*(frames or slice(None)).indices(t))
        if f.step != 1 or self._rows.step != 1 or self._cols.step != 1:
            raise InputError("movie crops must be contiguous (step 1)", path=self.source)
        self._frames = f
        n_rows = self._rows.stop - self._rows.start
        n_cols = self._cols.stop - self._cols.start
        if n_rows <= 0 or n_cols <= 0:
            raise InputError(
                f"the crop (rows {self._rows.start}:{self._rows.stop}, cols {self._cols.start}:{self._cols.stop}) "
                f"leaves no pixels of the {h}x{w} frame",
                path=self.source,
                hint="a crop must be smaller than the frame",
            )
        self.shape: tuple[int, int, int] = (max(f.stop - f.start, 0), n_rows, n_cols)

    # -- persistence
    def to_spec(self) -> dict:
        """A JSON-able description that reopens this movie (in another process) with :func:`movie_from_spec`.

        Raises
        ------
        InputError
            For movies held only in memory (write them to a file first).
        """
        if self.kind is None:
            raise InputError(f"{type(self).__name__} lives in memory only; save it to .npy or HDF5 to share it")
        return {
            "kind": self.kind,
            **self._source_spec(),
            "rows": [self._rows.start, self._rows.stop],
            "cols": [self._cols.start, self._cols.stop],
            "frames": [self._frames.start, self._frames.stop],
            "check_finite": self.check_finite,
        }

    def _source_spec(self) -> dict:  # pragma: no cover - abstract for file movies
        raise NotImplementedError

    @property
    def source(self) -> Path | None:
        """The file (or first file) the frames come from; None in memory."""
        path = getattr(self, "path", None)
        if path is None:
            paths = getattr(self, "paths", None)
            path = paths[0] if paths else None
        return path

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

    @property
    def raw_frame_shape(self) -> tuple[int, int]:
        """(H, W) of the file's frames, before cropping."""
        _, h, w = self._raw_shape()
        return h, w

    @property
    def border(self) -> tuple[int, int, int, int]:
        """Pixels cropped from the file's frame: (top, bottom, left, right)."""
        h, w = self.raw_frame_shape
        return (self._rows.start, h - self._rows.stop, self._cols.start, w - self._cols.stop)

    @property
    def window(self) -> tuple[slice, slice]:
        """The (rows, cols) slices of the file's frame that this movie exposes."""
        return self._rows, self._cols

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) as a (n, H, W) array in the file's dtype."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        if start < 0 or start > stop:
            raise IndexError(f"frame range [{start}, {stop}) outside 0..{self.n_frames}")
        raw = self._read_raw(self._frames.start + start, self._frames.start + stop)
        block = np.asarray(raw[:, self._rows, self._cols])
        if self.check_finite:
            check_finite(block, start, self.source)
        return block

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

    kind = "npy"

    def __init__(self, path: str | Path, **crop):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("movie file not found", path=self.path)
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:  # EOFError: an empty file
            raise InputError(f"not a readable .npy array ({exc})", path=self.path) from exc
        super().__init__(arr, **crop)

    def _source_spec(self) -> dict:
        return {"path": str(self.path)}


class HDF5Movie(Movie):
    """A (T, H, W) dataset in an HDF5 file (ABO ``/data``, NWB ``TwoPhotonSeries/data``).

    The file is opened per read so that a Movie can be pickled to a worker
    process and so that no handle outlives its use.
    """

    kind = "hdf5"

    def __init__(self, path: str | Path, key: str = "data", **crop):
        import h5py

        self.path = Path(path)
        self.key = key
        if not self.path.is_file():
            raise InputError("movie file not found", path=self.path)
        try:
            with h5py.File(self.path, "r") as f:
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    keys = h5_datasets(f)
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

    def _source_spec(self) -> dict:
        return {"path": str(self.path), "key": self.key}

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

    kind = "tiff"

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

    def _source_spec(self) -> dict:
        return {"paths": [str(p) for p in self.paths]}

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
            _check_frame(img.shape, self._shape[1:], p.name, self.paths[0].name, p)
            frames.append(img)
        return np.stack(frames) if frames else np.zeros((0, *self._shape[1:]), self._dtype)

    @property
    def dtype(self):
        return self._dtype


class ZipTiffMovie(Movie):
    """TIFF frames read straight from a zip archive, one member per frame, in the order given.

    Only the members of the frames asked for are decompressed, so the published
    ~1 GB Neurofinder zips need no extraction and are never read whole.
    """

    kind = "zip-tiff"

    def __init__(self, path: str | Path, members: Sequence[str], **crop):
        import tifffile

        self.path = Path(path)
        self.members = list(members)
        if not self.members:
            raise InputError("no TIFF frames in the archive", path=self.path)
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = [zf.getinfo(m) for m in self.members]
                first = self._decode(zf, self.members[0], tifffile)
                # Frames of one size have one uncompressed size; otherwise check each header
                # (the TIFF header only: the frames are not decoded).
                if len({i.file_size for i in infos}) > 1:
                    for m in self.members[1:]:
                        _check_frame(self._header_shape(zf, m, tifffile), first.shape, m, self.members[0], self.path)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise InputError(f"damaged zip archive or missing frame ({exc})", path=self.path) from exc
        if first.ndim != 2:
            raise InputError(f"frame {self.members[0]} has shape {first.shape}, expected 2-D", path=self.path)
        self._shape = (len(self.members), *first.shape)
        self._dtype = first.dtype
        super().__init__(**crop)

    def _decode(self, zf: zipfile.ZipFile, member: str, tifffile) -> np.ndarray:
        try:
            return tifffile.imread(io.BytesIO(zf.read(member)))
        except Exception as exc:  # noqa: BLE001 - tifffile and zlib raise many types for damaged data
            raise InputError(f"frame {member} is not a readable TIFF ({exc})", path=self.path) from exc

    def _header_shape(self, zf: zipfile.ZipFile, member: str, tifffile) -> tuple[int, ...]:
        try:
            with zf.open(member) as fh, tifffile.TiffFile(fh) as tf:
                return tuple(tf.pages[0].shape)
        except Exception as exc:  # noqa: BLE001 - tifffile and zlib raise many types for damaged data
            raise InputError(f"frame {member} is not a readable TIFF ({exc})", path=self.path) from exc

    def _source_spec(self) -> dict:
        return {"path": str(self.path), "members": list(self.members)}

    def _raw_shape(self):
        return self._shape

    def _read_raw(self, start, stop):
        import tifffile

        out = np.empty((max(stop - start, 0), *self._shape[1:]), self._dtype)
        with zipfile.ZipFile(self.path) as zf:
            for k, m in enumerate(self.members[start:stop]):
                img = self._decode(zf, m, tifffile)
                _check_frame(img.shape, self._shape[1:], m, self.members[0], self.path)
                out[k] = img
        return out

    @property
    def dtype(self):
        return self._dtype


def check_finite(block: np.ndarray, start: int, where=None) -> None:
    """Raise naming the first frame of a float block (frames ``start``...) that holds NaN or Inf."""
    if block.dtype.kind not in "fc" or not block.size:
        return
    finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = start + int(np.flatnonzero(~finite)[0])
        raise InputError(
            f"frame {bad} holds NaN or Inf values",
            path=where,
            hint="replace non-finite pixels (e.g. np.nan_to_num) or drop those frames before registering",
        )


def _check_frame(shape, expected, name: str, first: str, where) -> None:
    """One frame's size against the movie's (all frames of a movie have one size)."""
    if tuple(shape) != tuple(expected):
        raise InputError(
            f"frame {name} is {'x'.join(map(str, shape))}, the first frame {first} is {'x'.join(map(str, expected))}",
            path=where,
            hint="all frames of a movie must have one size; remove or re-export the odd frames",
        )


#: Spec ``kind`` -> how to reopen it from the spec's source fields.
_OPENERS = {
    "npy": lambda s, **c: NpyMovie(s["path"], **c),
    "hdf5": lambda s, **c: HDF5Movie(s["path"], s.get("key", "data"), **c),
    "tiff": lambda s, **c: TiffMovie(s["paths"], **c),
    "zip-tiff": lambda s, **c: ZipTiffMovie(s["path"], s["members"], **c),
}


def movie_from_spec(spec: dict) -> Movie:
    """Reopen a movie described by :meth:`Movie.to_spec` (only its metadata is read).

    Raises
    ------
    InputError
        For an unknown ``kind`` or a file that is gone.
    """
    crop = {k: slice(*spec[k]) for k in ("rows", "cols", "frames") if spec.get(k) is not None}
    opener = _OPENERS.get(spec.get("kind"))
    if opener is None:
        raise InputError(f"unknown movie kind {spec.get('kind')!r} in movie spec", hint=f"known: {', '.join(_OPENERS)}")
    return opener(spec, check_finite=bool(spec.get("check_finite", False)), **crop)


def h5_datasets(f) -> list[str]:
    """Paths of every dataset in an open HDF5 file (for 'which one?' hints)."""
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names
