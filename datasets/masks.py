"""The `Masks` record: N binary masks over one (H, W) frame, stored sparse.

Real ground truths hold ~300 masks of ~150 px on 512x512 frames, so a dense
(N, H, W) stack wastes two orders of magnitude of memory; rows of a CSR matrix
over the flattened frame keep intersections a single sparse product away.
Masks may overlap (a pixel may belong to several masks), so a label image is
a lossy view, never the storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datasets.errors import InputError

__all__ = ["Masks"]


@dataclass(frozen=True, eq=False)
class Masks:
    """N binary masks over an (H, W) frame.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix
        Boolean matrix of shape (N, H*W); row i is mask i over the frame
        flattened in C order (row-major: index = row * W + col).
    shape : tuple of int
        The frame shape (H, W) = (rows, cols).

    Notes
    -----
    Build instances with the ``from_*`` constructors; they validate the input.
    """

    matrix: sp.csr_matrix
    shape: tuple[int, int]
    _areas: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.shape)
        if h <= 0 or w <= 0:
            raise InputError(f"mask frame shape must be positive, got {self.shape}")
        m = sp.csr_matrix(self.matrix, dtype=bool)
        if m.shape[1] != h * w:
            raise InputError(f"mask matrix has {m.shape[1]} columns, frame {h}x{w} needs {h * w}")
        m.sum_duplicates()
        m.eliminate_zeros()
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "shape", (h, w))
        object.__setattr__(self, "_areas", np.diff(m.indptr).astype(np.int64))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Masks:
        """No masks over a frame of the given shape."""
        return cls(sp.csr_matrix((0, int(shape[0]) * int(shape[1])), dtype=bool), tuple(shape))

    @classmethod
    def from_dense(cls, stack: np.ndarray) -> Masks:
        """Masks from a dense (N, H, W) stack of 0/1 or boolean values.

        Raises
        ------
        InputError
            If the stack is not 3-D or holds values other than 0 and 1.
        """
        stack = np.asarray(stack)
        if stack.ndim == 2:
            stack = stack[None]
        if stack.ndim != 3:
            raise InputError(f"a mask stack must be (N, H, W), got {stack.ndim}-D shape {stack.shape}")
        if stack.dtype != bool and not (np.issubdtype(stack.dtype, np.number)):
            raise InputError(f"mask values must be numeric or boolean, got dtype {stack.dtype}")
        n, h, w = stack.shape
        flat = stack.reshape(n, h * w)
        # One pass finds the nonzero entries; only those are checked for 0/1,
        # which keeps 300 x 512 x 512 float64 stacks cheap.
        rows, cols = np.nonzero(flat)
        if stack.dtype != bool:
            vals = flat[rows, cols]
            bad = vals != 1
            if bad.any():
                examples = np.unique(vals[bad])[:5]
                raise InputError(
                    f"masks must be binary (0/1), found values such as {examples.tolist()}",
                    hint="threshold weighted footprints first, or pass a label image",
                )
        m = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(n, h * w))
        return cls(m, (h, w))

    @classmethod
    def from_label_image(cls, labels: np.ndarray) -> Masks:
        """Masks from an (H, W) image of integer labels (0 = background).

        Labels are renumbered in ascending order; gaps are skipped.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise InputError(f"a label image must be 2-D, got shape {labels.shape}")
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise InputError("a label image must hold whole numbers")
        if labels.min(initial=0) < 0:
            raise InputError("a label image must not hold negative labels")
        # Labels keep their own dtype: a cast to int64 would wrap uint64 labels >= 2**63 to negatives.
        flat = labels.ravel()
        pix = np.flatnonzero(flat)
        ids = np.unique(flat[pix])
        rows = np.searchsorted(ids, flat[pix])
        m = sp.csr_matrix((np.ones(pix.size, bool), (rows, pix)), shape=(ids.size, flat.size))
        return cls(m, labels.shape)

    @classmethod
    def from_coordinates(cls, coords: Iterable[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]) -> Masks:
        """Masks from per-mask (rows, cols) index arrays.

        Pixels outside the frame raise an error: silently clipping them
        would hide a frame or orientation mismatch.
        """
        h, w = (int(s) for s in shape)
        indptr = [0]
        indices = []
        for i, (r, c) in enumerate(coords):
            r, c = _pixel_indices(i, r), _pixel_indices(i, c)
            if r.shape != c.shape:
                raise InputError(f"mask {i}: {r.size} row indices but {c.size} column indices")
            if r.size and (r.min() < 0 or c.min() < 0 or r.max() >= h or c.max() >= w):
                raise InputError(
                    f"mask {i} has pixels outside the {h}x{w} frame "
                    f"(rows {r.min()}..{r.max()}, cols {c.min()}..{c.max()})",
                    hint="check the frame size and crop",
                )
            flat = np.unique(r * w + c)
            indices.append(flat)
            indptr.append(indptr[-1] + flat.size)
        idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(idx.size, bool), idx, np.asarray(indptr)), shape=(len(indptr) - 1, h * w))
        return cls(m, (h, w))

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self.matrix.shape[0]

    @property
    def n(self) -> int:
        """Number of masks."""
        return self.matrix.shape[0]

    @property
    def areas(self) -> np.ndarray:
        """Pixel count of each mask, shape (N,)."""
        return self._areas

    @property
    def centroids(self) -> np.ndarray:
        """Centre of mass of each mask as (row, col), shape (N, 2); NaN for empty masks."""
        m = self.matrix.tocoo()
        r, c = np.divmod(m.col, self.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            cr = np.bincount(m.row, weights=r, minlength=self.n) / self._areas
            cc = np.bincount(m.row, weights=c, minlength=self.n) / self._areas
        return np.stack([cr, cc], axis=1)

    def coordinates(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the pixels of mask i."""
        m = self.matrix
        flat = m.indices[m.indptr[i] : m.indptr[i + 1]]
        return np.divmod(flat.astype(np.int64), self.shape[1])

    def to_dense(self) -> np.ndarray:
        """Dense boolean (N, H, W) stack."""
        return self.matrix.toarray().reshape(self.n, *self.shape)

    def to_label_image(self) -> np.ndarray:
        """(H, W) int32 label image, 1-based; where masks overlap, the later mask wins."""
        out = np.zeros(self.shape[0] * self.shape[1], np.int32)
        m = self.matrix
        for i in range(self.n):
            out[m.indices[m.indptr[i] : m.indptr[i + 1]]] = i + 1
        return out.reshape(self.shape)

    def union(self) -> np.ndarray:
        """(H, W) boolean image of pixels covered by any mask."""
        covered = np.zeros(self.shape[0] * self.shape[1], bool)
        covered[self.matrix.indices] = True
        return covered.reshape(self.shape)

    def subset(self, index: Sequence[int] | np.ndarray) -> Masks:
        """The masks at the given indices (or boolean selector), in that order."""
        return Masks(self.matrix[np.asarray(index)], self.shape)

    def transpose(self) -> Masks:
        """The same masks with rows and columns swapped (frame (W, H))."""
        h, w = self.shape
        m = self.matrix.tocoo()
        r, c = np.divmod(m.col, w)
        t = sp.csr_matrix((m.data, (m.row, c * h + r)), shape=(self.n, h * w))
        return Masks(t, (w, h))

    def crop(self, rows: slice, cols: slice) -> Masks:
        """Masks restricted to a sub-frame; masks left empty are kept (as empty rows)."""
        h, w = self.shape
        r0, r1, _ = rows.indices(h)
        c0, c1, _ = cols.indices(w)
        keep = np.zeros((h, w), bool)
        keep[r0:r1, c0:c1] = True
        sel = np.flatnonzero(keep.ravel())
        return Masks(self.matrix[:, sel], (r1 - r0, c1 - c0))

    def overlaps(self, other: Masks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs of masks that share pixels, as COO arrays.

        Returns
        -------
        i, j : ndarray of int
            Index into ``self`` and into ``other`` of each overlapping pair.
        intersection : ndarray of int
            Shared pixel count of each pair (> 0).
        """
        if self.shape != other.shape:
            raise InputError(f"cannot compare masks over a {self.shape} frame with masks over a {other.shape} frame")
        # int32 products of 0/1 rows count shared pixels; only touching pairs are stored.
        a = self.matrix.astype(np.int32)
        b = other.matrix.astype(np.int32).T.tocsc()
        prod = sp.csr_matrix(a @ b)
        prod.sort_indices()  # row-major order, so callers get a stable pair order
        inter = prod.tocoo()
        keep = inter.data > 0
        return inter.row[keep].astype(np.int64), inter.col[keep].astype(np.int64), inter.data[keep].astype(np.int64)

    def iou(self, other: Masks) -> np.ndarray:
        """Dense (len(self), len(other)) matrix of intersection over union."""
        i, j, inter = self.overlaps(other)
        out = np.zeros((self.n, other.n))
        out[i, j] = inter / (self.areas[i] + other.areas[j] - inter)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Masks):
            return NotImplemented
        return self.shape == other.shape and self.n == other.n and (self.matrix != other.matrix).nnz == 0

    def __repr__(self) -> str:
        med = float(np.median(self._areas)) if self.n else 0.0
        return f"Masks(n={self.n}, shape={self.shape}, median_area={med:g})"

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the masks to a compressed ``.npz`` file (sparse, exact)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        m = self.matrix
        np.savez_compressed(
            path,
            format=np.array("bench-masks-v1"),
            shape=np.asarray(self.shape, np.int64),
            indptr=m.indptr.astype(np.int64),
            indices=m.indices.astype(np.int64),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Masks:
        """Read masks written by :meth:`save`.

        Raises
        ------
        InputError
            If the file is unreadable or its arrays do not describe masks
            (a damaged or hand-made file would otherwise fail deep in scipy).
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != "bench-masks-v1":
                    raise InputError("not a masks file written by Masks.save", path=path)
                shape, indptr, indices = z["shape"], z["indptr"], z["indices"]
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - damaged archives raise zipfile/ValueError/KeyError/OSError
            raise InputError(f"damaged masks file ({type(exc).__name__}: {exc})", path=path) from exc
        problem = _sparse_problem(shape, indptr, indices)
        if problem:
            raise InputError(f"damaged masks file: {problem}", path=path)
        h, w = (int(s) for s in shape)
        m = sp.csr_matrix((np.ones(indices.size, bool), indices, indptr), shape=(indptr.size - 1, h * w))
        return cls(m, (h, w))


def _sparse_problem(shape: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> str | None:
    """What makes the arrays of a saved masks file inconsistent, or None."""
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or shape.min() <= 0:
        return f"frame shape {shape.tolist()} is not two positive integers"
    if indptr.ndim != 1 or indices.ndim != 1 or indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        return "indptr and indices must be 1-D integer arrays"
    if indptr.size == 0 or indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        return f"indptr must rise from 0 to the {indices.size} indices"
    if indices.size and (indices.min() < 0 or indices.max() >= int(shape[0]) * int(shape[1])):
        return f"pixel indices outside the {shape[0]}x{shape[1]} frame"
    return None


def _pixel_indices(i: int, values) -> np.ndarray:
    """Whole-number pixel indices as int64; fractional, non-finite or non-numeric ones are refused, not truncated."""
    a = np.asarray(values).ravel()
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            bad = a[~np.isfinite(a) | (a != np.round(a))][:3]
            raise InputError(f"mask {i}: pixel coordinates must be whole numbers, found {bad.tolist()}")
        return a.astype(np.int64)
    if a.size == 0:
        return np.zeros(0, np.int64)
    raise InputError(f"mask {i}: pixel coordinates must be numbers, found {a.dtype} values such as {a[:3].tolist()}")
