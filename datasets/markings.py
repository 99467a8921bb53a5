"""The STNeuroNet authors' marking files: their checksums at a pinned commit and how to read each one.

- :data:`MARKINGS`, the size and SHA-256 of every file of ``Markings/`` in
  their repository at :data:`datasets.remote.STNEURONET_COMMIT`;
- :func:`marking_file`, the :class:`~datasets.remote.RemoteFile` of one;
- :func:`load_marking`, which reads one with the data set's orientation rule
  (MATLAB v7.3 files in slabs, never whole).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.errors import InputError
from datasets.maskio import is_mat73
from datasets.masks import Masks
from datasets.remote import RemoteFile, base_url

__all__ = ["MARKINGS", "MARKING_AXES", "marking_file", "load_marking"]


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
