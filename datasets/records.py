"""The `Recording` and `Dataset` records."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import Movie, NpyMovie, movie_from_spec

__all__ = ["Recording", "Dataset", "Fold", "pick_grader"]


def pick_grader(graders: Sequence[str], preferred: str | None) -> str | None:
    """The ground truth scored by default: ``preferred`` when present, else the first, else None."""
    if not graders:
        return None
    return preferred if preferred in graders else graders[0]

#: A ground truth is given either loaded or as a loader called on first use.
GroundTruthSource = Union[Masks, Callable[[], Masks]]


@dataclass(eq=False)
class Recording:
    """One registered two-photon recording and its ground truths.

    Parameters
    ----------
    name : str
        Identifier unique within its data set (e.g. ``"01.00.test"``).
    movie : Movie or None
        The lazily opened (T, H, W) movie, already cropped as the data set
        prescribes; None for a recording known only by its masks (published
        outputs scored without the movie), which then needs ``shape``.
    fps : float
        Frame rate in Hz.
    um_per_px : float
        Pixel size in micrometres.
    ground_truths : mapping of str to Masks or callable
        Ground truths keyed by grader (``"default"``, ``"grader1"``, ``"allen"`` ...);
        a callable is loaded on first use.
    indicator : str, optional
        Calcium indicator (``"GCaMP6f"``, ``"GCaMP6s"``).
    split : str
        ``"train"`` or ``"test"``.
    group : str, optional
        Recordings of one group share a field of view or animal (leave-one-group-out).
    provenance : dict
        Source URLs, file checksums, generator parameters.
    shape : (int, int), optional
        Frame shape when there is no movie.
    """

    name: str
    movie: Movie | None
    fps: float
    um_per_px: float
    ground_truths: Mapping[str, GroundTruthSource] = field(default_factory=dict)
    indicator: str | None = None
    split: str = "test"
    group: str | None = None
    provenance: dict = field(default_factory=dict)
    shape: tuple[int, int] | None = None
    _loaded: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.fps or self.fps <= 0:
            raise InputError(f"recording {self.name}: frame rate must be > 0 Hz, got {self.fps}")
        if not self.um_per_px or self.um_per_px <= 0:
            raise InputError(f"recording {self.name}: pixel size must be > 0 um, got {self.um_per_px}")
        if self.movie is None and self.shape is None:
            raise InputError(f"recording {self.name}: without a movie, the frame shape must be given")
        if self.split not in ("train", "test"):
            raise InputError(f"recording {self.name}: split must be 'train' or 'test', got {self.split!r}")

    @property
    def graders(self) -> tuple[str, ...]:
        """Names of the available ground truths."""
        return tuple(self.ground_truths)

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.movie.frame_shape if self.movie is not None else tuple(self.shape)

    @property
    def n_frames(self) -> int:
        """Frames of the movie (0 without one)."""
        return self.movie.n_frames if self.movie is not None else 0

    @property
    def crop(self) -> tuple[int, int, int, int] | None:
        """Pixels cut from the file's frame, (top, bottom, left, right): the registration border.

        Every method sees the movie inside this crop and the ground truths are
        cropped to match; None for a recording without a movie.
        """
        return self.movie.border if self.movie is not None else None

    def to_spec(self, spill: str | Path | None = None) -> dict:
        """A JSON-able description that :meth:`from_spec` turns back into this recording, without ground truth.

        The movie is described by :meth:`datasets.movies.Movie.to_spec`, so a
        worker reopens its file lazily. Only a movie held in memory has no
        file: with ``spill`` (a folder) it is written there as ``movie.npy``
        in chunks; without, it raises.

        Raises
        ------
        InputError
            For a movie held in memory and no ``spill`` folder.
        """
        movie = None
        if self.movie is not None:
            if self.movie.kind is None and spill is not None:
                movie = _spill(self.movie, Path(spill) / "movie.npy")
            else:
                movie = self.movie.to_spec()
        return {
            "name": self.name,
            "movie": movie,
            "fps": self.fps,
            "um_per_px": self.um_per_px,
            "indicator": self.indicator,
            "split": self.split,
            "group": self.group,
            "shape": list(self.frame_shape),
            "crop": None if self.crop is None else list(self.crop),
        }

    @classmethod
    def from_spec(cls, spec: Mapping) -> Recording:
        """The recording described by :meth:`to_spec`, its movie reopened lazily and no ground truth.

        Raises
        ------
        InputError
            When the movie's file is gone or no longer has the recorded shape.
        """
        movie = movie_from_spec(spec["movie"]) if spec.get("movie") is not None else None
        shape = tuple(int(v) for v in spec["shape"])
        if movie is not None and movie.frame_shape != shape:
            raise InputError(
                f"recording {spec['name']}: the movie frame is now {movie.frame_shape}, it was {shape}",
                path=movie.source,
            )
        return cls(
            name=spec["name"],
            movie=movie,
            fps=spec["fps"],
            um_per_px=spec["um_per_px"],
            indicator=spec.get("indicator"),
            split=spec.get("split", "test"),
            group=spec.get("group"),
            shape=shape,
        )

    def ground_truth(self, grader: str = "default") -> Masks:
        """The masks of one grader, loaded on first use and checked against the frame."""
        if grader not in self.ground_truths:
            raise InputError(
                f"recording {self.name} has no ground truth '{grader}'",
                hint=f"available: {', '.join(self.graders) or 'none'}",
            )
        if grader not in self._loaded:
            gt = self.ground_truths[grader]
            masks = gt() if callable(gt) else gt
            if masks.shape != self.frame_shape:
                raise InputError(
                    f"recording {self.name}: ground truth '{grader}' is {masks.shape[0]}x{masks.shape[1]}, "
                    f"the movie frame is {self.frame_shape[0]}x{self.frame_shape[1]}"
                )
            self._loaded[grader] = masks
        return self._loaded[grader]


@dataclass(frozen=True)
class Fold:
    """One leave-one-out fold: tune on ``train``, score on ``held_out``."""

    index: int
    train: tuple[Recording, ...]
    held_out: Recording


@dataclass(eq=False)
class Dataset:
    """A named, ordered collection of recordings with splits and folds.

    Parameters
    ----------
    name : str
        Registry name (``"synthetic"``, ``"neurofinder"``).
    recordings : sequence of Recording
        In a fixed order; names must be unique.
    description : str
        One line for listings.
    default_grader : str
        The ground truth scored by default.
    """

    name: str
    recordings: Sequence[Recording]
    description: str = ""
    default_grader: str = "default"

    def __post_init__(self) -> None:
        self.recordings = tuple(self.recordings)
        names = [r.name for r in self.recordings]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"data set {self.name}: duplicate recording names {dupes}")

    def __len__(self) -> int:
        return len(self.recordings)

    def __iter__(self) -> Iterator[Recording]:
        return iter(self.recordings)

    def __getitem__(self, name: str) -> Recording:
        for r in self.recordings:
            if r.name == name:
                return r
        raise InputError(
            f"data set {self.name} has no recording '{name}'",
            hint=f"recordings: {', '.join(r.name for r in self.recordings)}",
        )

    def grader_for(self, recording: Recording) -> str | None:
        """The ground truth that tuning and the per-neuron analysis use for ``recording``."""
        return pick_grader(recording.graders, self.default_grader)

    def split(self, which: str) -> tuple[Recording, ...]:
        """Recordings of the ``"train"`` or ``"test"`` split."""
        return tuple(r for r in self.recordings if r.split == which)

    def folds(self, recordings: Sequence[Recording] | None = None) -> list[Fold]:
        """Leave-one-out folds over ``recordings`` (default: all).

        When recordings carry a ``group``, the whole group of the held-out
        recording is left out of its training set, so that a test video never
        tunes on its own field of view.
        """
        recs = tuple(self.recordings if recordings is None else recordings)
        folds = []
        for i, held in enumerate(recs):
            train = tuple(r for r in recs if r is not held and (held.group is None or r.group != held.group))
            folds.append(Fold(i, train, held))
        return folds


def _spill(movie: Movie, path: Path, chunk: int = 256) -> dict:
    """Write an in-memory movie to ``path`` (.npy) block by block; return the spec of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=movie.dtype, shape=movie.shape)
    for start in range(0, movie.n_frames, chunk):
        block = movie.read(start, start + chunk)
        out[start : start + block.shape[0]] = block
    out.flush()
    del out
    return NpyMovie(path, check_finite=movie.check_finite).to_spec()
