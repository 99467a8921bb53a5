"""Writing generated recordings in the on-disk formats real data use.

Two layouts, each written to a temporary folder and renamed into place, so an
interrupted generation never leaves a half-written recording behind:

* ``hdf5`` (ABO-like): ``<name>/movie.h5`` with a (T, H, W) uint16 ``/data``
  dataset (as ``ophys_experiment_*.h5``), ``masks_active.npz`` (default GT),
  ``masks_all.npz`` (all in-focus somata), ``truth.h5`` and ``meta.json``;
* ``neurofinder``: ``neurofinder.XX.YY/images/image00000.tiff`` (one 2-D
  uint16 TIFF per frame), ``regions/regions.json`` (active somata),
  ``info.json`` as published, plus ``truth/`` (the extra ground truth).

``truth.h5`` holds per soma: ``spike_times`` (flat, seconds) with
``spike_indptr``, ``noiseless_dff`` (N, T), ``traces`` (N, T, measured on the
noisy movie), ``active``, ``silent``, ``overlapping``, ``dprime_peak``,
``psnr``, ``brightness``, and attributes ``threshold``, ``seed``, ``params``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from datasets.synthetic.params import SimulationParams
from datasets.synthetic.simulate import SimulationResult, simulate

__all__ = ["FORMAT", "write_recording", "read_meta", "neurofinder_info"]

logger = logging.getLogger(__name__)

FORMAT = "bench-synthetic-v1"


def _write_truth(path: Path, res: SimulationResult, dff: np.ndarray) -> None:
    import h5py

    n_s = res.masks.n
    with h5py.File(path, "w") as f:
        lengths = np.array([s.size for s in res.spike_times], np.int64)
        f["spike_indptr"] = np.concatenate([[0], np.cumsum(lengths)])
        f["spike_times"] = np.concatenate(res.spike_times) if lengths.sum() else np.zeros(0)
        f["noiseless_dff"] = dff
        f["traces"] = res.traces
        f["active"] = res.active
        f["silent"] = res.silent
        f["overlapping"] = res.overlapping
        f["dprime_peak"] = res.dprime_peak
        f["psnr"] = res.psnr
        f["brightness"] = res.fov.brightness[:n_s]
        f.attrs["threshold"] = res.threshold
        f.attrs["seed"] = res.seed
        f.attrs["params"] = json.dumps(res.params.to_dict())


def neurofinder_info(name: str, p: SimulationParams) -> dict:
    """The ``info.json`` of a Neurofinder-layout recording, with the published files' keys.

    The published files (e.g. neurofinder.00.00: ``"pixels-per-micron": 1.15``,
    ``"rate-hz": 7``, ``"dimensions": [512, 512, 3068]``; codeneuro/neurofinder
    test.json) hold, under the name ``pixels-per-micron``, the pixel size in
    MICROMETRES PER PIXEL: 512 px span the ~600 um field of the Svoboda-lab
    sets (1.17 um/px), and the challenge's scorer turns its 6 um matching
    distance into pixels as ``6.0 / info['pixels-per-micron']``. So the value
    written here is ``um_per_px`` (1.15 for the preset), not its inverse.
    ``dimensions`` is [rows, cols, frames]; ``rate-hz`` is the frame rate.
    """
    return {
        "id": name,
        "lab": "synthetic",
        "contributors": ["datasets.synthetic"],
        "location": "generated",
        "animal": "simulated mouse",
        "animal-state": "simulated",
        "experiment": "synthetic two-photon movie (datasets.synthetic)",
        "method": "Two-photon raster (simulated)",
        "indicator": p.indicator,
        "region": "synthetic",
        "depth-microns": 200,
        "pixels-per-micron": round(p.um_per_px, 6),
        "rate-hz": p.fps,
        "dimensions": [p.height, p.width, p.n_frames],
    }


def read_meta(folder: Path) -> dict | None:
    """The ``meta.json`` (or ``truth/meta.json``) of a generated recording, None if absent or broken."""
    for cand in (folder / "meta.json", folder / "truth" / "meta.json"):
        if cand.is_file():
            try:
                meta = json.loads(cand.read_text())
            except (OSError, json.JSONDecodeError):
                return None
            return meta if meta.get("format") == FORMAT else None
    return None


def write_recording(
    dest: Path,
    name: str,
    params: SimulationParams,
    seed: int,
    *,
    layout: str = "hdf5",
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Generate one recording into folder ``dest`` (replaced atomically); return its metadata."""
    import h5py
    import tifffile

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    p = params
    n_s_holder: dict = {}
    try:
        if layout == "hdf5":
            truth_dir = tmp
            h5 = h5py.File(tmp / "movie.h5", "w")
            ds = h5.create_dataset("data", (p.n_frames, p.height, p.width), dtype=np.uint16)

            def sink(start, frames, dff):
                ds[start : start + frames.shape[0]] = frames
                n_s_holder.setdefault("dff", []).append(dff.copy())

        elif layout == "neurofinder":
            truth_dir = tmp / "truth"
            truth_dir.mkdir()
            (tmp / "images").mkdir()
            (tmp / "regions").mkdir()
            h5 = None

            def sink(start, frames, dff):
                for k in range(frames.shape[0]):
                    tifffile.imwrite(tmp / "images" / f"image{start + k:05d}.tiff", frames[k])
                n_s_holder.setdefault("dff", []).append(dff.copy())

        else:
            raise ValueError(f"unknown layout {layout!r}")
        try:
            res = simulate(p, seed, sink, progress=progress)
        finally:
            if h5 is not None:
                h5.close()
        dff = np.concatenate(n_s_holder["dff"], axis=1) if n_s_holder.get("dff") else np.zeros((0, 0), np.float32)
        _write_truth(truth_dir / "truth.h5", res, dff)
        res.masks.save(truth_dir / "masks_all.npz")
        res.active_masks.save(truth_dir / "masks_active.npz")
        if layout == "neurofinder":
            from datasets.maskio import write_regions_json

            write_regions_json(res.active_masks, tmp / "regions" / "regions.json")
            info = neurofinder_info(name, p)
            (tmp / "info.json").write_text(json.dumps(info, indent=2))
        meta = {
            "format": FORMAT,
            "name": name,
            "seed": int(seed),
            "digest": p.digest(),
            "layout": layout,
            "fps": p.fps,
            "um_per_px": p.um_per_px,
            "indicator": p.indicator,
            "shape": [p.n_frames, p.height, p.width],
            "params": p.to_dict(),
            "stats": res.stats(),
        }
        (truth_dir / "meta.json").write_text(json.dumps(meta, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("generated %s: %d active of %d somata", dest, meta["stats"]["n_active"], meta["stats"]["n_somata"])
    return meta
