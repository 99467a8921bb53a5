"""Saving and loading an online method's snapshots: ``(seconds_into_recording, Masks)`` pairs.

One ``.npz`` holds every snapshot: the masks of all snapshots stacked as one
sparse matrix (CSR ``indices``/``indptr`` over ``H * W`` pixels), the
``times`` (s) and the number of masks of each snapshot (``counts``), so a
worker can hand :attr:`methods.base.Segmentation.snapshots` to the harness
through a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datasets.errors import InputError
from datasets.masks import Masks

__all__ = ["save_snapshots", "load_snapshots"]


def save_snapshots(snapshots: list[tuple[float, Masks]], path: str | Path) -> Path:
    """Write ``snapshots`` to ``path`` (``.npz``); returns the path.

    Raises
    ------
    InputError
        No snapshots, or snapshots over different frames.
    """
    if not snapshots:
        raise InputError("there are no snapshots to save")
    shape = snapshots[0][1].shape
    if any(m.shape != shape for _, m in snapshots):
        raise InputError("snapshots must all be over one frame")
    stacked = sp.vstack([m.matrix for _, m in snapshots], format="csr") if any(m.n for _, m in snapshots) else None
    path = Path(path)
    np.savez_compressed(
        path,
        times=np.array([t for t, _ in snapshots], np.float64),
        counts=np.array([m.n for _, m in snapshots], np.int64),
        shape=np.array(shape, np.int64),
        indices=stacked.indices if stacked is not None else np.zeros(0, np.int32),
        indptr=stacked.indptr if stacked is not None else np.zeros(1, np.int64),
    )
    return path


def load_snapshots(path: str | Path) -> list[tuple[float, Masks]]:
    """Read what :func:`save_snapshots` wrote."""
    path = Path(path)
    if not path.is_file():
        raise InputError("snapshot file not found", path=path)
    with np.load(path) as z:
        times, counts, shape = z["times"], z["counts"], tuple(int(s) for s in z["shape"])
        indices, indptr = z["indices"], z["indptr"]
    n = int(counts.sum())
    data = np.ones(indices.size, bool)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n, shape[0] * shape[1])) if n else None
    out, k = [], 0
    for t, c in zip(times.tolist(), counts.tolist()):
        masks = Masks(matrix[k : k + c], shape) if c else Masks.empty(shape)
        out.append((float(t), masks))
        k += c
    return out
