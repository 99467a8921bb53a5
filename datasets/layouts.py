"""Shared helpers of the real-data layer: remote files, marking files, movie opening.

What lives here is used by more than one real data set (``neurofinder``,
``abo``, user recordings) and by :mod:`datasets.fetch`:

- :class:`RemoteFile`, one file a data set can download, and the base URLs
  (overridable by argument or environment variable, so tests and mirrors can
  point them elsewhere);
- the table of the STNeuroNet authors' marking files, with the size and
  SHA-256 of every file of their repository at the pinned commit, and the
  rules for orienting each one;
- :func:`open_movie`, which opens any supported movie lazily and checks
  floating-point frames for NaN/Inf as they are read;
- NWB readers that need only h5py (pynwb is optional);
- :class:`RecordingStatus` for data set listings.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.maskio import is_mat73
from datasets.masks import Masks
from datasets.movies import ArrayMovie, HDF5Movie, Movie, NpyMovie, TiffMovie
from datasets.registry import Availability

__all__ = [
    "RemoteFile",
    "RecordingStatus",
    "STNEURONET_COMMIT",
    "MARKINGS",
    "base_url",
    "marking_file",
    "is_mat73",
    "load_marking",
    "open_movie",
    "nwb_series",
    "read_nwb_masks",
    "NWB_GROUND_TRUTH_PREFIX",
    "folder_bytes",
    "format_bytes",
    "fetch_command",
]

log = logging.getLogger(__name__)

#: The commit of soltanianzadeh/STNeuroNet whose ``Markings`` folder the checksums below describe.
#: URLs name the commit, not a branch, so a later push can never change what a checksum refers to.
STNEURONET_COMMIT = "6537096d8b2c05858320703418e2a3e2897be928"

#: Default base URL of each public source; override with ``base_urls={key: url}`` or ``$BENCH_URL_<KEY>``.
BASE_URLS = {
    # The Neurofinder challenge's public S3 bucket (training and test zips side by side).
    "neurofinder": "https://s3.amazonaws.com/neuro.datasets/challenges/neurofinder",
    # Allen Brain Observatory motion-corrected movies (/data, (T, 512, 512) uint16), the files
    # prepareAllen.m reads; each is ~50-60 GB.
    "abo": "https://allen-brain-observatory.s3.amazonaws.com/visual-coding-2p/ophys_movies",
    # Raw files of the STNeuroNet repository at the pinned commit.
    "stneuronet": f"https://raw.githubusercontent.com/soltanianzadeh/STNeuroNet/{STNEURONET_COMMIT}",
}


def base_url(key: str, base_urls: dict[str, str] | None = None) -> str:
    """The base URL of a source: ``base_urls[key]``, else ``$BENCH_URL_<KEY>``, else the public default."""
    if base_urls and key in base_urls:
        return base_urls[key].rstrip("/")
    env = os.environ.get(f"BENCH_URL_{key.upper()}")
    if env:
        return env.rstrip("/")
    return BASE_URLS[key]


@dataclass(frozen=True)
class RemoteFile:
    """One file a data set can download.

    Attributes
    ----------
    url : str
        Where to get it.
    dest : str
        Path relative to the data root (POSIX separators).
    recording : str
        The recording it belongs to (what ``fetch --only`` selects).
    size : int or None
        Expected size in bytes, when known in advance.
    sha256 : str or None
        Expected SHA-256, when known in advance (otherwise the first
        successful download's checksum is recorded and verified later).
    optional : bool
        A file that the public source may not serve (listed in a repository
        tree but not published): a 404 is reported, not an error.
    alternatives : tuple of str
        Paths relative to the data root whose presence makes the download
        unnecessary (e.g. the extracted folder of a zip).
    """

    url: str
    dest: str
    recording: str
    size: int | None = None
    sha256: str | None = None
    optional: bool = False
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordingStatus:
    """Whether one recording's files are on disk (for ``datasets`` listings)."""

    name: str
    on_disk: bool
    bytes_on_disk: int = 0
    missing: tuple[str, ...] = ()
    note: str = ""


def fetch_command(dataset: str, ids) -> str:
    """The exact command that downloads the given recordings."""
    ids = list(ids)
    return f"python -m bench fetch {dataset}" + (f" --only {' '.join(ids)}" if ids else "")


def folder_bytes(path: Path) -> int:
    """Total size of a file or of the files under a folder (0 when absent)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def format_bytes(n: float) -> str:
    """Human-readable size (1.5 GB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# ---------------------------------------------------------------------------- STNeuroNet markings
#: Every file of ``Markings/`` in soltanianzadeh/STNeuroNet at :data:`STNEURONET_COMMIT`, path below
#: ``Markings/`` -> (size in bytes, SHA-256). ``None``: listed in the repository tree, but the file
#: could not be retrieved from the public snapshot when this table was made (all Layer175 FinalGT
#: files and Layer275 FinalGT 539670003); fetch still tries them and reports a failure as missing.
# One line per file: path below Markings/ ("{FP}" abbreviates "FinalMasks_FPremoved_" to keep lines
# short), size in bytes and SHA-256, or "-" for a file listed in the tree but not retrievable.
_MARKINGS_TABLE = """
ABO/Layer175/Allen/Masks_501271265.mat 192910 77a54532ac9cad6e48d15f2b498f93aec51e64fb484e8c7e129231a6cd3c73f9
ABO/Layer175/Allen/Masks_501704220.mat 126854 84b18fd3a09b647e1e301119bb6085053fe748f6658ca48bb85831a88e45b61d
ABO/Layer175/Allen/Masks_501836392.mat 160287 8716df7ef9f1240c515790f2100c82aec3a810f5ac0eee7e572e23508514b001
ABO/Layer175/Allen/Masks_502115959.mat 183683 b0581d45a8a7370e4a19b68a8bcf87e3ed2d9771923851d6adcf1e81ec0e0658
ABO/Layer175/Allen/Masks_502205092.mat 262834 6ff181e7ff5113a0fdce7e6edbaa48363e1193d733a123568c10c2ca899320e7
ABO/Layer175/Allen/Masks_504637623.mat 177361 4f59cc439764eebc7a9f1bdc40784732da8b326249fe347b026e0cfbdc3af590
ABO/Layer175/Allen/Masks_510514474.mat 202733 251445218bb03dfce0c93b1f6f301fe7f4196b57318f3907f93aa23681712a12
ABO/Layer175/Allen/Masks_510517131.mat 238270 314b677ad815567678008866ec8781ca4a241577ac9082eda32374feef80ea9c
ABO/Layer175/Allen/Masks_540684467.mat 260969 b640517dd136bfaa5a912db357e02f9d5414af8e4b2f9351467b2c533c52ffad
ABO/Layer175/Allen/Masks_545446482.mat 153435 d91cca2def159fde2c78d7af410346ff6a3150fbace40bfa608e52df2001cdd7
ABO/Layer175/FinalGT/FinalMasks_FPremoved_501271265.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_501704220.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_501836392.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_502115959.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_502205092.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_504637623.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_510514474.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_510517131.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_540684467.mat -
ABO/Layer175/FinalGT/FinalMasks_FPremoved_545446482.mat -
ABO/Layer275/Allen/Masks_501484643.mat 165560 e2ec71c18cb0113cec9070375e636d57541d37a5410d57d38b3fd9d4a33d2a38
ABO/Layer275/Allen/Masks_501574836.mat 215473 a146ba352b2f175c14ec3ba2d3f84a1b4473650772ec072caa844b21a8d839d6
ABO/Layer275/Allen/Masks_501729039.mat 203867 276a7b570523a5ff96962b2720c734a04d3e6fe7dc9e46bfbbb0fe08bbadc17c
ABO/Layer275/Allen/Masks_502608215.mat 285174 1ae1a79e03b3919401678e81fbef326f78a3644c5a958d94929ae3df667015a2
ABO/Layer275/Allen/Masks_503109347.mat 315356 2e3a552c8665741df478f8e11ac226cafd91d9e5255fdf1dc2744e199e550a7a
ABO/Layer275/Allen/Masks_510214538.mat 253689 3f584c1addd07c614fb0f0b66df1e55dc925693d05d3036590abeb4b5c052f11
ABO/Layer275/Allen/Masks_524691284.mat 236227 9f5238cccf6425bb6c367328a1c244ca57d9368861fefb3d154521e207d50ad2
ABO/Layer275/Allen/Masks_527048992.mat 188551 2945c6f74d9d8524036bc4429809d5fc009d8ab8a74d833b0fdf61f7798c6a7e
ABO/Layer275/Allen/Masks_531006860.mat 205910 30e8bee04afdb1b2c671f2c8ba29048c3b712ae5266a7cb9838a87e36ec24b5d
ABO/Layer275/Allen/Masks_539670003.mat 338356 4a641ff6ace096c45e535794b6ddca87856f280dac794f3b04cc9e5cf87e38b2
ABO/Layer275/FinalGT/{FP}501484643.mat 3070265 d3da7f04150841aa08c81c07e2ac88925dad4759ba712e37403300e2048e0a75
ABO/Layer275/FinalGT/{FP}501574836.mat 3158446 a1083977a116b8c835c39a15014c47c587066ec519117dcf382e9ac26a2ade88
ABO/Layer275/FinalGT/{FP}501729039.mat 2690448 8d77cfea01f13a16b1efa84b99f1746eed9a7d09ccfc0cd098184f4b97be6806
ABO/Layer275/FinalGT/{FP}502608215.mat 3672109 93a5eaac0893ac011ec55f1e7e0d638dff44ab852098c82e9402e9dea5a3e6bb
ABO/Layer275/FinalGT/{FP}503109347.mat 3747133 12dcd76a107822e93cc0233d37290218487b33a2fe999e4fbfbdadf548a934be
ABO/Layer275/FinalGT/{FP}510214538.mat 3461271 5422f6393a5b3cdafd388249dfb9ec4afd3ae07f76292db2ab87fedb7f4f29ad
ABO/Layer275/FinalGT/{FP}524691284.mat 4042421 789e16742fc6a0f8b4796d5f26f66bce8834fa041f32950324ccae7284197cad
ABO/Layer275/FinalGT/{FP}527048992.mat 2882809 dab891fb661ad778cb3249926a49d36cac27957d9903de6c595a13dcf9d4164e
ABO/Layer275/FinalGT/{FP}531006860.mat 3182517 e01eea89d6d042404120f00738e0b15c6be68c6397acf5b80f6754c54ad8c948
ABO/Layer275/FinalGT/{FP}539670003.mat -
ABO/Layer275/Grader3/FinalMasks_501484643.mat 223495 3694f6283aca1c264a662513671562e85a1b0d7fea74022e7d403fde19a0e1e3
ABO/Layer275/Grader3/FinalMasks_501574836.mat 248201 cf800e91a31cee10d1f676c3fac9e411c082d75bb1bbbf917079b92e25216947
ABO/Layer275/Grader3/FinalMasks_501729039.mat 193084 5859061ccc936e68997f64b2318af9c78a300b423f987a99525953de6f861603
ABO/Layer275/Grader3/FinalMasks_502608215.mat 3109593 a06a95af93e64e63d9de2243778077d331ec2be384f9da64eef662f889b29432
ABO/Layer275/Grader3/FinalMasks_503109347.mat 284211 a7c1fa8bc03bdfdb9a0434c93211ebe02a500e429ad381a0ad06c37d9f1da7a1
ABO/Layer275/Grader3/FinalMasks_510214538.mat 247737 5fa80e876213d971fcbbb2229ed30fc2fb7c1d3bc8794904aeae42a315dc7e81
ABO/Layer275/Grader3/FinalMasks_524691284.mat 276993 cb65e7ba025dccd55e04fd90ff213e819591d30931a4d46d8c3538c782f890de
ABO/Layer275/Grader3/FinalMasks_527048992.mat 246790 2b76899dd661397b4aee72a7ca22df8f4c57c47eb8c73f6135194a80ecf60c0a
ABO/Layer275/Grader3/FinalMasks_531006860.mat 217189 fa1c55c46acd25aa4b894ed3657e451132a657287b0722705e3d7ef8c2dad728
ABO/Layer275/Grader3/FinalMasks_539670003.mat 294848 648eb2fe171a2ddda1e548d4a28f547d14acecb7ae0a80400d4d142f55355192
ABO/Layer275/Grader4/FinalMasks_501484643.mat 193029 c95d9e2875717f5d10dd09a80e5ecad60ab16d0ac37b087822f846780da15eb4
ABO/Layer275/Grader4/FinalMasks_501574836.mat 219643 0d2ba6e0b58d7dee2a950b9a3dff80a8b4d3455ab5374cd288cf4cb0d5cb1777
ABO/Layer275/Grader4/FinalMasks_501729039.mat 197447 4f14e45466fb21b7aff3d6515fbe78524767bc7e70a3c12d6ce7503f24979f5e
ABO/Layer275/Grader4/FinalMasks_502608215.mat 260163 e078c278c189dd502f6d36e9900b8b890cda375b61a87cfe640d1e70263c9f0b
ABO/Layer275/Grader4/FinalMasks_503109347.mat 263597 4d74419f2289516c149e3c587ebc7e16536c53218bb5593d37e6fc0d8b1038c2
ABO/Layer275/Grader4/FinalMasks_510214538.mat 246535 a2e2bf315a1613c1bde54bfd9c10deff27525ba013e0724fc1a2ec32507125d5
ABO/Layer275/Grader4/FinalMasks_524691284.mat 260565 7f3999b243058302594b459747c52cf50f62139f482db1ae0ebea88678cdaa80
ABO/Layer275/Grader4/FinalMasks_527048992.mat 202532 86b10539506e4903c4bfae5301247a4216205cf73a7bd2c50462d2d7f6a7972f
ABO/Layer275/Grader4/FinalMasks_531006860.mat 225160 1690d0fd840f927aa0e8355253739348a19a65d6320b0d6e0181baac4cbdf10c
ABO/Layer275/Grader4/FinalMasks_539670003.mat 356333 844b0748ce8914f2f75e2e087aad7eae005f323ebffd71fb9170842a1b30fdf6
Neurofinder/test/Grader1/FinalMasks_100.mat 174064 ade2b28fb62fac952aff3f325ca0d8fe65120eb767951a829d72b55bac7329b2
Neurofinder/test/Grader1/FinalMasks_101.mat 116045 c27c745f9a5b129d47ff190ffc3cd9ad597de1ef3f2d2ed050de8591fdf0de7b
Neurofinder/test/Grader1/FinalMasks_200.mat 178451 650f77e55c0b1c16909e03339288845804042f6834ded5573827a8183ee25f5c
Neurofinder/test/Grader1/FinalMasks_201.mat 138787 4bf23bd5dac855749e6164c9076ffcc5b36af4a866da5cc449ce1eead7a4615e
Neurofinder/test/Grader1/FinalMasks_400.mat 110831 296f2bac2b86ae47579a9ed251fa3ff996a525c447bc1234b438ad58b967f9d0
Neurofinder/test/Grader1/FinalMasks_401.mat 247919 a619eaf809673292e5405d933ce2886f80a99ad17f0b89191e0d1a8a8e01b431
Neurofinder/train/Grader1/FinalMasks_100.mat 4123090 b07a09bb91b4643347e49d9b75d66d254e75e79fcbebcdbcd27a9c02fd51f1ff
Neurofinder/train/Grader1/FinalMasks_101.mat 4169305 40354ad71c929f5c1c9d4666f896b2b259e46cbaac6f43fdcd4dc8f46b12e6cb
Neurofinder/train/Grader1/FinalMasks_200.mat 2959145 97c0d739323764e12e829783e97bb20205e2b5c66b20b335b2fc31f2d19ad6e1
Neurofinder/train/Grader1/FinalMasks_201.mat 2725810 ba42fdc9b812fdf7b357bd9cfc5a50fd387460bfc23038bbdb0b8b5e9b2829b5
Neurofinder/train/Grader1/FinalMasks_400.mat 2729940 8c82df6de4a5bc0d0695c47398831c5a8ef31a0de3a5926db141392e1552cb8d
Neurofinder/train/Grader1/FinalMasks_401.mat 2604122 ecffec5aedcb0cb174fd5e920fcc16d4ad14d5bb3318303789c39a3bda6cbc3e
Neurofinder/train/neurofinder/FinalMasks_100.mat 329487 a88f2a69a0900a92ce80c425b5eef669869f79dd09fec40c06cc43514acb83b1
Neurofinder/train/neurofinder/FinalMasks_101.mat 332915 f3cb0b9256fc73643ae3ebf7b37a3eb719c0e1d5a9b284c3056160d7bf6c5110
Neurofinder/train/neurofinder/FinalMasks_200.mat 170896 76a3fed810679ba2bb51f8ced6ae19a6bf2e393edcff7230935ec2ee71c99ba8
Neurofinder/train/neurofinder/FinalMasks_201.mat 154252 416c46e0dc2292331df0b52ce5d44a2f659133e87d02b164ee1f6a0e5c172761
Neurofinder/train/neurofinder/FinalMasks_400.mat 174873 a6d0a6cdba2e79bacfb7dba29ee05911087c67b9b724eca88d697dab465da456
Neurofinder/train/neurofinder/FinalMasks_401.mat 193543 cfac603d78752c747ef0175bcbd6a48e686346e2b8806b66d75c29f1a485022d
"""

MARKINGS: dict[str, tuple[int, str] | None] = {
    f[0].format(FP="FinalMasks_FPremoved_"): (None if f[1] == "-" else (int(f[1]), f[2]))
    for f in (line.split() for line in _MARKINGS_TABLE.split("\n") if line)
}


def marking_file(rel: str, base_urls: dict[str, str] | None = None, *, recording: str) -> RemoteFile:
    """The :class:`RemoteFile` of one marking file (``rel`` below ``Markings/``), kept in ``stneuronet/Markings/``."""
    if rel not in MARKINGS:
        raise KeyError(rel)
    known = MARKINGS[rel]
    return RemoteFile(
        url=f"{base_url('stneuronet', base_urls)}/Markings/{rel}",
        dest=f"stneuronet/Markings/{rel}",
        recording=recording,
        size=None if known is None else known[0],
        sha256=None if known is None else known[1],
        optional=known is None,
    )


#: Axes taking each stored marking array to (N, rows, cols), by data set and MATLAB format
#: (see ../shared/fixtures/README.md: the orientation follows how MATLAB read the movie).
MARKING_AXES = {
    # MATLAB read the HDF5 movie (reversing its axes): v5 arrays are (cols, rows, N), and
    # h5py's view of a v7.3 array reverses MATLAB's order again, i.e. (N, rows, cols).
    "abo": {"v5": (2, 1, 0), "v7.3": (0, 1, 2)},
    # MATLAB read the TIFF frames as (rows, cols) like tifffile: v5 arrays are (rows, cols, N),
    # h5py sees v7.3 arrays as (N, cols, rows).
    "neurofinder": {"v5": (2, 0, 1), "v7.3": (0, 2, 1)},
}


def load_marking(path: Path, dataset: str, frame: tuple[int, int]) -> Masks:
    """Read one of the STNeuroNet authors' ``FinalMasks`` files with the data set's orientation rule.

    Parameters
    ----------
    path : Path
        The ``.mat`` file (v5 or v7.3).
    dataset : {"abo", "neurofinder"}
        Which rule of :data:`MARKING_AXES` applies.
    frame : (int, int)
        The (cropped) movie frame the masks must index.

    Raises
    ------
    InputError
        When the file is missing, unreadable or does not fit ``frame``.
    """
    from datasets.maskio import load_masks

    path = Path(path)
    if not path.is_file():
        raise InputError("marking file not found", path=path, hint="run `python -m bench fetch` for this data set")
    fmt = "v7.3" if is_mat73(path) else "v5"
    axes = MARKING_AXES[dataset][fmt]
    if fmt == "v7.3":
        return _load_mat73_blocks(path, axes, tuple(frame))
    loaded = load_masks(path, var="FinalMasks", axes=axes, frame=frame)
    return loaded.masks


def _load_mat73_blocks(path: Path, axes: tuple[int, ...], frame: tuple[int, int]) -> Masks:
    """Read a v7.3 ``FinalMasks`` (float64, mask axis first) one slab of the first in-plane axis at a time.

    A 355-mask 487x487 file is 670 MB as a dense float64 array. MATLAB chunks these
    files as (N, 30, 1), so slabs along the first in-plane axis decompress each chunk
    once while holding ~30 MB.
    """
    import h5py
    import scipy.sparse as sp

    if axes[0] != 0:  # pragma: no cover - every v7.3 rule keeps the mask axis first
        raise ValueError(axes)
    swap = tuple(axes[1:]) == (2, 1)
    try:
        with h5py.File(path, "r") as f:
            if "FinalMasks" not in f:
                raise InputError("no variable 'FinalMasks'", path=path, hint=f"variables: {', '.join(f.keys())}")
            ds = f["FinalMasks"]
            if ds.ndim != 3:
                raise InputError(f"FinalMasks has shape {ds.shape}, expected 3-D", path=path)
            n, a, b = (int(x) for x in ds.shape)
            plane = (b, a) if swap else (a, b)
            if plane != frame:
                raise InputError(
                    f"masks stored as {ds.shape} do not fit the {frame[0]}x{frame[1]} frame",
                    path=path,
                    hint="check that the masks belong to this recording and its crop",
                )
            step = ds.chunks[1] if ds.chunks else 32
            ids, flat = [], []
            for start in range(0, a, step):
                slab = np.asarray(ds[:, start : start + step, :])
                if slab.dtype.kind in "fc" and not np.isfinite(slab).all():
                    raise InputError("mask array holds NaN or Inf values", path=path)
                if not ((slab == 0) | (slab == 1)).all():
                    raise InputError("mask values must be 0 or 1", path=path)
                k, i, j = np.nonzero(slab)
                i = i + start
                ids.append(k)
                # Stored (N, a, b): a pixel is (a, b) = (row, col), or (col, row) when swapped.
                flat.append(j * frame[1] + i if swap else i * frame[1] + j)
    except OSError as exc:
        raise InputError(f"unreadable or truncated MATLAB v7.3 file ({exc})", path=path) from exc
    k = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    idx = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(k.size, bool), (k, idx)), shape=(n, frame[0] * frame[1]))
    return Masks(matrix, frame)


