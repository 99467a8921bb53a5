"""NWB readers that need only h5py (pynwb is optional): the imaging series and its masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks

__all__ = ["nwb_series", "read_nwb_masks", "NWB_GROUND_TRUTH_PREFIX"]


def _nwb_groups(f, types: tuple[str, ...]) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name, obj):
        t = obj.attrs.get("neurodata_type")
        if isinstance(t, bytes):
            t = t.decode()
        if isinstance(obj, h5py.Group) and t in types:
            found.append(name)

    f.visititems(visit)
    return found


def nwb_series(path: Path, name: str | None = None) -> tuple[str, float | None]:
    """The HDF5 path of an NWB file's TwoPhotonSeries and its frame rate (None when not stored).

    Read with h5py from the NWB schema's attributes, so pynwb is not needed.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            series = _nwb_groups(f, ("TwoPhotonSeries", "OnePhotonSeries"))
            if name is not None:
                chosen = [s for s in series if s == name.strip("/") or s.rsplit("/", 1)[-1] == name]
                if not chosen:
                    raise InputError(
                        f"no TwoPhotonSeries named '{name}'", path=path, hint=f"series: {', '.join(series) or 'none'}"
                    )
            else:
                chosen = series
            if not chosen:
                raise InputError("no TwoPhotonSeries in the NWB file", path=path)
            if len(chosen) > 1:
                raise InputError(
                    "several imaging series", path=path, hint=f"choose one with --key: {', '.join(chosen)}"
                )
            s = chosen[0]
            if "data" not in f[s] or f[s]["data"].ndim != 3:
                raise InputError(f"series {s} has no (T, H, W) data", path=path)
            rate = None
            if "starting_time" in f[s] and "rate" in f[s]["starting_time"].attrs:
                rate = float(f[s]["starting_time"].attrs["rate"])
            elif "timestamps" in f[s] and f[s]["timestamps"].shape[0] > 1:
                ts = f[s]["timestamps"][:2]
                rate = float(1.0 / (ts[1] - ts[0])) if ts[1] > ts[0] else None
            return s, rate
    except OSError as exc:
        raise InputError(f"not a readable NWB/HDF5 file ({exc})", path=path) from exc


#: PlaneSegmentations named so hold ground truths (``bench export``); "the" segmentation of a file is another.
NWB_GROUND_TRUTH_PREFIX = "ground_truth_"


def read_nwb_masks(path: Path, frame: tuple[int, int] | None, name: str | None = None) -> Masks:
    """Masks of an NWB PlaneSegmentation (``image_mask`` or ``pixel_mask``), binarised at weight > 0.

    NWB stores image masks with the imaging series' in-plane axes, so they index
    the series' frames as stored; pixel masks' ``x`` indexes the first in-plane
    axis (rows) and ``y`` the second, as Suite2p and the Allen SDK write them.
    Without ``name``, the file's only PlaneSegmentation is read, ground truths
    (names starting ``ground_truth_``) left aside. Without ``frame``, pixel
    masks take the frame from the ``dimension`` of the series they reference.
    """
    import h5py

    path = Path(path)
    frame = None if frame is None else tuple(int(s) for s in frame)
    try:
        with h5py.File(path, "r") as f:
            segs = _nwb_groups(f, ("PlaneSegmentation",))
            if name is not None:
                segs = [s for s in segs if s == name.strip("/") or s.rsplit("/", 1)[-1] == name]
            elif len(segs) > 1:
                segs = [s for s in segs if not s.rsplit("/", 1)[-1].startswith(NWB_GROUND_TRUTH_PREFIX)] or segs
            if not segs:
                notes = f["general/notes"][()] if "general/notes" in f else b""
                notes = f" ({notes.decode() if isinstance(notes, bytes) else notes})" if notes else ""
                what = f"no PlaneSegmentation {name!r}" if name else "no PlaneSegmentation"
                raise InputError(f"{what} in the NWB file{notes}", path=path)
            if len(segs) > 1:
                raise InputError("several PlaneSegmentations", path=path, hint=f"choose one: {', '.join(segs)}")
            g = f[segs[0]]
            if frame is None and "image_mask" not in g:
                frame = _nwb_reference_frame(path, g)
            if "image_mask" in g:
                stack = np.asarray(g["image_mask"][()])
                if stack.ndim != 3 or (frame is not None and tuple(stack.shape[1:]) != frame):
                    raise InputError(
                        f"image_mask is {stack.shape}"
                        + (f", the movie frame is {frame[0]}x{frame[1]}" if frame is not None else ", expected 3-D"),
                        path=path,
                        hint="the masks must belong to this movie",
                    )
                return Masks.from_dense(stack > 0)
            if "pixel_mask" in g and "pixel_mask_index" in g:
                pm = g["pixel_mask"][()]
                ends = np.asarray(g["pixel_mask_index"][()], dtype=np.int64)
                starts = np.concatenate([[0], ends[:-1]])
                x = np.asarray(pm["x"], np.int64)
                y = np.asarray(pm["y"], np.int64)
                w = np.asarray(pm["weight"], float)
                coords = [(x[a:b][w[a:b] > 0], y[a:b][w[a:b] > 0]) for a, b in zip(starts, ends)]
                try:
                    return Masks.from_coordinates(coords, frame)
                except InputError as exc:
                    raise InputError(str(exc), path=path, hint="the masks must belong to this movie") from exc
            raise InputError(f"PlaneSegmentation {segs[0]} has neither image_mask nor pixel_mask", path=path)
    except OSError as exc:
        raise InputError(f"not a readable NWB/HDF5 file ({exc})", path=path) from exc


def _nwb_reference_frame(path: Path, seg) -> tuple[int, int]:
    """(rows, cols) from the ``dimension`` of the image series a PlaneSegmentation references."""
    refs = seg.get("reference_images")
    for key in refs.keys() if refs is not None else ():
        series = refs[key]
        if "dimension" in series and series["dimension"].shape[0] >= 2:
            rows, cols = (int(v) for v in series["dimension"][:2])
            return rows, cols
    raise InputError(
        "the NWB pixel masks give no frame size", path=path, hint="pass the frame size (--shape ROWSxCOLS) or --gt"
    )
