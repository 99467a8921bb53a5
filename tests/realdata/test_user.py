"""User-registered recordings: every movie layout, masks, manifests, providers and bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile

from datasets.errors import InputError
from datasets.maskio import write_mat
from datasets.masks import Masks
from datasets.registry import closest
from datasets.user import UserDataset, UserDatasets, add_recording, remove_recording, user_providers

SHAPE = (12, 24, 32)


def _movie(dtype=np.uint16):
    rng = np.random.default_rng(0)
    return rng.integers(1, 1000, size=SHAPE).astype(dtype)


def _masks():
    st = np.zeros((2, 24, 32), bool)
    st[0, 2:6, 3:9] = True
    st[1, 10:20, 20:22] = True
    return Masks.from_dense(st)


@pytest.fixture
def movie_files(tmp_path):
    m = _movie()
    out = {}
    tifffile.imwrite(tmp_path / "stack.tif", m)
    out["tiff"] = tmp_path / "stack.tif"
    (tmp_path / "frames").mkdir()
    for t in range(SHAPE[0]):
        tifffile.imwrite(tmp_path / "frames" / f"f{t}.tif", m[t])
    out["folder"] = tmp_path / "frames"
    with h5py.File(tmp_path / "movie.h5", "w") as f:
        f.create_dataset("mov/raw", data=m, chunks=(1, 24, 32))
        f.create_dataset("other", data=np.zeros((3, 3, 3)))
    out["hdf5"] = tmp_path / "movie.h5"
    np.save(tmp_path / "movie.npy", m)
    out["npy"] = tmp_path / "movie.npy"
    return m, out


@pytest.mark.parametrize("kind", ["tiff", "folder", "hdf5", "npy"])
def test_register_and_load_every_layout(tmp_path, movie_files, kind):
    m, files = movie_files
    root = tmp_path / "root"
    masks_path = write_mat(_masks(), tmp_path / "gt.mat")
    key = "mov/raw" if kind == "hdf5" else None
    manifest = add_recording(f"my-{kind}", files[kind], masks_path, fps=15.0, um_per_px=1.1, key=key, root=root)
    assert manifest == root / "user" / f"my-{kind}.json"
    (data,) = json.loads(manifest.read_text())["recordings"]
    assert data["movie"]["shape"] == list(SHAPE) and data["masks"]["n"] == 2
    assert data["crop"] == [0, 0, 0, 0] and data["crop_source"] == "detected"
    provs = user_providers(root)
    assert list(provs) == [f"my-{kind}"]
    ds = provs[f"my-{kind}"].load(root)
    rec = ds[f"my-{kind}"]
    assert rec.movie.shape == SHAPE and rec.fps == 15.0 and rec.um_per_px == 1.1
    np.testing.assert_array_equal(rec.movie.read(), m)
    assert rec.ground_truth() == _masks()
    assert provs[f"my-{kind}"].availability(root).available


def test_user_datasets_gathers_all_and_remove(tmp_path, movie_files):
    _, files = movie_files
    root = tmp_path / "root"
    add_recording("a", files["npy"], fps=10, um_per_px=1, root=root)
    add_recording("b", files["tiff"], fps=10, um_per_px=1, root=root, split="train")
    ds = UserDatasets().load(root)
    assert [r.name for r in ds] == ["a", "b"] and ds["b"].split == "train"
    assert UserDatasets().availability(root).recordings_on_disk == 2
    remove_recording("a", root)
    assert list(user_providers(root)) == ["b"]
    with pytest.raises(InputError, match="did you mean 'b'"):
        remove_recording("bb", root)


def test_nwb_movie_rate_and_plane_segmentation(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.ophys import ImageSegmentation, OpticalChannel, TwoPhotonSeries

    m = _movie()
    nwb = pynwb.NWBFile("t", "id", datetime(2020, 1, 1, tzinfo=timezone.utc))
    plane = nwb.create_imaging_plane(
        name="p",
        optical_channel=OpticalChannel(name="c", description="g", emission_lambda=510.0),
        description="",
        device=nwb.create_device("d"),
        excitation_lambda=920.0,
        imaging_rate=12.5,
        indicator="GCaMP6s",
        location="V1",
    )
    series = TwoPhotonSeries(name="tps", data=m, imaging_plane=plane, rate=12.5, unit="n.a.")
    nwb.add_acquisition(series)
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation(name="ps", description="", imaging_plane=plane, reference_images=series)
    # pixel masks: x indexes rows, y cols (as the movie's first and second in-plane axes)
    for mask in _masks().to_dense():
        r, c = np.nonzero(mask)
        ps.add_roi(pixel_mask=[(int(a), int(b), 1.0) for a, b in zip(r, c)])
    nwb.create_processing_module(name="ophys", description="").add(seg)
    path = tmp_path / "rec.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    root = tmp_path / "root"
    add_recording("nwbrec", path, path, um_per_px=0.9, root=root)  # fps from the file
    rec = UserDataset("nwbrec").load(root)["nwbrec"]
    assert rec.fps == 12.5 and rec.movie.shape == SHAPE
    np.testing.assert_array_equal(rec.movie.read(1, 3), m[1:3])
    assert rec.ground_truth() == _masks()


def test_bad_input(tmp_path, movie_files):
    _, files = movie_files
    root = tmp_path / "root"
    with pytest.raises(InputError, match="--fps"):
        add_recording("x", files["npy"], um_per_px=1, root=root)
    with pytest.raises(InputError, match="--um-per-px"):
        add_recording("x", files["npy"], fps=5, root=root)
    with pytest.raises(InputError, match="invalid name"):
        add_recording("../x", files["npy"], fps=5, um_per_px=1, root=root)
    with pytest.raises(InputError, match="built-in"):
        add_recording("neurofinder", files["npy"], fps=5, um_per_px=1, root=root)
    with pytest.raises(InputError, match="--key") as err:
        add_recording("x", files["hdf5"], fps=5, um_per_px=1, root=root)
    assert "mov/raw" in str(err.value)
    with pytest.raises(InputError, match="movie not found"):
        add_recording("x", tmp_path / "nope.tif", fps=5, um_per_px=1, root=root)
    # masks that do not fit the movie frame
    bad = write_mat(Masks.from_dense(np.ones((1, 20, 20), bool)), tmp_path / "bad.mat")
    with pytest.raises(InputError, match="fit") as err:
        add_recording("x", files["npy"], bad, fps=5, um_per_px=1, root=root)
    assert str(bad) in str(err.value)
    add_recording("x", files["npy"], fps=5, um_per_px=1, root=root)
    with pytest.raises(InputError, match="--overwrite"):
        add_recording("x", files["npy"], fps=5, um_per_px=1, root=root)
    assert not list((root / "user").glob("*.tmp"))


def test_tiff_frames_of_different_sizes(tmp_path):
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "a0.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "f" / "a1.tif", np.zeros((8, 9), np.uint16))
    with pytest.raises(InputError, match="one size") as err:
        add_recording("x", tmp_path / "f", fps=5, um_per_px=1, root=tmp_path / "root")
    assert "a1.tif" in str(err.value)
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(np.zeros((8, 8), np.uint16))
        tw.write(np.zeros((9, 9), np.uint16))
    with pytest.raises(InputError, match="different sizes"):
        add_recording("y", tmp_path / "mixed.tif", fps=5, um_per_px=1, root=tmp_path / "root")


def test_nan_and_inf_frames(tmp_path):
    m = _movie(np.float32)
    m[-1, 3, 4] = np.nan
    np.save(tmp_path / "nan.npy", m)
    with pytest.raises(InputError, match="frame 11 holds NaN or Inf") as err:
        add_recording("x", tmp_path / "nan.npy", fps=5, um_per_px=1, root=tmp_path / "root")
    assert "nan.npy" in str(err.value)
    m = _movie(np.float32)
    m[2, 0, 0] = np.inf  # a middle frame: the registration reads every frame
    np.save(tmp_path / "inf.npy", m)
    with pytest.raises(InputError, match="frame 2 holds NaN or Inf") as err:
        add_recording("y", tmp_path / "inf.npy", fps=5, um_per_px=1, root=tmp_path / "root")
    assert "inf.npy" in str(err.value)


def test_unknown_dataset_name_suggests_the_closest():
    names = ["neurofinder", "abo", "synthetic"]
    assert closest("neurofindr", names) == "did you mean 'neurofinder'?"
    assert "abo" in closest("ab0", names)


# ---------------------------------------------------------------------------- several recordings, crops, CLI
def _bordered(tmp_path, name="b.npy", seed=0):
    """A 20-frame movie whose top 2 rows are zero padding and whose left edge is ragged (1-3 columns)."""
    rng = np.random.default_rng(seed)
    m = rng.poisson(300, size=(20, 24, 32)).astype(np.uint16)
    m[:, :2, :] = 0
    for t in range(m.shape[0]):
        m[t, :, : 1 + t % 3] = 0
    np.save(tmp_path / name, m)
    return tmp_path / name, m


def test_several_recordings_in_one_dataset_through_the_cli(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    root = tmp_path / "root"
    monkeypatch.setenv("BENCH_DATA", str(root))
    movie, m = _bordered(tmp_path)
    masks = write_mat(_masks(), tmp_path / "gt.mat")  # over the whole 24x32 frame
    common = ["--movie", str(movie), "--masks", str(masks), "--fps", "7", "--um-per-px", "1.2"]
    assert main(["datasets", "add", "lab", "--recording", "s1", "--split", "train", *common]) == 0
    assert main(["datasets", "add", "lab", "--recording", "s2", "--split", "train", "--group", "mouse1", *common]) == 0
    assert main(["datasets", "add", "lab", "--recording", "s3", "--split", "test", "--crop", "0,0,0,0", *common]) == 0
    assert "registered 's3' in data set 'lab'" in capsys.readouterr().out

    ds = UserDataset("lab").load(root)
    assert [r.name for r in ds] == ["s1", "s2", "s3"]
    assert [r.name for r in ds.split("train")] == ["s1", "s2"] and ds["s2"].group == "mouse1"
    s1, s3 = ds["s1"], ds["s3"]
    # Detected border (top 2, ragged left 3) applied by the movie; the masks cropped to match.
    assert s1.crop == (2, 0, 3, 0) and s1.movie.frame_shape == (22, 29)
    np.testing.assert_array_equal(s1.movie.read(4, 6), m[4:6, 2:, 3:])
    assert s1.ground_truth() == _masks().crop(slice(2, None), slice(3, None))
    assert s1.provenance["crop_source"] == "detected"
    assert s3.crop == (0, 0, 0, 0) and s3.ground_truth() == _masks()

    # Re-adding an id needs --overwrite, and then works (the name is not "built in").
    assert main(["datasets", "add", "lab", "--recording", "s1", *common]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["datasets", "add", "lab", "--recording", "s1", "--crop", "1,1,1,1", "--overwrite", *common]) == 0
    assert UserDataset("lab").load(root)["s1"].crop == (1, 1, 1, 1)
    assert main(["datasets", "remove", "lab", "--recording", "s2"]) == 0
    assert [r.name for r in UserDatasets().load(root)] == ["lab.s1", "lab.s3"]


def test_a_v1_manifest_still_loads_and_is_upgraded_when_added_to(tmp_path):
    root = tmp_path / "root"
    movie, _ = _bordered(tmp_path)
    (root / "user").mkdir(parents=True)
    v1 = {
        "format": "bench-user-recording-v1",
        "name": "old",
        "movie": {"path": str(movie), "kind": "npy", "key": None, "shape": [20, 24, 32]},
        "masks": None,
        "fps": 5.0,
        "um_per_px": 1.0,
        "indicator": None,
        "split": "test",
    }
    (root / "user" / "old.json").write_text(json.dumps(v1))
    assert UserDataset("old").load(root)["old"].crop == (0, 0, 0, 0)
    add_recording("old", movie, fps=5, um_per_px=1, root=root, recording="new")
    data = json.loads((root / "user" / "old.json").read_text())
    assert data["format"] == "bench-user-dataset-v2" and [r["id"] for r in data["recordings"]] == ["old", "new"]


def _with(m: np.ndarray, t: int, value: float) -> np.ndarray:
    m[t, 5, 7] = value
    return m


def _cli_error(argv, capsys) -> str:
    from bench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "make, crop, message",
    [
        (lambda m: _with(m.astype(np.float32), 9, np.nan), None, "frame 9 holds NaN"),
        (lambda m: _with(m.astype(np.float64), 13, np.inf), None, "frame 13 holds NaN or Inf"),
        (lambda m: np.full_like(m, 7), None, "constant"),
        (lambda m: m[:3], None, "has 3 frame(s); at least 10"),
        (lambda m: m, "20,4,0,0", "larger than the 24x32 frame"),
        (lambda m: m, "1,2,3", "T,B,L,R"),
    ],
    ids=["nan-middle", "inf-middle", "constant", "three-frames", "crop-too-large", "crop-malformed"],
)
def test_registration_checks_are_one_line_exit_2(tmp_path, monkeypatch, capsys, make, crop, message):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "root"))
    _, m = _bordered(tmp_path)
    bad = tmp_path / "bad.npy"
    np.save(bad, make(m))
    argv = ["datasets", "add", "lab", "--movie", str(bad), "--fps", "7", "--um-per-px", "1"]
    err = _cli_error(argv + (["--crop", crop] if crop else []), capsys)
    assert message in err
    if crop != "1,2,3":
        assert "bad.npy" in err
    assert not (tmp_path / "root" / "user" / "lab.json").exists()