# ---------------------------------------------------------------------------- movies
class _FiniteFrames:
    """Mixin: a floating-point block holding NaN or Inf is an error naming the file and frame.

    Checked as frames are read (never at open, which must not read frames);
    integer movies (all published data) skip the test.
    """

    def _read_raw(self, start, stop):
        block = super()._read_raw(start, stop)
        if block.dtype.kind in "fc" and block.size:
            finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                where = getattr(self, "path", None) or (getattr(self, "paths", None) or [None])[0]
                raise InputError(
                    f"frame {bad} holds NaN or Inf values",
                    path=where,
                    hint="replace non-finite pixels (e.g. np.nan_to_num) or drop those frames before registering",
                )
        return block


class CheckedHDF5Movie(_FiniteFrames, HDF5Movie):
    """:class:`HDF5Movie` whose float frames are checked for NaN/Inf as they are read."""


class CheckedNpyMovie(_FiniteFrames, NpyMovie):
    """:class:`NpyMovie` whose float frames are checked for NaN/Inf as they are read."""


class CheckedTiffMovie(_FiniteFrames, TiffMovie):
    """:class:`TiffMovie` whose float frames are checked for NaN/Inf as they are read."""


class CheckedArrayMovie(_FiniteFrames, ArrayMovie):
    """:class:`ArrayMovie` whose float frames are checked for NaN/Inf as they are read."""


