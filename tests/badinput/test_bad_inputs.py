"""Bad input through the real command lines: one line naming the input, exit code 2, no traceback.

Every case of :data:`CASES` builds its files under ``tmp_path``, runs
``bench.cli.main`` or ``stnn.cli.main`` in-process and checks the exact
message fragment(s). Pickle payloads would create a marker file if they ran;
each case also checks that no marker appeared. The tests after the table
cover inputs that used to give silently wrong results and must now load
correctly (uint64 labels, integral float coordinates, all-zero masks, a real
Suite2p-shaped ``stat.npy``) and the matplotlib cache kept out of HOME.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench import cli as bench_cli
from bench.results import COLUMNS, write_table
from datasets.maskio import load_masks
from datasets.masks import Masks
from stnn import cli as stnn_cli

FRAME = (32, 32)
MARKER = "PWNED"  # the file a pickle payload would create
DATASET = "badinput-tiny"


# ---------------------------------------------------------------------------- builders
def _disks(n: int = 3) -> Masks:
    rr, cc = np.mgrid[: FRAME[0], : FRAME[1]]
    centres = [(8, 8), (8, 24), (24, 16)][:n]
    return Masks.from_dense(np.stack([(rr - r) ** 2 + (cc - c) ** 2 <= 9 for r, c in centres]))


def _gt(tmp: Path) -> Path:
    return _disks().save(tmp / "gt.npz")


def _write(tmp: Path, name: str, data: bytes | str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _npy(tmp: Path, name: str, array, allow_pickle: bool = False) -> Path:
    path = tmp / name
    np.save(path, array, allow_pickle=allow_pickle)
    return path


def _score(pred: Path, *extra: str, gt: Path | None = None) -> list[str]:
    return ["score", "--gt", str(gt or _gt(pred.parent)), "--pred", str(pred), *extra]


class _Payload:
    """An object whose unpickling calls ``fn(*args)``: what a crafted file would run."""

    def __init__(self, fn: Callable, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _object_array(*items) -> np.ndarray:
    arr = np.empty(len(items), object)
    arr[:] = list(items)
    return arr


def _payload_stat(tmp: Path, fn: Callable, *args, name: str = "stat.npy") -> Path:
    """A stat.npy shaped like Suite2p's whose first dict carries the payload."""
    roi = {"ypix": np.array([1, 2]), "xpix": np.array([1, 1]), "lam": np.ones(2, np.float32),
           "evil": _Payload(fn, *args)}
    return _npy(tmp, name, _object_array(roi), allow_pickle=True)


def _raw_pickle_npy(tmp: Path, obj, name: str = "stat.npy") -> Path:
    """A .npy with an object-dtype header whose pickle is ``obj`` itself (not an array)."""
    path = tmp / name
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        pickle.dump(obj, fh, protocol=2)
    return path


def _stat(tmp: Path, rois: list, name: str = "stat.npy") -> Path:
    return _npy(tmp, name, _object_array(*rois), allow_pickle=True)


def _bench_npz(tmp: Path, name: str = "pred.npz", **override) -> Path:
    m = _disks().matrix
    arrays = {
        "format": np.array("bench-masks-v1"),
        "shape": np.asarray(FRAME, np.int64),
        "indptr": m.indptr.astype(np.int64),
        "indices": m.indices.astype(np.int64),
    }
    arrays.update(override)
    path = tmp / name
    np.savez(path, **arrays)
    return path


def _regions(tmp: Path, regions, name: str = "regions.json") -> Path:
    return _write(tmp, name, json.dumps(regions))


def _results(tmp: Path, text: str | bytes, name: str = "results.csv") -> Path:
    return _write(tmp, f"run/{name}", text)


def _valid_results(tmp: Path) -> Path:
    rows = [
        {c: "" for c in COLUMNS}
        | {"run_id": "r", "dataset": "d", "recording": f"rec{i}", "split": "test", "fold": i, "method": "m",
           "grader": "default", "n_gt": 3, "n_pred": 3, "tp": 2, "recall": 0.67, "precision": 0.67, "f1": 0.67,
           "status": "ok"}
        for i in range(2)
    ]
    (tmp / "run").mkdir(exist_ok=True)
    return write_table(rows, tmp / "run" / "results.csv")


def _half_written(tmp: Path) -> Path:
    text = _valid_results(tmp).read_text()
    return _results(tmp, text[: len(text) - 40])


