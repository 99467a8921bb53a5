"""Mask files in every supported real format, written here and read back."""

import json

import h5py
import numpy as np
import pytest
import roifile
import scipy.io
import tifffile
from PIL import Image

from datasets.errors import InputError
from datasets.maskio import load_masks, save_masks, write_mat
from tests.conftest import disk_masks

RECT = disk_masks([(6, 6), (10, 20), (20, 8)], 3, (30, 26))  # non-square frame
SQUARE = disk_masks([(6, 6), (10, 20), (20, 8), (25, 25)], 3, (32, 32))


@pytest.mark.parametrize("suffix", [".npz", ".json", ".mat", ".npy", ".tif", ".png"])
def test_save_then_load_every_suffix(tmp_path, suffix):
    path = save_masks(RECT, tmp_path / f"m{suffix}")
    loaded = load_masks(path, frame=RECT.shape)
    assert loaded.masks == RECT, loaded.format


def test_mat_v5_in_authors_layout_needs_the_neurofinder_axes(tmp_path):
    # write_mat stores (rows, cols, N) as MATLAB sees tifffile frames; the
    # Neurofinder rule is axes (2, 0, 1).
    path = write_mat(RECT, tmp_path / "FinalMasks_100.mat")
    loaded = load_masks(path, axes=(2, 0, 1))
    assert loaded.format == "mat-v5" and loaded.variable == "FinalMasks"
    assert loaded.stored_shape == (30, 26, 3) and loaded.masks == RECT
    # Without axes but with the frame, the only fitting orientation is found.
    assert load_masks(path, frame=RECT.shape).axes == (2, 0, 1)


def test_mat_v73_reads_through_hdf5_as_stored(tmp_path):
    path = write_mat(RECT, tmp_path / "gt.mat", version="7.3")
    assert open(path, "rb").read(10) == b"MATLAB 7.3"
    loaded = load_masks(path)
    assert loaded.format == "mat-v7.3" and loaded.axes == (0, 1, 2)
    assert loaded.masks == RECT
    with h5py.File(path, "r") as f:
        assert f["FinalMasks"].dtype == np.float64


def test_square_frame_orientation_is_chosen_by_agreement_and_reported(tmp_path):
    # A SUNS-style Python-written v5 file: (N, rows, cols) as stored.
    scipy.io.savemat(tmp_path / "suns.mat", {"Masks": SQUARE.to_dense().astype(np.uint8)})
    loaded = load_masks(tmp_path / "suns.mat", reference=SQUARE)
    assert loaded.axes == (0, 1, 2) and loaded.masks == SQUARE
    assert "square frame" in loaded.note and "4/4" in loaded.note
    # The same masks transposed in-plane are recognised as well.
    scipy.io.savemat(tmp_path / "t.mat", {"Masks": SQUARE.to_dense().transpose(0, 2, 1).astype(np.uint8)})
    assert load_masks(tmp_path / "t.mat", reference=SQUARE).axes == (0, 2, 1)


def test_label_images_tiff_png_and_npy(tmp_path):
    labels = RECT.to_label_image()
    tifffile.imwrite(tmp_path / "l.tif", labels.astype(np.uint16))
    Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "l.png")
    np.save(tmp_path / "l.npy", labels)
    for name in ("l.tif", "l.png", "l.npy"):
        assert load_masks(tmp_path / name, frame=RECT.shape).masks == RECT, name
    # A transposed label image fits a non-square frame only one way.
    tifffile.imwrite(tmp_path / "lt.tif", labels.T.astype(np.uint16))
    assert load_masks(tmp_path / "lt.tif", frame=RECT.shape).axes == (1, 0)


def test_neurofinder_regions_json(tmp_path):
    regions = [{"id": 0, "coordinates": [[1, 2], [1, 3], [2, 2]]}, {"coordinates": [[5, 5]]}]
    (tmp_path / "regions.json").write_text(json.dumps(regions))
    m = load_masks(tmp_path / "regions.json", frame=(8, 8)).masks
    assert m.areas.tolist() == [3, 1] and m.to_dense()[0, 1, 3]
    with pytest.raises(InputError, match="frame size is needed"):
        load_masks(tmp_path / "regions.json")
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="Neurofinder regions"):
        load_masks(tmp_path / "bad.json", frame=(8, 8))