_TIFF = (".tif", ".tiff")


def _natural_key(p: Path):
    # image00010.tiff after image00009.tiff even without zero padding.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def tiff_frames(folder: Path) -> list[Path]:
    """The TIFF frames of a folder in time (natural name) order, checked to share one frame size.

    Raises
    ------
    InputError
        When the folder holds no TIFF file, or frames differ in size.
    """
    folder = Path(folder)
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in _TIFF and p.is_file()), key=_natural_key)
    if not files:
        raise InputError("no TIFF frames (*.tif, *.tiff) in the folder", path=folder)
    # Uncompressed frames of one size have one file size; only when sizes differ are headers
    # opened, so opening a 3,000-frame folder stays a matter of stat() calls.
    sizes = {p.stat().st_size for p in files}
    if len(sizes) > 1:
        _check_tiff_shapes(files)
    return files


def _check_tiff_shapes(files: list[Path]) -> None:
    import tifffile

    first = None
    for p in files:
        try:
            with tifffile.TiffFile(p) as tf:
                shape = tuple(tf.pages[0].shape)
        except (tifffile.TiffFileError, OSError) as exc:
            raise InputError(f"not a readable TIFF file ({exc})", path=p) from exc
        if first is None:
            first = (p, shape)
        elif shape != first[1]:
            raise InputError(
                f"frame is {'x'.join(map(str, shape))}, the first frame {first[0].name} is "
                f"{'x'.join(map(str, first[1]))}",
                path=p,
                hint="all frames of a movie must have one size; remove or re-export the odd frames",
            )


