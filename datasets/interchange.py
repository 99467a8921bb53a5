"""Writing masks for the tools of the field: ImageJ ROI sets and Suite2p ``stat.npy``.

Both read back exactly through :func:`datasets.maskio.load_masks`:

* ImageJ (``RoiSet.zip``): each mask becomes one traced polygon along its
  pixel edges (what ImageJ's wand tool draws), in ImageJ's (x, y) = (col, row)
  coordinates with pixel (row, col) covering [col, col + 1] x [row, row + 1].
  A mask with a hole or several pieces is one polygon that visits every
  boundary loop, joined by zero-width bridges walked out and back: the pixels
  inside under the even-odd rule (ImageJ's and the reader's) are exactly the
  mask's, though Fiji draws the bridges as lines.
* Suite2p: a pickled object array of dicts with ``ypix``, ``xpix``, ``lam``
  (uniform weights summing to 1: the masks are binary), ``med`` and ``npix``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks

__all__ = ["mask_outline", "write_imagej_rois", "write_suite2p_stat"]


def _boundary_loops(inside: np.ndarray) -> list[list[tuple[int, int]]]:
    """Closed loops of pixel-edge vertices (row, col) around the True pixels of a 2-D array.

    Each pixel edge between a True and a False pixel is a directed segment with
    the True pixel on the same side; every vertex then has as many segments in
    as out, so walking unused segments from a vertex always returns to it.
    """
    pad = np.pad(inside, 1)
    core = pad[1:-1, 1:-1]
    out: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    r, c = np.nonzero(core & ~pad[:-2, 1:-1])  # top edges, left to right
    for a, b in zip(r, c):
        out[(a, b)].append((a, b + 1))
    r, c = np.nonzero(core & ~pad[1:-1, 2:])  # right edges, downwards
    for a, b in zip(r, c):
        out[(a, b + 1)].append((a + 1, b + 1))
    r, c = np.nonzero(core & ~pad[2:, 1:-1])  # bottom edges, right to left
    for a, b in zip(r, c):
        out[(a + 1, b + 1)].append((a + 1, b))
    r, c = np.nonzero(core & ~pad[1:-1, :-2])  # left edges, upwards
    for a, b in zip(r, c):
        out[(a + 1, b)].append((a, b))
    loops = []
    for start in sorted(out):
        while out[start]:
            loop, v = [start], out[start].pop()
            while v != start:
                loop.append(v)
                v = out[v].pop()
            loops.append(_drop_collinear(loop))
    return loops


def _drop_collinear(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The corners of a closed loop of unit steps."""
    n = len(loop)
    keep = []
    for i in range(n):
        (r0, c0), (r1, c1), (r2, c2) = loop[i - 1], loop[i], loop[(i + 1) % n]
        if (r1 - r0) * (c2 - c1) != (c1 - c0) * (r2 - r1):
            keep.append(loop[i])
    return keep


def mask_outline(masks: Masks, i: int) -> np.ndarray:
    """The traced outline of mask ``i`` as ImageJ (x, y) integer vertices, shape (n, 2).

    Several loops (holes, pieces) are joined into one polygon by bridges walked
    out and back from the first loop's first vertex; see the module docstring.
    """
    rows, cols = masks.coordinates(i)
    if rows.size == 0:
        raise InputError(f"mask {i} is empty and has no outline")
    r0, c0 = rows.min(), cols.min()
    box = np.zeros((rows.max() - r0 + 1, cols.max() - c0 + 1), bool)
    box[rows - r0, cols - c0] = True
    loops = _boundary_loops(box)
    first = loops[0]
    path = list(first) + [first[0]] if len(loops) > 1 else list(first)
    for loop in loops[1:]:
        # Out along an axis-parallel bridge (it never crosses a pixel centre), round the loop, and back.
        corner = (first[0][0], loop[0][1])
        path += [corner] + list(loop) + [loop[0], corner, first[0]]
    rc = np.asarray(path, np.int64) + [r0, c0]
    return rc[:, ::-1].copy()  # (row, col) -> ImageJ (x, y)


def write_imagej_rois(masks: Masks, path: str | Path) -> Path:
    """Write masks as an ImageJ ROI set (``.zip``), one traced polygon per mask, named ``0001``, ``0002``...

    Raises
    ------
    InputError
        If a mask is empty (ImageJ has no empty area ROI) or there is no mask.
    """
    import roifile

    path = Path(path)
    if masks.n == 0:
        raise InputError("no mask to write as an ImageJ ROI set", path=path)
    rois = []
    width = max(4, len(str(masks.n)))
    for i in range(masks.n):
        roi = roifile.ImagejRoi.frompoints(mask_outline(masks, i), name=f"{i + 1:0{width}d}")
        roi.roitype = roifile.ROI_TYPE.TRACED
        rois.append(roi)
    if path.exists():
        path.unlink()  # roifile appends to an existing zip
    roifile.roiwrite(path, rois)
    return path


def write_suite2p_stat(masks: Masks, path: str | Path) -> Path:
    """Write masks as a Suite2p-style ``stat.npy`` (ypix, xpix, lam, med, npix per mask)."""
    path = Path(path)
    stat = []
    for i in range(masks.n):
        rows, cols = masks.coordinates(i)
        npix = int(rows.size)
        stat.append(
            {
                "ypix": rows.astype(np.int32),
                "xpix": cols.astype(np.int32),
                "lam": np.full(npix, 1.0 / max(npix, 1), np.float32),
                "med": [float(np.median(rows)), float(np.median(cols))] if npix else [np.nan, np.nan],
                "npix": npix,
            }
        )
    arr = np.empty(len(stat), dtype=object)
    arr[:] = stat
    np.save(path, arr, allow_pickle=True)
    return path
