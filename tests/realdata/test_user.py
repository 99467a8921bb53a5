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