def test_suite2p_stat(tmp_path):
    stat = np.array(
        [{"ypix": np.array([1, 1, 2]), "xpix": np.array([3, 4, 3]), "lam": np.ones(3)}, {"ypix": [7], "xpix": [0]}],
        dtype=object,
    )
    np.save(tmp_path / "stat.npy", stat, allow_pickle=True)
    m = load_masks(tmp_path / "stat.npy", frame=(10, 10)).masks
    assert m.areas.tolist() == [3, 1] and m.to_dense()[0, 2, 3]
    # Object arrays under other names are not unpickled.
    np.save(tmp_path / "other.npy", stat, allow_pickle=True)
    with pytest.raises(InputError, match="stat.npy"):
        load_masks(tmp_path / "other.npy", frame=(10, 10))


def test_imagej_roi_zip(tmp_path):
    square = roifile.ImagejRoi.frompoints(np.array([[2, 2], [6, 2], [6, 6], [2, 6]]), name="a")
    tri = roifile.ImagejRoi.frompoints(np.array([[10, 10], [14, 10], [10, 14]]), name="b")
    roifile.roiwrite(tmp_path / "rois.zip", [square, tri])
    m = load_masks(tmp_path / "rois.zip", frame=(20, 20)).masks
    assert m.n == 2
    dense = m.to_dense()
    assert dense[0].sum() == 16 and dense[0, 2:6, 2:6].all()  # x, y in [2, 6) -> rows and cols 2..5
    assert 6 <= dense[1].sum() <= 10


def test_plain_npz_and_hdf5(tmp_path):
    np.savez(tmp_path / "a.npz", masks=RECT.to_dense())
    assert load_masks(tmp_path / "a.npz").masks == RECT
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["seg/masks"] = RECT.to_dense().astype(np.uint8)
    loaded = load_masks(tmp_path / "a.h5")
    assert loaded.variable == "seg/masks" and loaded.masks == RECT


# ---------------------------------------------------------------------------- bad input
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found") as e:
        load_masks(tmp_path / "nope.mat")
    assert str(tmp_path / "nope.mat") in str(e.value)
    with pytest.raises(InputError, match="folder"):
        load_masks(tmp_path)


def test_truncated_files(tmp_path):
    v5 = write_mat(RECT, tmp_path / "v5.mat")
    v73 = write_mat(RECT, tmp_path / "v73.mat", version="7.3")
    for p in (v5, v73):
        data = p.read_bytes()
        cut = tmp_path / f"cut_{p.name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="unreadable or truncated") as e:
            load_masks(cut)
        assert cut.name in str(e.value)


def test_several_variables_are_named(tmp_path):
    scipy.io.savemat(tmp_path / "two.mat", {"A": RECT.to_dense(), "B": RECT.to_dense(), "note": np.ones((1, 5))})
    with pytest.raises(InputError, match=r"several variables.*A .*B .*--var") as e:
        load_masks(tmp_path / "two.mat")
    assert "note" not in str(e.value)
    assert load_masks(tmp_path / "two.mat", var="B", axes=(0, 1, 2)).masks == RECT
    with pytest.raises(InputError, match="no variable 'C'"):
        load_masks(tmp_path / "two.mat", var="C")


def test_empty_nonbinary_nonfinite_and_unfit(tmp_path):
    scipy.io.savemat(tmp_path / "empty.mat", {"M": np.zeros((30, 26, 0))})
    with pytest.raises(InputError, match="empty"):
        load_masks(tmp_path / "empty.mat")
    np.save(tmp_path / "nb.npy", RECT.to_dense() * 2.0)
    with pytest.raises(InputError, match="binary"):
        load_masks(tmp_path / "nb.npy")
    nan = RECT.to_dense().astype(float)
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(InputError, match="NaN"):
        load_masks(tmp_path / "nan.npy")
    np.save(tmp_path / "ok.npy", RECT.to_dense())
    with pytest.raises(InputError, match="fit the 31x26 frame in no orientation"):
        load_masks(tmp_path / "ok.npy", frame=(31, 26))
    (tmp_path / "x.xyz").write_text("")
    with pytest.raises(InputError, match="unknown mask file type"):
        load_masks(tmp_path / "x.xyz")
