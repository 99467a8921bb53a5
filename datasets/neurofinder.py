"""The Neurofinder data set (``neurofinder``): 01.00, 01.01, 02.00, 02.01, 04.00, 04.01, train and test.

Layout under ``<root>/neurofinder/``, as published by the challenge: either the
extracted folder or the zip itself (read in place, frame by frame)::

    neurofinder.01.00/            or  neurofinder.01.00.zip
        images/image00000.tiff        (the same tree inside)
        regions/regions.json          (training sets only)
        info.json                     (rate-hz, pixels-per-micron, indicator, ...)
    neurofinder.01.00.test/       or  neurofinder.01.00.test.zip

Preparation as in the STNeuroNet paper: the movie is cropped by a fixed border
(01: 4 px each side -> 504x504; 02: rows 4, cols 24 -> 504x464; 04: rows 16,
cols 48 -> 480x416). Frame rate and pixel size come from ``info.json``
(``um_per_px = 1 / pixels-per-micron``).

Ground truths:

- ``"grader1"`` (default): the STNeuroNet authors' grader-1 markings of the
  cropped frame, ``<root>/stneuronet/Markings/Neurofinder/{train,test}/Grader1/FinalMasks_<id>.mat``
  (ids 100, 101, 200, 201, 400, 401);
- ``"neurofinder"``: the challenge's own regions (training sets only), cropped
  like the movie; regions that lie wholly in the border are dropped.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datasets.borders import crop_ground_truth
from datasets.errors import InputError
from datasets.inventory import RecordingStatus, folder_bytes, inventory_availability, load_on_disk
from datasets.jsonio import read_json
from datasets.markings import load_marking, marking_file
from datasets.maskio import regions_coordinates
from datasets.masks import Masks
from datasets.movie_files import natural_key, open_movie, tiff_frames
from datasets.movies import ZipTiffMovie
from datasets.records import Dataset, Recording
from datasets.registry import Availability, DatasetProvider, closest
from datasets.remote import RemoteFile, base_url, fetch_command

__all__ = [
    "NeurofinderProvider",
    "NeurofinderSource",
    "ZipTiffMovie",
    "RECORDINGS",
    "BORDERS",
    "open_source",
    "load_recording",
]

log = logging.getLogger(__name__)

#: Recording names in the data set's order: each training set followed by its test set.
RECORDINGS: tuple[str, ...] = tuple(
    name for base in ("01.00", "01.01", "02.00", "02.01", "04.00", "04.01") for name in (base, f"{base}.test")
)

#: Border cropped from (rows, cols) on each side, by the first field of the id (prepareNeurofinder.m).
BORDERS: dict[str, tuple[int, int]] = {"01": (4, 4), "02": (4, 24), "04": (16, 48)}

_TIFF = re.compile(r"\.tiff?$", re.IGNORECASE)


def _split(name: str) -> tuple[str, bool]:
    """('01.00', is_test) of a recording name."""
    return (name[: -len(".test")], True) if name.endswith(".test") else (name, False)


def _code(base: str) -> str:
    """The STNeuroNet file id of a Neurofinder id: '01.00' -> '100', '04.01' -> '401'."""
    major, minor = base.split(".")
    return f"{int(major)}{minor[-2:]}"


# ---------------------------------------------------------------------------- one recording
@dataclass(frozen=True)
class NeurofinderSource:
    """Where one Neurofinder recording's files are: an extracted folder or a zip.

    Attributes
    ----------
    path : Path
        The folder ``neurofinder.XX.YY[.test]`` or the zip.
    kind : {"folder", "zip"}
    frames : tuple of str
        Frame files (folder: absolute paths; zip: member names), in time order.
    info : dict
        The parsed ``info.json``.
    regions : list or None
        The parsed ``regions/regions.json``, or None (test sets).
    """

    path: Path
    kind: str
    frames: tuple[str, ...]
    info: dict
    regions: list | None


def open_source(path: str | Path, *, expect_regions: bool | None = None) -> NeurofinderSource:
    """Validate a Neurofinder folder or zip and read its small files (not its frames).

    Parameters
    ----------
    path : str or Path
        ``neurofinder.XX.YY[.test]`` folder or ``.zip``.
    expect_regions : bool, optional
        True for a training set (``regions/regions.json`` required), False for
        a test set; None to accept either.

    Raises
    ------
    InputError
        Naming the path and the fix for a missing or partial folder, a zip that
        is not a Neurofinder set, or a damaged ``info.json``/``regions.json``.
    """
    path = Path(path)
    refetch = "re-extract or re-download it (python -m bench fetch neurofinder --only ID)"
    if path.is_dir():
        images = path / "images"
        if not images.is_dir():
            raise InputError("missing the images/ folder of TIFF frames", path=images, hint=refetch)
        frames = tuple(str(p) for p in tiff_frames(images))
        info_path = path / "info.json"
        if not info_path.is_file():
            raise InputError("missing info.json (frame rate and pixel size)", path=info_path, hint=refetch)
        info = read_json(info_path)
        reg_path = path / "regions" / "regions.json"
        regions = _parse_regions(reg_path.read_bytes(), reg_path) if reg_path.is_file() else None
        if expect_regions and regions is None:
            raise InputError(
                "a training set has images but no regions/regions.json",
                path=reg_path,
                hint=f"partial folder: {refetch}",
            )
        return NeurofinderSource(path, "folder", frames, info, regions)

    if not path.is_file():
        raise InputError("not found", path=path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a zip archive", path=path, hint=f"a truncated download? {refetch}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]
            frames = sorted((n for n in names if _TIFF.search(n) and "/images/" in f"/{n}"), key=natural_key)
            infos = [n for n in names if n.rsplit("/", 1)[-1] == "info.json"]
            if not frames or not infos:
                missing = [w for w, ok in (("images/*.tiff", frames), ("info.json", infos)) if not ok]
                raise InputError(
                    f"not a Neurofinder data set: no {' and no '.join(missing)} inside",
                    path=path,
                    hint="expected the published neurofinder.XX.YY[.test].zip",
                )
            prefix = frames[0][: frames[0].rfind("images/")]
            info_name = prefix + "info.json" if prefix + "info.json" in names else infos[0]
            info = _parse_info(zf.read(info_name), f"{path}:{info_name}")
            reg_name = prefix + "regions/regions.json"
            regions = _parse_regions(zf.read(reg_name), f"{path}:{reg_name}") if reg_name in names else None
    except zipfile.BadZipFile as exc:
        raise InputError(f"damaged zip archive ({exc})", path=path, hint=refetch) from exc
    if expect_regions and regions is None:
        raise InputError("a training set without regions/regions.json inside", path=path, hint=refetch)
    return NeurofinderSource(path, "zip", tuple(frames), info, regions)


def _parse_info(raw: bytes, where) -> dict:
    try:
        info = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable info.json ({exc})", path=where) from exc
    if not isinstance(info, dict):
        raise InputError("info.json must hold a JSON object", path=where)
    return info


def _parse_regions(raw: bytes, where) -> list:
    try:
        regions = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable regions.json ({exc})", path=where) from exc
    if not isinstance(regions, list) or not all(isinstance(r, dict) and "coordinates" in r for r in regions):
        raise InputError("expected a list of {'coordinates': [[row, col], ...]}", path=where)
    return regions


def _rate_and_pixel(info: dict, where: Path) -> tuple[float, float]:
    rate = info.get("rate-hz")
    ppm = info.get("pixels-per-micron")
    if not isinstance(rate, (int, float)) or rate <= 0:
        raise InputError(f"info.json has no positive 'rate-hz' (got {rate!r})", path=where)
    if not isinstance(ppm, (int, float)) or ppm <= 0:
        raise InputError(f"info.json has no positive 'pixels-per-micron' (got {ppm!r})", path=where)
    # Despite its name, the key holds micrometres per pixel: the published sets
    # say 1.15 for ~600 um fields of 512 px, and the challenge's own scorer
    # turned its 6 um matching distance into pixels as 6.0 / pixels-per-micron.
    return float(rate), float(ppm)


def _regions_masks(regions: list, raw_shape: tuple[int, int], rows: slice, cols: slice, where) -> Masks:
    coords = regions_coordinates(regions, where)
    try:
        masks = Masks.from_coordinates(coords, raw_shape)
    except InputError as exc:
        raise InputError(str(exc), path=where, hint="the regions do not fit the movie frame") from exc
    return crop_ground_truth(masks, rows, cols, where)


def load_recording(name: str, source: NeurofinderSource, markings: Path | None = None) -> Recording:
    """A :class:`Recording` of one Neurofinder set, cropped as in the paper.

    Parameters
    ----------
    name : str
        ``XX.YY`` or ``XX.YY.test``.
    source : NeurofinderSource
        From :func:`open_source`.
    markings : Path, optional
        The grader-1 ``FinalMasks_<id>.mat`` file; its ground truth is added when it exists.
    """
    base, is_test = _split(name)
    series = base.split(".")[0]
    if series not in BORDERS:
        raise InputError(f"no crop is defined for Neurofinder {base}", hint=f"known series: {', '.join(BORDERS)}")
    br, bc = BORDERS[series]
    if source.kind == "zip":
        probe = ZipTiffMovie(source.path, list(source.frames))
    else:
        probe = open_movie(Path(source.path) / "images")
    h, w = probe.frame_shape
    if h <= 2 * br or w <= 2 * bc:
        raise InputError(f"frames are {h}x{w}, too small for the {br}/{bc} px border crop", path=source.path)
    rows, cols = slice(br, h - br), slice(bc, w - bc)
    if source.kind == "zip":
        movie = ZipTiffMovie(source.path, list(source.frames), rows=rows, cols=cols, check_finite=True)
    else:
        movie = open_movie(Path(source.path) / "images", rows=rows, cols=cols)
    if (h, w) != (512, 512):
        log.warning("%s: frames are %dx%d, the published sets are 512x512", source.path, h, w)
    info_where = source.path / "info.json" if source.kind == "folder" else source.path
    fps, um = _rate_and_pixel(source.info, info_where)

    gts: dict = {}
    if markings is not None and Path(markings).is_file():
        gts["grader1"] = lambda p=Path(markings), f=movie.frame_shape: load_marking(p, "neurofinder", f)
    if source.regions is not None and not is_test:
        where = source.path / "regions" / "regions.json" if source.kind == "folder" else source.path
        gts["neurofinder"] = lambda: _regions_masks(source.regions, (h, w), rows, cols, where)
    return Recording(
        name=name,
        movie=movie,
        fps=fps,
        um_per_px=um,
        ground_truths=gts,
        indicator=source.info.get("indicator"),
        split="test" if is_test else "train",
        group=base,
        provenance={
            "source": str(source.path),
            "layout": source.kind,
            "crop": {"rows": [rows.start, rows.stop], "cols": [cols.start, cols.stop]},
            "info": source.info,
            "markings": str(markings) if markings is not None and Path(markings).is_file() else None,
        },
    )


# ---------------------------------------------------------------------------- provider
class NeurofinderProvider(DatasetProvider):
    """The six Neurofinder sets used by STNeuroNet, each with its training and test movie."""

    name = "neurofinder"
    description = "Neurofinder 01.00-04.01 train/test (GCaMP6), cropped as in STNeuroNet; grader-1 and original GT"
    recordings = RECORDINGS

    # -- files
    def folder(self, root: Path) -> Path:
        return Path(root) / "neurofinder"

    def _candidates(self, root: Path, name: str) -> tuple[Path, Path]:
        d = self.folder(root)
        return d / f"neurofinder.{name}", d / f"neurofinder.{name}.zip"

    def _marking_rel(self, name: str) -> str:
        base, is_test = _split(name)
        return f"Neurofinder/{'test' if is_test else 'train'}/Grader1/FinalMasks_{_code(base)}.mat"

    def marking_path(self, root: Path, name: str) -> Path:
        """Where the grader-1 marking file of a recording is kept."""
        return Path(root) / "stneuronet" / "Markings" / self._marking_rel(name)

    def _select(self, only: Iterable[str] | None) -> tuple[list[str], bool]:
        if not only:
            return list(self.recordings), True
        names, markings_only = [], False
        for token in only:
            if token == "markings":
                markings_only = True
                continue
            token = token.removeprefix("neurofinder.")
            if token not in self.recordings:
                raise InputError(f"neurofinder has no recording '{token}'", hint=closest(token, self.recordings))
            names.append(token)
        if markings_only and not names:
            return list(self.recordings), False
        return names, not markings_only

    def remote_files(
        self, root: Path, only: Iterable[str] | None = None, base_urls: dict[str, str] | None = None
    ) -> list[RemoteFile]:
        """The zips and grader-1 marking files of the selected recordings (``only``: ids or ``markings``)."""
        names, movies = self._select(only)
        out = []
        for name in names:
            folder, zpath = self._candidates(root, name)
            if movies:
                out.append(
                    RemoteFile(
                        url=f"{base_url('neurofinder', base_urls)}/neurofinder.{name}.zip",
                        dest=f"neurofinder/{zpath.name}",
                        recording=name,
                        alternatives=(f"neurofinder/{folder.name}/images",),
                    )
                )
            out.append(marking_file(self._marking_rel(name), base_urls, recording=name))
        return out

    # -- listing
    def _on_disk(self, root: Path, name: str) -> Path | None:
        folder, zpath = self._candidates(root, name)
        if (folder / "images").is_dir():
            return folder
        if zpath.is_file():
            return zpath
        if folder.is_dir():
            return folder  # partial folder: reported by load with the fix
        return None

    def inventory(self, root: Path) -> list[RecordingStatus]:
        """One :class:`RecordingStatus` per recording (no frame is read)."""
        out = []
        for name in self.recordings:
            path = self._on_disk(root, name)
            marking = self.marking_path(root, name)
            missing = []
            if path is None:
                missing.append(f"neurofinder.{name}.zip")
            if not marking.is_file():
                missing.append(marking.name)
            out.append(
                RecordingStatus(
                    name=name,
                    on_disk=path is not None,
                    bytes_on_disk=folder_bytes(path) if path is not None else 0,
                    missing=tuple(missing),
                    note="" if path is None else str(path),
                )
            )
        return out

    def availability(self, root: Path) -> Availability:
        inv = self.inventory(root)
        marked = sum(self.marking_path(root, st.name).is_file() for st in inv)
        return inventory_availability(self.name, inv, self.folder(root), f"grader-1 markings {marked}/{len(inv)}")

    # -- loading
    def load(self, root: Path) -> Dataset:
        def one(name):
            path = self._on_disk(root, name)
            if path is None:
                return None
            _, is_test = _split(name)
            source = open_source(path, expect_regions=not is_test)
            return load_recording(name, source, self.marking_path(root, name))

        recs = load_on_disk(
            self.name,
            self.recordings,
            one,
            folder=self.folder(root),
            what="Neurofinder recording",
            hint=f"run `{fetch_command(self.name, [])}` or put the published zips there",
        )
        return Dataset(self.name, recs, self.description, default_grader="grader1")