def _run(tmp: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", DATASET, "--methods", "unet2ds", "--tune", "none", "--no-report", "--quiet",
            "--out", str(tmp / "out"), *extra]


def _movie(tmp: Path, name: str = "movie.npy") -> Path:
    rng = np.random.default_rng(0)
    return _npy(tmp, name, rng.normal(100, 5, (40, *FRAME)).astype(np.float32))


def _segment(movie: Path, *extra: str) -> list[str]:
    return ["segment", str(movie), "--fps", "10", "--um-per-px", "1", *extra]


def _tif(tmp: Path, name: str, array) -> Path:
    import tifffile

    tifffile.imwrite(tmp / name, array)
    return tmp / name


# ---------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    id: str
    cli: str  # "bench" or "stnn"
    build: Callable[[Path], list[str]]
    expect: tuple[str, ...]  # fragments that must all be in the one error line


def _case(id_, cli, build, *expect) -> Case:
    return Case(id_, cli, build, expect)


SYSTEM = f"'{os.system.__module__}.system'"
CASES = [
    # -- pickle payloads: refused, never run, the global named
    _case("stat-os-system", "bench", lambda t: _score(_payload_stat(t, os.system, f"touch {t / MARKER}")),
          "--pred", "stat.npy", "refused to unpickle", SYSTEM),
    _case("stat-open-creates-file", "bench", lambda t: _score(_payload_stat(t, open, str(t / MARKER), "w")),
          "--pred", "refused to unpickle", f"'{open.__module__}.open'"),
    _case("stat-eval", "bench", lambda t: _score(_payload_stat(t, builtins.eval, f"open({str(t / MARKER)!r}, 'w')")),
          "refused to unpickle", "'builtins.eval'"),
    _case("stat-raw-pickle-exec", "bench",
          lambda t: _score(_raw_pickle_npy(t, _Payload(builtins.exec, f"open({str(t / MARKER)!r}, 'w')"))),
          "--pred", "refused to unpickle", "'builtins.exec'"),
    _case("stat-getattr", "bench", lambda t: _score(_payload_stat(t, getattr, "text", "upper")),
          "refused to unpickle", "'builtins.getattr'"),
    _case("stat-subprocess", "bench", lambda t: _score(_payload_stat(t, subprocess.call, ["touch", str(t / MARKER)])),
          "refused to unpickle", "'subprocess.call'"),
    _case("stat-payload-as-gt", "bench",
          lambda t: ["score", "--gt", str(_payload_stat(t, os.system, f"touch {t / MARKER}", name="stat_gt.npy")),
                     "--pred", str(_gt(t)), "--shape", "32x32"],
          "--gt", "stat_gt.npy", "refused to unpickle", SYSTEM),
    _case("stat-harmless-class-refused-too", "bench",
          lambda t: _score(_stat(t, [OrderedDict(ypix=np.array([1]), xpix=np.array([1]))])),
          "refused to unpickle", "'collections.OrderedDict'"),
    _case("stat-damaged-pickle", "bench",
          lambda t: _score(_write(t, "stat.npy", _payload_stat(t, os.getcwd).read_bytes()[:-20])),
          "--pred", "damaged pickled data"),
    # -- Suite2p stat files that are not
    _case("stat-empty-file", "bench", lambda t: _score(_write(t, "stat.npy", b"")), "--pred", "empty file (0 bytes)"),
    _case("stat-numeric-array", "bench", lambda t: _score(_npy(t, "stat.npy", np.zeros((2, 3)))),
          "not a Suite2p stat file"),
    _case("stat-no-xpix", "bench", lambda t: _score(_stat(t, [{"ypix": np.array([1, 2])}])),
          "not a Suite2p stat file", "'xpix'"),
    _case("stat-fractional-pixels", "bench",
          lambda t: _score(_stat(t, [{"ypix": np.array([1.5, 2.0]), "xpix": np.array([1.0, 1.0])}])),
          "--pred", "whole numbers", "1.5"),
    _case("stat-outside-frame", "bench",
          lambda t: _score(_stat(t, [{"ypix": np.array([1, 40]), "xpix": np.array([1, 1])}])),
          "--pred", "outside the 32x32 frame"),
    _case("stat-string-pixels", "bench", lambda t: _score(_stat(t, [{"ypix": ["a"], "xpix": ["b"]}])),
          "must be numbers"),
    # -- .npy files
    _case("npy-empty-file", "bench", lambda t: _score(_write(t, "pred.npy", b"")), "--pred", "empty file (0 bytes)"),
    _case("npy-empty-gt", "bench", lambda t: ["score", "--gt", str(_write(t, "gt.npy", b"")), "--pred",
                                              str(_gt(t))], "--gt", "gt.npy", "empty file (0 bytes)"),
    _case("npy-truncated", "bench",
          lambda t: _score(_write(t, "pred.npy", _npy(t, "full.npy", _disks().to_dense()).read_bytes()[:-100])),
          "--pred", "truncated or damaged .npy"),
    _case("npy-not-npy", "bench", lambda t: _score(_write(t, "pred.npy", b"PK\x03\x04 this is a zip")),
          "--pred", "not a .npy file"),
    _case("npy-object-array", "bench", lambda t: _score(_npy(t, "pred.npy", _object_array({"a": 1}), True)),
          "--pred", "holds pickled Python objects"),
    _case("npy-nan", "bench", lambda t: _score(_npy(t, "pred.npy", np.where(_disks().to_dense(), np.nan, 0.0))),
          "--pred", "NaN or Inf"),
    _case("npy-inf-labels", "bench", lambda t: _score(_npy(t, "pred.npy", np.full(FRAME, np.inf))), "NaN or Inf"),
    _case("npy-non-binary", "bench", lambda t: _score(_npy(t, "pred.npy", _disks().to_dense() * 2.0)),
          "--pred", "masks must be binary"),
    _case("npy-frame-mismatch", "bench", lambda t: _score(_npy(t, "pred.npy", np.zeros((3, 20, 24), np.uint8))),
          "--pred", "fit the 32x32 frame in no orientation"),
    _case("npy-label-frame-mismatch", "bench", lambda t: _score(_npy(t, "pred.npy", np.zeros((20, 24), np.int32))),
          "--pred", "fits the 32x32 frame in no orientation"),
    _case("npy-4d", "bench", lambda t: _score(_npy(t, "pred.npy", np.zeros((1, 2, 32, 32)))), "4 dimensions"),
    _case("npy-1d", "bench", lambda t: _score(_npy(t, "pred.npy", np.zeros(5))), "1 dimensions"),
    _case("npy-strings", "bench", lambda t: _score(_npy(t, "pred.npy", np.array([["a", "b"], ["c", "d"]]))),
          "--pred", "expected numbers or booleans"),
    _case("npy-zero-masks", "bench", lambda t: _score(_npy(t, "pred.npy", np.zeros((0, 32, 32)))),
          "--pred", "empty mask array"),
    _case("npy-negative-labels", "bench", lambda t: _score(_npy(t, "pred.npy", -_disks().to_label_image())),
          "negative labels"),
    _case("npy-fractional-labels", "bench", lambda t: _score(_npy(t, "pred.npy", _disks().to_label_image() * 0.5)),
          "whole numbers"),
    _case("npy-bad-axes", "bench", lambda t: _score(_npy(t, "pred.npy", _disks().to_dense()), "--axes", "0,1,1"),
          "--pred", "not a permutation"),
    # -- bench .npz mask files and other .npz
    _case("npz-indptr-decreasing", "bench",
          lambda t: _score(_bench_npz(t, indptr=np.array([0, 30, 10, 87]))), "--pred", "indptr must rise"),
    _case("npz-indptr-short", "bench", lambda t: _score(_bench_npz(t, indptr=np.array([0, 5]))), "indptr must rise"),
    _case("npz-indices-outside", "bench",
          lambda t: _score(_bench_npz(t, indices=np.full(87, 5000, np.int64))), "pixel indices outside"),
    _case("npz-bad-shape", "bench", lambda t: _score(_bench_npz(t, shape=np.array([32, 32, 1]))),
          "--pred", "frame shape"),
    _case("npz-float-indptr", "bench", lambda t: _score(_bench_npz(t, indptr=np.array([0.0, 87.0]))),
          "1-D integer arrays"),
    _case("npz-truncated", "bench", lambda t: _score(_write(t, "pred.npz", _bench_npz(t, "f.npz").read_bytes()[:60])),
          "--pred", "not a readable .npz file"),
    _case("npz-empty-file", "bench", lambda t: _score(_write(t, "pred.npz", b"")), "--pred", "not a readable .npz"),
    _case("npz-two-candidates", "bench",
          lambda t: _score(_npz_plain(t, a=_disks().to_dense(), b=_disks().to_dense())), "several arrays"),
    _case("npz-no-such-var", "bench", lambda t: _score(_npz_plain(t, a=_disks().to_dense()), "--var", "nosuch"),
          "no array 'nosuch'"),
    _case("npz-object-member", "bench", lambda t: _score(_npz_plain(t, a=_object_array({"x": 1}))),
          "--pred", "damaged .npz file"),
    # -- Neurofinder regions.json
    _case("json-fractional", "bench", lambda t: _score(_regions(t, [{"coordinates": [[1.5, 2], [3, 4]]}])),
          "--pred", "regions.json", "whole numbers", "1.5"),
    _case("json-three-numbers", "bench", lambda t: _score(_regions(t, [{"coordinates": [[1, 2, 3], [4, 5, 6]]}])),
          "--pred", "region 0", "found points of 3 numbers"),
    _case("json-ragged", "bench", lambda t: _score(_regions(t, [{"coordinates": [[1, 2], [3]]}])),
          "region 0", "differing or nested"),
    _case("json-strings", "bench", lambda t: _score(_regions(t, [{"coordinates": [["a", "b"]]}])), "must be numbers"),
    _case("json-nan", "bench", lambda t: _score(_write(t, "regions.json", '[{"coordinates": [[NaN, 1]]}]')),
          "whole numbers"),
    _case("json-negative", "bench", lambda t: _score(_regions(t, [{"coordinates": [[-1, 2]]}])),
          "outside the 32x32 frame"),
    _case("json-not-a-list", "bench", lambda t: _score(_regions(t, {"coordinates": [[1, 2]]})),
          "not a Neurofinder regions file"),
    _case("json-invalid", "bench", lambda t: _score(_write(t, "regions.json", "[{")), "--pred",
          "not a readable JSON file"),
    _case("json-empty-file", "bench", lambda t: _score(_write(t, "regions.json", "")), "not a readable JSON file"),
    _case("json-binary", "bench", lambda t: _score(_write(t, "regions.json", b"\xff\xfe\x00garbage")),
          "not a readable JSON file"),
    _case("json-gt-without-shape", "bench",
          lambda t: ["score", "--gt", str(_regions(t, [{"coordinates": [[1, 2]]}])), "--pred", str(_gt(t))],
          "--gt", "frame size is needed"),
    # -- other files and paths
    _case("pred-missing", "bench", lambda t: _score(t / "nothere.npz"), "--pred", "nothere.npz", "file not found"),
    _case("gt-missing", "bench", lambda t: ["score", "--gt", str(t / "nogt.mat"), "--pred", str(_gt(t))],
          "--gt", "nogt.mat", "file not found"),
    _case("pred-folder", "bench", lambda t: _score(_mkdir(t / "folder.npy")), "--pred", "is a folder"),
    _case("pred-wrong-extension", "bench", lambda t: _score(_write(t, "pred.csv", "1,2\n")),
          "--pred", "unknown mask file type '.csv'"),
    _case("pred-no-extension", "bench", lambda t: _score(_write(t, "pred", b"\x00")), "unknown mask file type"),
    _case("tif-garbage", "bench", lambda t: _score(_write(t, "pred.tif", b"garbage" * 10)),
          "--pred", "unreadable TIFF file"),
    _case("tif-frame-mismatch", "bench", lambda t: _score(_tif(t, "pred.tif", np.zeros((10, 12), np.uint16))),
          "fits the 32x32 frame in no orientation"),
    _case("png-garbage", "bench", lambda t: _score(_write(t, "pred.png", b"\x89PNG garbage")), "unreadable PNG file"),
    _case("mat-garbage", "bench", lambda t: _score(_write(t, "pred.mat", b"MATLAB 5.0 garbage" * 10)),
          "--pred", "unreadable or truncated MATLAB file"),
    _case("h5-garbage", "bench", lambda t: _score(_write(t, "pred.h5", b"garbage" * 10)),
          "unreadable or truncated HDF5"),
    _case("roi-zip-garbage", "bench", lambda t: _score(_write(t, "pred.zip", b"garbage" * 10)),
          "not a readable ImageJ ROI file"),
    # -- score options
    _case("iou-negative", "bench", lambda t: _score(_gt(t), "--iou", "-0.1"), "--iou must be in (0, 1]"),
    _case("iou-above-one", "bench", lambda t: _score(_gt(t), "--iou", "1.5"), "--iou must be in (0, 1]"),
    _case("iou-nan", "bench", lambda t: _score(_gt(t), "--iou", "nan"), "--iou must be in (0, 1]"),
    _case("centroid-gate-zero", "bench", lambda t: _score(_gt(t), "--centroid-gate", "0"),
          "--centroid-gate must be > 0"),
    _case("nf-distance-negative", "bench", lambda t: _score(_gt(t), "--nf-distance", "-3"),
          "--nf-distance must be > 0"),
    _case("shape-zero", "bench", lambda t: _score(_gt(t), "--shape", "0x5"), "frame size must be positive"),
    _case("shape-garbage", "bench", lambda t: _score(_gt(t), "--shape", "big"), "expected ROWSxCOLS"),
    # -- reports
    _case("report-binary", "bench", lambda t: ["report", str(_results(t, bytes(range(256)) * 4))],
          "results.csv", "not a text CSV file"),
    _case("report-half-written", "bench", lambda t: ["report", str(_half_written(t))],
          "results.csv", "half-written"),
    _case("report-header-only", "bench", lambda t: ["report", str(_results(t, ",".join(COLUMNS) + "\n"))],
          "results.csv", "header but no rows"),
    _case("report-not-a-number", "bench",
          lambda t: ["report", str(_results(t, _valid_results(t).read_text().replace("0.67", "abc", 1)))],
          "column recall holds 'abc', not a number"),
    _case("report-other-csv", "bench", lambda t: ["report", str(_results(t, "a,b\n1,2\n"))],
          "not a results table: lacks column(s) run_id"),
    _case("report-empty-file", "bench", lambda t: ["report", str(_results(t, ""))], "lacks column(s)"),
    _case("report-folder-without-table", "bench", lambda t: ["report", str(_mkdir(t / "emptyrun"))],
          "results table not found"),
    _case("report-png-as-table", "bench", lambda t: ["report", str(_write(t, "x.png", b"\x89PNG\r\n\x1a\n\xff" * 9))],
          "not a text CSV file"),
    # -- bench run arguments (checked before any work)
    _case("run-out-is-file", "bench", lambda t: _run(t, "--out", str(_write(t, "afile", "x"))),
          "afile", "--out names a file"),
    _case("run-out-under-file", "bench", lambda t: _run(t, "--out", str(_write(t, "afile", "x") / "sub")),
          "--out: cannot create the folder"),
    _case("run-timeout-zero", "bench", lambda t: _run(t, "--timeout", "0"), "--timeout must be > 0, got 0"),
    _case("run-timeout-negative", "bench", lambda t: _run(t, "--timeout", "-5"), "--timeout must be > 0"),
    _case("run-memory-zero", "bench", lambda t: _run(t, "--memory-mb", "0"), "--memory-mb must be > 0"),
    _case("run-methods-comma", "bench", lambda t: _run(t, "--methods", ","), "--methods ','", "names no method"),
    _case("run-methods-blank", "bench", lambda t: _run(t, "--methods", " "), "names no method"),
    _case("run-methods-unknown", "bench", lambda t: _run(t, "--methods", "nosuchmethod"), "nosuchmethod"),
    _case("run-jobs-zero", "bench", lambda t: _run(t, "--jobs", "0"), "--jobs must be at least 1, got 0"),
    _case("run-jobs-negative", "bench", lambda t: _run(t, "--jobs", "-2"), "--jobs must be at least 1"),
    _case("run-max-grid-zero", "bench", lambda t: _run(t, "--max-grid", "0"), "--max-grid must be at least 1"),
    _case("run-grader-unknown", "bench", lambda t: _run(t, "--grader", "nosuch"),
          "--grader 'nosuch'", "no ground truth named nosuch", "available: default"),
    _case("run-grader-comma", "bench", lambda t: _run(t, "--grader", ","), "--grader ','", "available: default"),
    _case("run-dataset-unknown", "bench", lambda t: _run(t, "--dataset", "nosuchdata"), "nosuchdata"),
    # -- stnn segment
    _case("segment-out-under-file", "stnn",
          lambda t: _segment(_movie(t), "--out", str(_write(t, "afile", "x") / "masks.npz")),
          "--out: cannot create the folder"),
    _case("segment-out-is-folder", "stnn", lambda t: _segment(_movie(t), "--out", str(_mkdir(t / "outdir"))),
          "--out names a folder"),
    _case("segment-maps-under-file", "stnn",
          lambda t: _segment(_movie(t), "--out", str(t / "m.npz"), "--save-maps", str(_write(t, "f", "x") / "m.npy")),
          "--save-maps: cannot create the folder"),
    _case("segment-movie-missing", "stnn", lambda t: _segment(t / "nomovie.npy", "--out", str(t / "m.npz")),
          "nomovie.npy", "movie file not found"),
    _case("segment-movie-empty-file", "stnn",
          lambda t: _segment(_write(t, "movie.npy", b""), "--out", str(t / "m.npz")),
          "movie.npy", "not a readable .npy array"),
    _case("segment-movie-2d", "stnn", lambda t: _segment(_npy(t, "movie.npy", np.zeros((4, 4))), "--out",
                                                          str(t / "m.npz")), "movie.npy", "(T, H, W)"),
    _case("segment-movie-folder", "stnn", lambda t: _segment(_mkdir(t / "frames"), "--out", str(t / "m.npz")),
          "frames", "is a folder, expected a movie file"),
    _case("segment-movie-wrong-extension", "stnn",
          lambda t: _segment(_write(t, "movie.avi", b"RIFF"), "--out", str(t / "m.npz")), "unknown movie format"),
    _case("segment-movie-garbage-tif", "stnn",
          lambda t: _segment(_write(t, "movie.tif", b"garbage" * 9), "--out", str(t / "m.npz")),
          "movie.tif", "not a readable TIFF"),
    _case("segment-fps-zero", "stnn", lambda t: ["segment", str(_movie(t)), "--out", str(t / "m.npz"), "--fps", "0",
                                                 "--um-per-px", "1"], "must be > 0"),
    _case("segment-weights-unknown", "stnn",
          lambda t: _segment(_movie(t), "--out", str(t / "m.npz"), "--weights", "nosuchweights"),
          "no shipped weights 'nosuchweights'"),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _npz_plain(tmp: Path, **arrays) -> Path:
    path = tmp / "pred.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> str:
    """A one-recording user data set under the tests' data root, for the ``bench run`` cases."""
    from datasets.user import add_recording

    root = tmp_path_factory.getbasetemp() / "bench-data"
    folder = tmp_path_factory.mktemp("registered")
    rng = np.random.default_rng(1)
    movie = rng.normal(100, 5, (60, *FRAME)).astype(np.float32)
    movie[:, 5:10, 5:10] += 40 * (rng.random((60, 1, 1)) > 0.8)
    np.save(folder / "movie.npy", movie)
    _disks().save(folder / "masks.npz")
    add_recording(DATASET, folder / "movie.npy", folder / "masks.npz", fps=10.0, um_per_px=1.0, root=root)
    return DATASET


def _main(cli: str, argv: list[str]) -> int:
    main = bench_cli.main if cli == "bench" else stnn_cli.main
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects a malformed option value with exit code 2
        return exc.code


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, registered):
    argv = case.build(tmp_path)
    capsys.readouterr()  # builders print nothing, but start clean
    code = _main(case.cli, argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stdout {out!r}; stderr {err!r}"
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith(("error:", "python -m")) or ": error:" in line]
    assert len(errors) == 1, err
    for fragment in case.expect:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert not (tmp_path / MARKER).exists(), "a pickle payload ran"


