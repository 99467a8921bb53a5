"""Writing segmentations as NWB files (pynwb), the movie linked, never copied.

One file per (method, recording): the microscope (``Device``), an
``OpticalChannel`` and an ``ImagingPlane`` with the frame rate, indicator and
pixel size (``grid_spacing``), the movie as a ``TwoPhotonSeries`` in external
mode (a path relative to the NWB file, as NWB's best practices ask), and one
``PlaneSegmentation`` per set of masks in ``processing/ophys/ImageSegmentation``.
Masks are stored as ``pixel_mask`` rows ``(x, y, weight)`` with ``x`` the
frame row and ``y`` the frame column, the convention
:func:`datasets.nwb.read_nwb_masks` reads. Ground truths are
``PlaneSegmentation`` objects named ``ground_truth_<grader>``; the reader
skips them when it is asked for "the" segmentation of a file.

pynwb is an optional dependency (``pip install '.[nwb]'``); it is imported
only when a file is written.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.nwb import NWB_GROUND_TRUTH_PREFIX
from datasets.records import Recording

__all__ = ["NWBSegmentation", "NWB_GROUND_TRUTH_PREFIX", "write_nwb", "write_masks_nwb", "nwb_name"]

log = logging.getLogger(__name__)

#: Peak emission (nm) of the GCaMP family; other indicators are written as unknown (NaN).
_GCAMP_EMISSION_NM = 510.0
#: Two-photon excitation (nm) usual for GCaMP.
_GCAMP_EXCITATION_NM = 920.0


@dataclass(frozen=True)
class NWBSegmentation:
    """One set of masks to store as a ``PlaneSegmentation``.

    Attributes
    ----------
    name : str
        Object name in the file (made safe with :func:`nwb_name`).
    masks : Masks
        Binary masks over the recording's frame.
    description : str
        Free text; the exporter stores the method, its parameters and versions as JSON here.
    """

    name: str
    masks: Masks
    description: str


def nwb_name(text: str) -> str:
    """A name usable for an NWB object: no '/' or ':' (HDF5 paths), other odd characters replaced by '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "_"


def _require_pynwb():
    try:
        import pynwb
    except ModuleNotFoundError as exc:
        raise InputError(
            "writing NWB needs pynwb, which is not installed",
            hint="pip install 'stnn-bench[nwb]' (or pip install pynwb)",
        ) from exc
    return pynwb


def _external_movie(recording: Recording, nwb_path: Path) -> tuple[list[str], list[int], str] | None:
    """(relative file paths, starting frames, note) of the recording's movie, or None when it has no file."""
    if recording.movie is None:
        return None
    try:
        spec = recording.movie.to_spec()
    except InputError:
        return None  # a movie held in memory only: nothing to link
    if "paths" in spec:
        files = [Path(p) for p in spec["paths"]]
        starts = list(range(len(files))) if len(files) > 1 else [0]  # a folder of TIFF frames: one frame per file
    else:
        files, starts = [Path(spec["path"])], [0]
    rel = [os.path.relpath(Path(f).resolve(), nwb_path.resolve().parent) for f in files]
    note = f"external {spec.get('kind', 'movie')} file"
    if spec.get("key"):
        note += f", dataset '{spec['key']}'"
    crop = {k: spec[k] for k in ("rows", "cols", "frames") if k in spec}
    if crop:
        note += f"; the recording uses the crop (start, stop) {json.dumps(crop)} of the stored frames"
    return rel, starts, note


