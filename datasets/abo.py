"""The Allen Brain Observatory data set (``abo``): the 10 + 10 STNeuroNet videos at 275 and 175 um.

Movies are the Allen Brain Observatory's motion-corrected experiment files,
``<root>/abo/ophys_experiment_<id>.h5`` (dataset ``/data``, (T, 512, 512) uint16;
public at ``allen-brain-observatory.s3.amazonaws.com/visual-coding-2p/ophys_movies/``,
~50-60 GB each). An NWB file ``ophys_experiment_<id>.nwb`` with a
TwoPhotonSeries of the same movie is accepted in its place.

Preparation as in the paper (prepareAllen.m): the first fifth of the frames
(``floor(T / 5)``), the border crop 0-based ``[12:499]`` in both axes
(487x487), 30 Hz, 0.78 um/px, GCaMP6f.

Ground truths (``<root>/stneuronet/Markings/ABO/Layer<depth>/...``, from the
STNeuroNet repository), all over the 487x487 cropped frame:

- ``"final"`` (default): ``FinalGT/FinalMasks_FPremoved_<id>.mat``, MATLAB v7.3,
  (N, rows, cols) as h5py reads it. Published for nine 275 um videos; absent
  for 539670003 and for every 175 um video (those files are listed in the
  repository tree but could not be retrieved; ``fetch`` still tries them);
- ``"allen"``: ``Allen/Masks_<id>.mat`` (v5, axes (2, 1, 0)), all 20 videos;
- ``"grader3"``, ``"grader4"``: ``Grader3|Grader4/FinalMasks_<id>.mat`` (v5,
  axes (2, 1, 0); Grader3 502608215 is v7.3, as stored), 275 um only.

A ground truth is offered only when its file is on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from datasets.errors import InputError
from datasets.inventory import RecordingStatus, folder_bytes, inventory_availability, load_on_disk
from datasets.markings import MARKINGS, load_marking, marking_file
from datasets.movie_files import open_movie
from datasets.movies import HDF5Movie
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider, closest
from datasets.remote import RemoteFile, base_url, fetch_command

__all__ = [
    "ABOProvider",
    "LAYER275",
    "LAYER175",
    "CROP",
    "FPS",
    "UM_PER_PX",
    "open_abo_movie",
    "load_recording",
    "published_markings",
]

log = logging.getLogger(__name__)

#: 275 um videos, in the order of the paper's leave-one-out folds (expID in OptParam_*_LOO).
LAYER275: tuple[str, ...] = (
    "524691284",
    "531006860",
    "502608215",
    "503109347",
    "501484643",
    "501574836",
    "501729039",
    "539670003",
    "510214538",
    "527048992",
)
#: 175 um videos (the Markings/ABO/Layer175 folder names).
LAYER175: tuple[str, ...] = (
    "501271265",
    "501704220",
    "501836392",
    "502115959",
    "502205092",
    "504637623",
    "510514474",
    "510517131",
    "540684467",
    "545446482",
)
#: In-plane crop, 0-based half-open: MATLAB's 13..end-13 of a 512 px axis. This is the paper's
#: registration border of about 10 um a side (12 and 13 px at 0.78 um/px), and the frame the
#: STNeuroNet markings index; a Recording reports it as ``crop == (12, 13, 12, 13)``.
CROP = slice(12, 499)
FPS = 30.0
UM_PER_PX = 0.78
INDICATOR = "GCaMP6f"
#: Fraction of the frames used (the first fifth, floor(T/5)).
FRACTION_DENOMINATOR = 5

#: Ground-truth name -> folder and file prefix under Markings/ABO/Layer<depth>/.
GRADERS: dict[str, tuple[str, str]] = {
    "final": ("FinalGT", "FinalMasks_FPremoved_"),
    "allen": ("Allen", "Masks_"),
    "grader3": ("Grader3", "FinalMasks_"),
    "grader4": ("Grader4", "FinalMasks_"),
}


def _layer(exp_id: str) -> str:
    return "275" if exp_id in LAYER275 else "175"


def _marking_rel(exp_id: str, grader: str) -> str:
    folder, prefix = GRADERS[grader]
    return f"ABO/Layer{_layer(exp_id)}/{folder}/{prefix}{exp_id}.mat"


def published_markings(exp_id: str) -> dict[str, bool]:
    """Which ground truths of an experiment the STNeuroNet repository lists, and whether each is retrievable."""
    out = {}
    for grader in GRADERS:
        rel = _marking_rel(exp_id, grader)
        if rel in MARKINGS:
            out[grader] = MARKINGS[rel] is not None
    return out


def open_abo_movie(path: str | Path, *, fraction: bool = True, key: str | None = None):
    """Open an ABO experiment movie lazily with the paper's preparation.

    Parameters
    ----------
    path : str or Path
        ``ophys_experiment_<id>.h5`` (``/data``) or an NWB file with a TwoPhotonSeries.
    fraction : bool
        Expose only the first fifth of the frames, as the paper does.
    key : str, optional
        HDF5 dataset or NWB series name (default ``data`` / the only series).

    Returns
    -------
    Movie
        (floor(T/5), 487, 487); no frame is read.
    """
    path = Path(path)
    full = open_movie(path, key=key if key is not None else ("data" if path.suffix.lower() != ".nwb" else None))
    t, h, w = full.shape
    if h < CROP.stop or w < CROP.stop:
        raise InputError(
            f"frames are {h}x{w}; the ABO crop [12:499] needs 512x512 experiment frames",
            path=path,
            hint="use the motion-corrected ophys_experiment_<id>.h5 movie",
        )
    n = t // FRACTION_DENOMINATOR if fraction else t
    if n < 1:
        raise InputError(f"the movie has {t} frame(s); the first fifth is empty", path=path)
    if isinstance(full, HDF5Movie):
        # Reuse the resolved dataset path (an NWB series resolves to <series>/data).
        return HDF5Movie(path, full.key, rows=CROP, cols=CROP, frames=slice(0, n), check_finite=True)
    return open_movie(path, key=key, rows=CROP, cols=CROP, frames=slice(0, n))


def load_recording(exp_id: str, movie_path: Path, markings_root: Path, *, fraction: bool = True) -> Recording:
    """A :class:`Recording` of one ABO experiment with the ground truths found under ``markings_root``.

    ``markings_root`` is the folder holding ``ABO/Layer275/...`` (``<root>/stneuronet/Markings``).
    """
    movie = open_abo_movie(movie_path, fraction=fraction)
    frame = movie.frame_shape
    gts = {}
    for grader in GRADERS:
        p = Path(markings_root) / _marking_rel(exp_id, grader)
        if p.is_file():
            gts[grader] = lambda p=p: load_marking(p, "abo", frame)
    depth = _layer(exp_id)
    return Recording(
        name=exp_id,
        movie=movie,
        fps=FPS,
        um_per_px=UM_PER_PX,
        ground_truths=gts,
        indicator=INDICATOR,
        # The paper tunes on the 275 um videos (leave-one-out) and tests on the 175 um ones.
        split="train" if depth == "275" else "test",
        group=f"{depth}um",
        provenance={
            "source": str(movie_path),
            "experiment_id": int(exp_id),
            "depth_um": int(depth),
            "crop": {"rows": [CROP.start, CROP.stop], "cols": [CROP.start, CROP.stop]},
            "frames": [0, movie.n_frames],
            "markings": {g: str(Path(markings_root) / _marking_rel(exp_id, g)) for g in gts},
        },
    )


class ABOProvider(DatasetProvider):
    """The 20 ABO videos of the STNeuroNet paper (10 at 275 um, 10 at 175 um)."""

    name = "abo"
    description = "Allen Brain Observatory, 10 + 10 videos at 275/175 um (GCaMP6f, 30 Hz), STNeuroNet GT and markings"

    def __init__(self, experiments: Iterable[str] | None = None, *, fraction: bool = True):
        self.recordings: tuple[str, ...] = tuple(experiments) if experiments is not None else LAYER275 + LAYER175
        self.fraction = fraction

    def folder(self, root: Path) -> Path:
        return Path(root) / "abo"

    def markings_root(self, root: Path) -> Path:
        return Path(root) / "stneuronet" / "Markings"

    def movie_path(self, root: Path, exp_id: str) -> Path | None:
        """The movie file of an experiment on disk (``.h5`` preferred, else ``.nwb``), or None."""
        for suffix in (".h5", ".nwb"):
            p = self.folder(root) / f"ophys_experiment_{exp_id}{suffix}"
            if p.is_file():
                return p
        return None

    def _select(self, only: Iterable[str] | None) -> tuple[list[str], bool]:
        if not only:
            return list(self.recordings), True
        ids, markings_only = [], False
        for token in only:
            if token == "markings":
                markings_only = True
            elif token in ("275", "275um"):
                ids += [i for i in LAYER275 if i in self.recordings]
            elif token in ("175", "175um"):
                ids += [i for i in LAYER175 if i in self.recordings]
            elif token in self.recordings:
                ids.append(token)
            else:
                raise InputError(f"abo has no experiment '{token}'", hint=closest(token, self.recordings))
        if markings_only and not ids:
            return list(self.recordings), False
        return list(dict.fromkeys(ids)), not markings_only

    def remote_files(
        self, root: Path, only: Iterable[str] | None = None, base_urls: dict[str, str] | None = None
    ) -> list[RemoteFile]:
        """Movies and marking files of the selected experiments (``only``: ids, ``275``, ``175`` or ``markings``)."""
        ids, movies = self._select(only)
        out = []
        for exp_id in ids:
            if movies:
                out.append(
                    RemoteFile(
                        url=f"{base_url('abo', base_urls)}/ophys_experiment_{exp_id}.h5",
                        dest=f"abo/ophys_experiment_{exp_id}.h5",
                        recording=exp_id,
                        alternatives=(f"abo/ophys_experiment_{exp_id}.nwb",),
                    )
                )
            for grader in GRADERS:
                rel = _marking_rel(exp_id, grader)
                if rel in MARKINGS:
                    out.append(marking_file(rel, base_urls, recording=exp_id))
        return out

    def inventory(self, root: Path) -> list[RecordingStatus]:
        out = []
        for exp_id in self.recordings:
            movie = self.movie_path(root, exp_id)
            missing = [] if movie else [f"ophys_experiment_{exp_id}.h5"]
            have = []
            for grader, ok in published_markings(exp_id).items():
                p = self.markings_root(root) / _marking_rel(exp_id, grader)
                if p.is_file():
                    have.append(grader)
                elif ok:
                    missing.append(p.name)
            out.append(
                RecordingStatus(
                    name=exp_id,
                    on_disk=movie is not None,
                    bytes_on_disk=folder_bytes(movie) if movie else 0,
                    missing=tuple(missing),
                    note=f"{_layer(exp_id)} um; ground truths on disk: {', '.join(have) or 'none'}",
                )
            )
        return out

    def availability(self, root: Path) -> Availability:
        return inventory_availability(
            self.name,
            self.inventory(root),
            self.folder(root),
            "each movie is ~50-60 GB (fetch --only markings gets the ground truths alone)",
        )

    def load(self, root: Path) -> Dataset:
        def one(exp_id):
            path = self.movie_path(root, exp_id)
            if path is None:
                return None
            return load_recording(exp_id, path, self.markings_root(root), fraction=self.fraction)

        recs = load_on_disk(
            self.name,
            self.recordings,
            one,
            folder=self.folder(root),
            what="ABO movie",
            hint=f"run `{fetch_command(self.name, [])}` (or `--only ID ...`) or put ophys_experiment_<id>.h5 there",
        )
        return Dataset(self.name, recs, self.description, default_grader="final")
