"""``python -m stnn``: help, segment round trip, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from stnn.cli import build_parser, main
from stnn.model import STNeuroNet
from stnn.weights import WeightsMetadata, save_weights


@pytest.mark.parametrize("command", [[], ["train"], ["segment"], ["tune"], ["perf"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "stnn", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "segment" in out.stdout


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    meta = WeightsMetadata(command="test", threshold=0.5, min_area=2.0, um_per_px=1.0)
    return save_weights(STNeuroNet(), tmp_path / "w" / "random.pt", meta)


def test_segment_round_trip(tmp_path, weights, capsys):
    movie = np.random.default_rng(0).poisson(100, size=(130, 8, 12)).astype(np.uint16)
    np.save(tmp_path / "movie.npy", movie)
    out = tmp_path / "masks.npz"
    code = main(
        [
            "segment",
            str(tmp_path / "movie.npy"),
            "--out",
            str(out),
            "--fps",
            "6",
            "--um-per-px",
            "1",
            "--weights",
            str(weights),
            "--save-maps",
            str(tmp_path / "maps.npy"),
            "--json",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    masks = Masks.load(out)
    assert masks.shape == (8, 12) and report["n_masks"] == masks.n
    assert report["n_frames"] == 130 and report["n_maps"] == 2
    assert np.load(tmp_path / "maps.npy").shape == (2, 8, 12)


def test_errors_are_one_line_with_exit_2(tmp_path, weights, capsys):
    code = main(
        [
            "segment",
            str(tmp_path / "missing.npy"),
            "--out",
            "x.npz",
            "--fps",
            "6",
            "--um-per-px",
            "1",
            "--weights",
            str(weights),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "not found" in err

    (tmp_path / "movie.avi").write_bytes(b"")
    assert main(["segment", str(tmp_path / "movie.avi"), "--out", "x.npz", "--fps", "6", "--um-per-px", "1"]) == 2
    assert "unknown movie format" in capsys.readouterr().err

    np.save(tmp_path / "m.npy", np.zeros((130, 8, 8), np.uint16))
    assert (
        main(
            [
                "segment",
                str(tmp_path / "m.npy"),
                "--out",
                "x.npz",
                "--fps",
                "6",
                "--um-per-px",
                "1",
                "--weights",
                "no-such-weights",
            ]
        )
        == 2
    )
    assert "python -m stnn train" in capsys.readouterr().err

    assert main(["train", "--dataset", "no-such-dataset", "--out", str(tmp_path / "run")]) == 2
    assert "unknown data set" in capsys.readouterr().err

    with pytest.raises(InputError):
        main(["segment", str(tmp_path / "missing.npy"), "--out", "x.npz", "--fps", "6", "--um-per-px", "1", "--debug"])


def test_argument_validation(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["segment", "m.npy", "--out", "x.npz", "--fps", "-1", "--um-per-px", "1"])
    assert exc.value.code == 2
    args = build_parser().parse_args(["train", "--dataset", "x", "--crop", "64x48"])
    assert args.crop == (64, 48)
