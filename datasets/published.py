"""Published ABO 275 um markings as a data set without movies, for scoring published outputs.

The folder holds files named like ../shared/fixtures/abo275: ``GT_<id>.mat``
(the STNeuroNet authors' final ground truth), ``ALLEN_<id>.mat``,
``G3_<id>.mat`` and ``G4_<id>.mat`` (the Allen Institute's masks and two
graders' markings), beside published output masks (``ST_``, ``SUNS_``,
``S2P_``, ``CB_``, ``CO_``, ``SUNSO_``) that the ``files:`` method reads.
Each ``GT_<id>.mat`` makes one recording; its movie is not needed, so the
recordings carry only their 487x487 frame.

The folder is ``$BENCH_PUBLISHED_ABO275``, else ``<data root>/abo275-published``.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets.abo import CROP, FPS, INDICATOR, UM_PER_PX
from datasets.errors import InputError
from datasets.markings import load_marking
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider

__all__ = ["PublishedABO275", "GRADER_PREFIXES", "OUTPUT_PREFIXES"]

FRAME = (CROP.stop - CROP.start, CROP.stop - CROP.start)
#: ground-truth name -> file prefix
GRADER_PREFIXES = {"final": "GT", "allen": "ALLEN", "grader3": "G3", "grader4": "G4"}
#: published method -> file prefix
OUTPUT_PREFIXES = {
    "STNeuroNet": "ST",
    "SUNS": "SUNS",
    "SUNS-online": "SUNSO",
    "Suite2p": "S2P",
    "CaImAn-Batch": "CB",
    "CaImAn-Online": "CO",
}


class PublishedABO275(DatasetProvider):
    """ABO 275 um videos known by their published markings (no movie)."""

    name = "abo275-published"
    description = "ABO 275 um ground truths and graders' markings without movies, for scoring published outputs"

    def folder(self, root: Path) -> Path:
        env = os.environ.get("BENCH_PUBLISHED_ABO275")
        return Path(env) if env else Path(root) / self.name

    def _ids(self, root: Path) -> list[str]:
        folder = self.folder(root)
        return sorted(p.stem.split("_", 1)[1] for p in folder.glob("GT_*.mat")) if folder.is_dir() else []

    def availability(self, root: Path) -> Availability:
        ids = self._ids(root)
        if not ids:
            return Availability(
                False,
                reason=f"no GT_<id>.mat under {self.folder(root)}",
                how_to_get="set BENCH_PUBLISHED_ABO275 to a folder of GT_/ALLEN_/G3_/G4_<id>.mat files "
                "(e.g. ../shared/fixtures/abo275)",
            )
        return Availability(True, recordings_on_disk=len(ids), recordings_total=len(ids))

    def load(self, root: Path) -> Dataset:
        folder = self.folder(root)
        ids = self._ids(root)
        if not ids:
            raise InputError("no GT_<id>.mat files", path=folder, hint=self.availability(root).how_to_get)
        recs = []
        for exp_id in ids:
            gts = {}
            for grader, prefix in GRADER_PREFIXES.items():
                path = folder / f"{prefix}_{exp_id}.mat"
                if path.is_file():
                    gts[grader] = lambda p=path: load_marking(p, "abo", FRAME)
            recs.append(
                Recording(exp_id, None, FPS, UM_PER_PX, gts, indicator=INDICATOR, split="test",
                          provenance={"folder": str(folder)}, shape=FRAME)
            )
        return Dataset(self.name, recs, self.description, default_grader="final")
