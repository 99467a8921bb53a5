import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from bench.cli import build_parser, main
from datasets.maskio import write_mat
from tests.conftest import disk_masks

GT = disk_masks([(8, 8), (8, 24), (24, 8), (24, 24)], 4, (36, 34))
PRED = disk_masks([(8, 8), (8, 25), (30, 30)], 4, (36, 34))


@pytest.fixture()
def files(tmp_path):
    gt = write_mat(GT, tmp_path / "gt.mat", version="7.3")
    pred = tmp_path / "pred.npy"
    np.save(pred, PRED.to_dense())
    return gt, pred


def test_score_json_has_the_documented_fields(files, capsys):
    gt, pred = files
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("n_gt", "n_pred", "tp", "recall", "precision", "f1", "rule", "iou", "pred_axes"):
        assert key in out
    assert (out["n_gt"], out["n_pred"], out["tp"]) == (4, 3, 2)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert out["rule"] == "stnn" and out["pred_axes"] == [0, 1, 2]


def test_score_human_output(files, capsys):
    gt, pred = files
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--rule", "suns", "--iou", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "TP 2  FP 1  FN 2" in text and "rule suns" in text and "IoU >= 0.3" in text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mat", "file not found"),
        (lambda d: _write(d / "cut.mat", b"MATLAB 5.0 MAT-file" + b"\0" * 30), "unreadable or truncated"),
        (lambda d: _savemat(d / "two.mat", {"A": GT.to_dense(), "B": GT.to_dense()}), "--var"),
        (lambda d: _savemat(d / "wrong.mat", {"A": np.ones((2, 40, 40))}), "in no orientation"),
        (lambda d: _savemat(d / "empty.mat", {"A": np.zeros((36, 34, 0))}), "empty"),
        (lambda d: _savemat(d / "nb.mat", {"A": GT.to_dense() * 7}), "binary"),
    ],
)
def test_bad_input_is_one_line_exit_2(files, tmp_path, capsys, make, message):
    gt, _ = files
    bad = make(tmp_path)
    assert main(["score", "--gt", str(gt), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and bad.name in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(files, tmp_path):
    gt, _ = files
    with pytest.raises(ValueError, match="file not found"):
        main(["--debug", "score", "--gt", str(gt), "--pred", str(tmp_path / "nope.npy")])


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage"), name
    for cmd in (
        ["--help"],
        ["score", "--help"],
        ["methods", "--help"],
        ["datasets", "--help"],
        ["datasets", "describe", "--help"],
        ["datasets", "show", "--help"],
        ["run", "--help"],
    ):
        r = subprocess.run([sys.executable, "-m", "bench", *cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage" in r.stdout, cmd


def test_methods_and_datasets_json(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    for r in rows:
        assert {"name", "available", "reason"} <= set(r)
    assert main(["datasets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "data_root" in out and isinstance(out["datasets"], list)


def _write(path, data):
    path.write_bytes(data)
    return path


def _savemat(path, contents):
    scipy.io.savemat(path, contents)
    return path