def test_table_size():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------- inputs that must load correctly
def test_uint64_labels_at_and_above_2_63_are_kept(tmp_path):
    labels = np.zeros(FRAME, np.uint64)
    labels[2:5, 2:5] = 2**63
    labels[10:12, 10:12] = 2**64 - 1
    labels[20:22, 20:22] = 7
    np.save(tmp_path / "labels.npy", labels)
    _tif(tmp_path, "labels.tif", labels)
    for name in ("labels.npy", "labels.tif"):
        masks = load_masks(tmp_path / name, frame=FRAME).masks
        assert sorted(masks.areas.tolist()) == [4, 4, 9], name


def test_integral_float_coordinates_are_accepted(tmp_path):
    path = _regions(tmp_path, [{"coordinates": [[1.0, 2.0], [3.0, 4.0]]}, {"coordinates": [[5, 6]]}])
    masks = load_masks(path, frame=FRAME).masks
    assert masks.areas.tolist() == [2, 1] and masks.to_dense()[0, 3, 4]


def test_all_zero_masks_are_dropped_with_a_warning(tmp_path, caplog, capsys):
    stack = np.concatenate([_disks().to_dense(), np.zeros((2, *FRAME), bool)]).astype(np.uint8)
    pred = _npy(tmp_path, "pred.npy", stack)
    with caplog.at_level(logging.WARNING, logger="datasets.maskio"):
        code = bench_cli.main(["score", "--gt", str(_gt(tmp_path)), "--pred", str(pred), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n_pred"], result["tp"], result["f1"]) == (3, 3, 1.0)
    assert "dropped 2 empty mask(s)" in caplog.text and "pred.npy" in caplog.text


def _suite2p_roi(rng, r0: int, c0: int) -> dict:
    """A dict with the keys and types Suite2p 1.x writes into stat.npy."""
    ypix, xpix = (a.ravel().astype(np.int32) for a in np.mgrid[r0 : r0 + 4, c0 : c0 + 3])
    n = ypix.size
    return {
        "ypix": ypix, "xpix": xpix, "lam": rng.random(n).astype(np.float32), "med": [r0 + 2, c0 + 1],
        "footprint": np.float64(1.3), "mrs": np.float64(0.9), "mrs0": np.float64(1.1), "compact": 1.05,
        "solidity": 1.0, "npix": n, "npix_soma": np.int64(n), "soma_crop": np.ones(n, bool),
        "overlap": np.zeros(n, bool), "radius": np.float32(2.1), "aspect_ratio": 1.2, "npix_norm_no_crop": 0.9,
        "npix_norm": np.float32(0.95), "skew": np.float32(2.5), "std": 10.5, "neuropil_mask": np.arange(5),
        "chan2_prob": 0.0, "inmerge": 0, "iplane": 0, "name": "roi", "tags": ("a", None, True, 1 + 2j, b"x"),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_suite2p_shaped_stat_loads(tmp_path, protocol):
    rng = np.random.default_rng(0)
    stat = _object_array(_suite2p_roi(rng, 2, 3), _suite2p_roi(rng, 20, 25))
    path = tmp_path / "stat.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(stat))
        data = pickle.dumps(stat, protocol=protocol)
        if protocol == 2:  # the module names numpy 1.x writes, as in files from older Suite2p installs
            data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        fh.write(data)
    masks = load_masks(path, frame=FRAME).masks
    assert masks.areas.tolist() == [12, 12]
    assert masks.to_dense()[1, 20, 25] and masks.to_dense()[0, 5, 5]


def test_np_save_stat_scores_end_to_end(tmp_path, capsys):
    """A stat.npy written by np.save (as Suite2p does) is scored through the CLI."""
    rois = [{"ypix": r.ravel(), "xpix": c.ravel(), "lam": np.ones(r.size, np.float32)}
            for r, c in (_disks().coordinates(i) for i in range(3))]
    pred = _stat(tmp_path, rois)
    assert bench_cli.main(["score", "--gt", str(_gt(tmp_path)), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == 1.0


def test_segment_out_into_missing_folder_creates_it(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "masks.npz"
    rng = np.random.default_rng(0)
    movie = _npy(tmp_path, "movie.npy", rng.normal(100, 5, (8, *FRAME)).astype(np.float32))
    assert stnn_cli.main(_segment(movie, "--out", str(out), "--device", "cpu")) == 0
    assert out.is_file() and Masks.load(out).shape == FRAME


def test_bench_keeps_matplotlib_cache_out_of_home(tmp_path):
    """``bench report`` draws figures without writing matplotlib's cache under HOME or leaving a temp folder."""
    table = _valid_results(tmp_path)
    home, tmp = _mkdir(tmp_path / "home"), _mkdir(tmp_path / "tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, "-m", "bench", "report", str(table)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (table.parent / "report" / "scores.png").is_file()
    assert list(home.rglob("*")) == [], "something was written under HOME"
    assert list(tmp.iterdir()) == [], "the temporary matplotlib folder was left behind"


def test_finite_table_values_survive(tmp_path):
    """The stricter reader still reads what write_table writes."""
    from bench.results import read_table

    rows = read_table(_valid_results(tmp_path))
    assert len(rows) == 2 and rows[0]["fold"] == 0 and math.isclose(rows[1]["f1"], 0.67)
