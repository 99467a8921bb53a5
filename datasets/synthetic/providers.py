"""The synthetic data sets registered as ``synthetic``, ``synthetic-neurofinder`` and ``synthetic-tiny``.

A provider generates its missing recordings on first :meth:`load` under
``<root>/<name>/`` (two worker processes when several are missing, a tqdm bar
on stderr) and opens them with the same readers real data use. A recording
whose stored parameter digest differs from the preset's is regenerated, so
tuning a default never serves a stale cache.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datasets.masks import Masks
from datasets.movies import HDF5Movie, TiffMovie
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider
from datasets.synthetic.params import SimulationParams
from datasets.synthetic.store import read_meta, write_recording

__all__ = [
    "RecordingSpec",
    "SyntheticProvider",
    "SyntheticDefault",
    "SyntheticNeurofinder",
    "SyntheticTiny",
    "DEFAULT_PARAMS",
    "NEUROFINDER_PARAMS",
    "TINY_PARAMS",
]

logger = logging.getLogger(__name__)

#: ABO-like (275 um, VISp): 256x256 px at 0.78 um/px, 30 Hz, GCaMP6f, 80 s (480 frames at 6 Hz = 4 batches).
#: The detector and photon budget are the Neurofinder calibration's (see the simulator section of the README):
#: a pixel's dwell time is 7/30 of a 7 Hz frame's (same 512-px lines), so 1.2 x 7/30 = 0.28 photons per pixel
#: per frame at the neuropil level; 1 um residual motion, no registration border (the ABO frames are cropped).
#: 35 % silent somata (the in-focus somata that do not fire in the session): with the burstier firing that makes
#: Suite2p find cells, 20 % silent gave 0.0022-0.0026 active neurons per um^2, above the ABO 275 um range.
DEFAULT_PARAMS = SimulationParams(motion_um=1.0, silent_fraction=0.35)

#: Neurofinder-like, calibrated on a real Neurofinder 00.xx training movie (``real-movie-stats.md``; each
#: value's measurement is in the README's simulator section): coarser pixels, GCaMP6s, 7 Hz, 1.2 photons per
#: pixel per frame, dark ragged registration borders of ~13 px (left) and ~10 px (right).
NEUROFINDER_PARAMS = SimulationParams(
    height=256,
    width=256,
    n_frames=1400,
    fps=7.0,
    um_per_px=1.15,
    indicator="GCaMP6s",
    bin_fps=3.5,
    photons_per_px=1.2,
    calcium_per_spike_nM=7.0,
    soma_brightness=1.45,
    burst_extra_spikes=1.0,
    calcium_rate_exponent=0.0,
    silent_fraction=0.25,
    # Neurofinder 01/02/04 test GT: 0.00037-0.00125 active neurons per um^2; the real training movie's
    # regions have a median of 67 px (88.6 um^2 at 1.15 um/px): radius 5.4 um gives 66-70 px.
    soma_density_per_mm2=1000.0,
    soma_radius_um=5.4,
    motion_um=1.0,
    border_left_px=15.5,
    border_right_px=12.0,
    border_ragged_px=3.0,
    dprime_threshold=1.7,
    block_frames=200,
)

#: For unit tests: generated in about a second.
TINY_PARAMS = SimulationParams(
    height=96, width=96, n_frames=600, block_frames=100, soma_density_per_mm2=4000.0, vessel_radius_um=(2.0, 6.0)
)


@dataclass(frozen=True)
class RecordingSpec:
    """Name, seed, split and group of one recording of a preset."""

    name: str
    seed: int
    split: str
    group: str


def _generate(args) -> dict:
    folder, name, params, seed, layout = args
    return write_recording(Path(folder), name, params, seed, layout=layout)


class SyntheticProvider(DatasetProvider):
    """A data set of generated recordings (subclasses set the preset)."""

    name = "synthetic"
    description = ""
    params: SimulationParams = DEFAULT_PARAMS
    layout = "hdf5"
    specs: tuple[RecordingSpec, ...] = ()

    def folder(self, root: Path, spec: RecordingSpec) -> Path:
        return Path(root) / self.name / spec.name

    def _is_current(self, root: Path, spec: RecordingSpec) -> bool:
        meta = read_meta(self.folder(root, spec))
        return bool(meta) and meta.get("digest") == self.params.digest() and meta.get("seed") == spec.seed

    def availability(self, root: Path) -> Availability:
        on_disk = sum(self._is_current(root, s) for s in self.specs)
        return Availability(
            available=True,
            reason="" if on_disk == len(self.specs) else "generated on first use",
            how_to_get=f"generated automatically under {Path(root) / self.name} on first load",
            recordings_on_disk=on_disk,
            recordings_total=len(self.specs),
        )

    def generate(self, root: Path, *, workers: int | None = None) -> int:
        """Generate every missing or stale recording; return how many were generated."""
        from tqdm import tqdm

        missing = [s for s in self.specs if not self._is_current(root, s)]
        if not missing:
            return 0
        logger.info("generating %d recording(s) of %s under %s", len(missing), self.name, Path(root) / self.name)
        jobs = [(str(self.folder(root, s)), s.name, self.params, s.seed, self.layout) for s in missing]
        if workers is None:
            workers = min(len(jobs), os.cpu_count() or 1, 2)
        bar = tqdm(total=len(jobs), desc=f"generating {self.name}", unit="rec", leave=False)
        try:
            if workers <= 1 or len(jobs) == 1:
                for job in jobs:
                    _generate(job)
                    bar.update(1)
            else:
                with ProcessPoolExecutor(max_workers=workers) as ex:
                    for _ in ex.map(_generate, jobs):
                        bar.update(1)
        finally:
            bar.close()
        return len(jobs)

    def _recording(self, root: Path, spec: RecordingSpec) -> Recording:
        folder = self.folder(root, spec)
        meta = read_meta(folder) or {}
        p = self.params
        if self.layout == "neurofinder":
            from datasets.maskio import read_regions_json

            frames = sorted((folder / "images").glob("image*.tiff"))
            movie = TiffMovie(frames)
            shape = (p.height, p.width)
            default = lambda: read_regions_json(folder / "regions" / "regions.json", shape)  # noqa: E731
            truth = folder / "truth"
        else:
            movie = HDF5Movie(folder / "movie.h5", "data")
            default = lambda: Masks.load(folder / "masks_active.npz")  # noqa: E731
            truth = folder
        return Recording(
            name=spec.name,
            movie=movie,
            fps=p.fps,
            um_per_px=p.um_per_px,
            ground_truths={"default": default, "all_somata": lambda: Masks.load(truth / "masks_all.npz")},
            indicator=p.indicator,
            split=spec.split,
            group=spec.group,
            provenance={
                "generator": "datasets.synthetic",
                "seed": spec.seed,
                "digest": p.digest(),
                "truth_file": str(truth / "truth.h5"),
                "stats": meta.get("stats", {}),
                "params": p.to_dict(),
            },
        )

    def load(self, root: Path) -> Dataset:
        root = Path(root)
        self.generate(root)
        return Dataset(self.name, [self._recording(root, s) for s in self.specs], self.description, "default")


class SyntheticDefault(SyntheticProvider):
    """``synthetic``: 10 ABO-like recordings (7 train, 3 test), generated on first use."""

    name = "synthetic"
    description = (
        "Simulated ABO-like two-photon movies (256x256 px, 0.78 um/px, 30 Hz, GCaMP6f), exact active-neuron GT"
    )
    params = DEFAULT_PARAMS
    specs = tuple(
        RecordingSpec(f"syn{i:02d}", 1000 + i, "train" if i < 7 else "test", f"syn{i:02d}") for i in range(10)
    )


class SyntheticNeurofinder(SyntheticProvider):
    """``synthetic-neurofinder``: Neurofinder-like recordings in the Neurofinder folder layout."""

    name = "synthetic-neurofinder"
    description = "Simulated Neurofinder-like movies (1.15 um/px, 7 Hz, GCaMP6s, lower SNR) in the Neurofinder layout"
    params = NEUROFINDER_PARAMS
    layout = "neurofinder"
    specs = (
        RecordingSpec("neurofinder.01.00", 2000, "train", "01"),
        RecordingSpec("neurofinder.01.00.test", 2001, "test", "01"),
        RecordingSpec("neurofinder.02.00", 2002, "train", "02"),
        RecordingSpec("neurofinder.02.00.test", 2003, "test", "02"),
    )


class SyntheticTiny(SyntheticProvider):
    """``synthetic-tiny``: two small recordings for unit tests (seconds to generate)."""

    name = "synthetic-tiny"
    description = "Two tiny simulated recordings (96x96 px, 20 s) for tests"
    params = TINY_PARAMS
    specs = (RecordingSpec("tiny00", 7, "train", "tiny00"), RecordingSpec("tiny01", 8, "test", "tiny01"))