def _check_single_series(path: Path) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            shapes = [tuple(s.shape) for s in tf.series]
    except (tifffile.TiffFileError, OSError) as exc:
        raise InputError(f"not a readable TIFF file ({exc})", path=path) from exc
    if len(shapes) > 1:
        raise InputError(
            f"the TIFF holds pages of different sizes ({', '.join('x'.join(map(str, s)) for s in shapes[:4])})",
            path=path,
            hint="all frames of a movie must have one size",
        )


def open_movie(path: str | Path, key: str | None = None, **crop) -> Movie:
    """Open a movie lazily from any supported layout.

    Parameters
    ----------
    path : str or Path
        A multi-page TIFF, a folder of single-frame TIFFs, an HDF5 file
        (``key`` names the (T, H, W) dataset; default ``data`` or the only
        3-D dataset), an NWB file (``key`` names the TwoPhotonSeries; default
        the only one) or a ``.npy`` file (memory-mapped).
    key : str, optional
        Dataset (HDF5) or series (NWB) name.
    **crop
        ``rows``, ``cols``, ``frames`` slices passed to the movie.

    Returns
    -------
    Movie
        Opened, not read: only metadata is touched.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("movie not found", path=path)
    if path.is_dir():
        return CheckedTiffMovie(tiff_frames(path), **crop)
    suffix = path.suffix.lower()
    if suffix in _TIFF:
        _check_single_series(path)
        return CheckedTiffMovie(path, **crop)
    if suffix == ".npy":
        return CheckedNpyMovie(path, **crop)
    if suffix == ".nwb":
        series, _ = nwb_series(path, key)
        return CheckedHDF5Movie(path, f"{series}/data", **crop)
    if suffix in (".h5", ".hdf5", ".hdf"):
        return CheckedHDF5Movie(path, key or _default_h5_key(path), **crop)
    raise InputError(
        f"unknown movie file type '{suffix or path.name}'",
        path=path,
        hint="use a multi-page TIFF, a folder of TIFF frames, HDF5/NWB (with --key) or .npy",
    )


def _default_h5_key(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" in f and isinstance(f["data"], h5py.Dataset):
                return "data"
            found: list[str] = []
            f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", path=path) from exc
    if len(found) == 1:
        return found[0]
    raise InputError(
        "cannot tell which dataset holds the movie" if found else "no 3-D dataset that could hold a (T, H, W) movie",
        path=path,
        hint=f"pass --key NAME; 3-D datasets: {', '.join(found) or 'none'}",
    )


# ---------------------------------------------------------------------------- NWB (h5py only)
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


def read_json(path: Path) -> dict:
    """A JSON object from a file; a clear error for a damaged file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