def write_nwb(
    path: str | Path,
    recording: Recording,
    segmentations: Sequence[NWBSegmentation],
    *,
    session_description: str,
    overwrite: bool = False,
) -> Path:
    """Write masks of one recording as an NWB file.

    Parameters
    ----------
    path : str or Path
        The ``.nwb`` file to write.
    recording : Recording
        Supplies the frame rate, pixel size, indicator, frame shape and the movie to link.
    segmentations : sequence of NWBSegmentation
        Each becomes a ``PlaneSegmentation`` (pixel masks of weight 1).
    session_description : str
        What the file holds, in one sentence.
    overwrite : bool
        Replace an existing file; otherwise an existing file is an error.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InputError
        If the file exists (and ``overwrite`` is false), a mask frame differs
        from the recording's, two segmentations share a name, or pynwb is missing.
    """
    pynwb = _require_pynwb()
    from pynwb.file import Subject
    from pynwb.ophys import ImageSegmentation, OpticalChannel, TwoPhotonSeries

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("exists already", path=path, hint="pass --overwrite to replace it")
    frame = tuple(recording.frame_shape)
    names = [nwb_name(s.name) for s in segmentations]
    if len(set(names)) != len(names):
        raise InputError(f"two segmentations would share an NWB name: {names}", path=path)
    for s in segmentations:
        if s.masks.shape != frame:
            raise InputError(f"masks '{s.name}' are {s.masks.shape}, the recording frame is {frame}", path=path)

    # NWB has no empty PlaneSegmentation (a table needs a mask column with rows): a set without masks is
    # named in the file's notes instead.
    empty = [n for n, s in zip(names, segmentations) if s.masks.n == 0]
    nwbfile = pynwb.NWBFile(
        session_description=session_description,
        notes=f"segmentations without any mask, not stored: {', '.join(empty)}" if empty else None,
        identifier=str(uuid.uuid4()),
        session_start_time=datetime.now(timezone.utc).replace(microsecond=0),
        experiment_description=f"two-photon calcium imaging, recording {recording.name}",
        keywords=["two-photon calcium imaging", "active neuron segmentation"],
        source_script="stnn-bench (bench export / stnn segment)",
        source_script_file_name="bench/export.py",
    )
    # NWB Inspector counts a missing subject, age or sex as critical. The suite knows neither: sex "U"
    # (unknown, as NWB spells it) and the open age range "P0D/" (NWB's form for an unknown upper bound).
    nwbfile.subject = Subject(
        subject_id=nwb_name(recording.name), description=_subject_text(recording), sex="U", age="P0D/"
    )
    device = nwbfile.create_device(name="microscope", description="two-photon microscope of the recording")
    gcamp = (recording.indicator or "").lower().startswith("gcamp")
    channel = OpticalChannel(
        name="OpticalChannel",
        description="green fluorescence channel",
        emission_lambda=_GCAMP_EMISSION_NM if gcamp else float("nan"),
    )
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        description=f"imaging plane of recording {recording.name}, {frame[0]} x {frame[1]} px",
        device=device,
        excitation_lambda=_GCAMP_EXCITATION_NM if gcamp else float("nan"),
        imaging_rate=float(recording.fps),
        indicator=recording.indicator or "unknown",
        location="unknown",
        grid_spacing=[float(recording.um_per_px), float(recording.um_per_px)],
        grid_spacing_unit="micrometers",
    )
    series = None
    linked = _external_movie(recording, path)
    if linked is not None:
        files, starts, note = linked
        # pynwb >= 3 wants the frame count of an external series; older versions lack the argument.
        args = [a["name"] for a in TwoPhotonSeries.__init__.__docval__["args"]]
        count = {"num_samples": recording.n_frames} if "num_samples" in args else {}
        series = TwoPhotonSeries(
            name="TwoPhotonSeries",
            description=f"the movie of recording {recording.name} ({note}); not copied into this file",
            imaging_plane=plane,
            external_file=files,
            format="external",
            starting_frame=starts,
            dimension=[frame[0], frame[1]],
            rate=float(recording.fps),
            unit="n.a.",
            **count,
        )
        nwbfile.add_acquisition(series)
    ophys = nwbfile.create_processing_module(name="ophys", description="segmentations of the recording's neurons")
    image_seg = ImageSegmentation(name="ImageSegmentation")
    ophys.add(image_seg)
    for name, s in zip(names, segmentations):
        if s.masks.n == 0:
            log.warning("%s: '%s' has no mask; named in the file's notes, no PlaneSegmentation written", path, name)
            continue
        ps = image_seg.create_plane_segmentation(
            name=name,
            description=s.description,
            imaging_plane=plane,
            reference_images=series if series is not None else (),
        )
        _add_pixel_masks(ps, s.masks)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.nwb")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pynwb.NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwbfile)
    os.replace(tmp, path)  # a killed export never leaves half a file under the real name
    log.info("wrote %s (%s)", path, ", ".join(f"{n}: {s.masks.n} masks" for n, s in zip(names, segmentations)))
    return path


def _subject_text(recording: Recording) -> str:
    gen = recording.provenance.get("generator")
    if gen:
        return f"simulated by {gen} (seed {recording.provenance.get('seed')}); no animal"
    return f"the animal of recording {recording.name}; see the data set's provenance"


def _add_pixel_masks(ps, masks: Masks) -> None:
    """One row per mask, of weight 1."""
    for i in range(masks.n):
        rows, cols = masks.coordinates(i)
        ps.add_roi(pixel_mask=[(int(r), int(c), 1.0) for r, c in zip(rows, cols)])


def write_masks_nwb(
    path: str | Path, masks: Masks, recording: Recording, *, method: str, description: dict, overwrite: bool = True
) -> Path:
    """One method's masks of one movie as an NWB file (``stnn segment`` writes it for an ``--out`` ending ``.nwb``).

    ``description`` (parameters, versions) is stored as JSON in the PlaneSegmentation's description.
    """
    seg = NWBSegmentation(method, masks, json.dumps(description, sort_keys=True, default=str))
    text = f"{method} segmentation of {recording.name}"
    return write_nwb(path, recording, [seg], session_description=text, overwrite=overwrite)