def write_json_atomic(path: Path, data) -> Path:
    """Write JSON through a temporary file and an atomic rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def load_on_disk(dataset: str, ids, load_one, *, folder: Path, what: str, hint: str) -> list:
    """Recordings of ``ids`` whose files are on disk; the others are named in a warning.

    Parameters
    ----------
    dataset : str
        Data set name (for messages and the fetch command).
    ids : iterable of str
        Recording ids in order.
    load_one : callable
        ``load_one(id)`` returns a Recording, or None when its files are not on disk.
    folder, what, hint : Path, str, str
        For the error when nothing is on disk: the data set folder, what is
        missing ("ABO movie") and how to get it.

    Raises
    ------
    InputError
        If no recording is on disk.
    """
    recs, missing = [], []
    for rid in ids:
        rec = load_one(rid)
        if rec is None:
            missing.append(rid)
        else:
            recs.append(rec)
    if not recs:
        raise InputError(f"no {what} on disk", path=folder, hint=hint)
    if missing:
        log.warning(
            "%s: %d recording(s) not on disk (%s); get them with `%s`",
            dataset,
            len(missing),
            ", ".join(missing),
            fetch_command(dataset, missing),
        )
    return recs


def inventory_availability(dataset: str, inventory: list, folder: Path, detail: str) -> Availability:
    """Availability of a data set from its per-recording inventory.

    ``detail`` is appended to the on-disk count (e.g. what the markings are).
    """
    on = [st for st in inventory if st.on_disk]
    need = [st.name for st in inventory if st.missing]
    size = sum(st.bytes_on_disk for st in on)
    reason = f"{len(on)}/{len(inventory)} recordings on disk ({format_bytes(size)}) under {folder}; {detail}"
    if on:
        reason += f"; on disk: {', '.join(st.name for st in on)}"
    return Availability(
        available=bool(on),
        reason=reason,
        how_to_get=fetch_command(dataset, need if len(need) < len(inventory) else []) if need else "",
        recordings_on_disk=len(on),
        recordings_total=len(inventory),
    )
