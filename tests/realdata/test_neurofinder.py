"""Neurofinder loader: published folder and zip layouts, crops, rates, ground truths, bad input."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from datasets.errors import InputError
from datasets.markings import load_marking
from datasets.maskio import write_mat
from datasets.masks import Masks
from datasets.neurofinder import NeurofinderProvider, load_recording, open_source

# 40x60 frames; series 02 crops rows 4, cols 24 per side -> 32x12.
REGIONS = [
    {"coordinates": [[r, c] for r in range(10, 14) for c in range(26, 30)]},  # inside the crop
    {"coordinates": [[r, c] for r in range(0, 3) for c in range(0, 3)]},  # wholly in the border
    {"coordinates": [[r, c] for r in range(20, 24) for c in range(22, 27)]},  # straddles the col border
]


def _grader_masks(shape):
    stack = np.zeros((2, *shape), bool)
    stack[0, 2:6, 3:7] = True
    stack[1, 10:15, 1:4] = True
    return Masks.from_dense(stack)


@pytest.fixture
def nf_root(tmp_path, writers):
    root = tmp_path / "data"
    movie = writers.neurofinder_folder(root / "neurofinder" / "neurofinder.02.00", regions=REGIONS, rate=8.0, ppm=1.25)
    test_movie = writers.neurofinder_folder(root / "neurofinder" / "neurofinder.02.00.test", seed=1, rate=8.0)
    marks = root / "stneuronet" / "Markings" / "Neurofinder"
    (marks / "test" / "Grader1").mkdir(parents=True)
    (marks / "train" / "Grader1").mkdir(parents=True)
    gt = _grader_masks((32, 12))
    # Test files are v5 (rows, cols, N); training files v7.3, read by h5py as (N, cols, rows).
    write_mat(gt, marks / "test" / "Grader1" / "FinalMasks_200.mat", version="5")
    write_mat(gt.transpose(), marks / "train" / "Grader1" / "FinalMasks_200.mat", version="7.3")
    return root, movie, test_movie, gt


def test_folder_layout_shapes_rates_crops_and_ground_truths(nf_root):
    root, movie, test_movie, gt = nf_root
    ds = NeurofinderProvider().load(root)
    assert [r.name for r in ds] == ["02.00", "02.00.test"]
    train, test = ds["02.00"], ds["02.00.test"]
    assert train.movie.shape == (6, 32, 12)
    assert train.fps == 8.0 and train.um_per_px == pytest.approx(1.25)  # the key holds um per pixel
    assert train.split == "train" and test.split == "test" and train.group == test.group == "02.00"
    np.testing.assert_array_equal(train.movie.read(1, 3), movie[1:3, 4:36, 24:36])
    assert train.crop == test.crop == (4, 4, 24, 24)  # BORDERS["02"], the crop the harness records
    np.testing.assert_array_equal(test.movie.read(), test_movie[:, 4:36, 24:36])
    assert ds.default_grader == "grader1"
    assert train.ground_truth("grader1") == gt  # v7.3 rule (0, 2, 1)
    assert test.ground_truth("grader1") == gt  # v5 rule (2, 0, 1)
    assert "neurofinder" not in test.graders
    orig = train.ground_truth("neurofinder")
    assert orig.shape == (32, 12) and orig.n == 2  # the border-only region is dropped
    assert sorted(orig.areas.tolist()) == [12, 16]  # the straddling region loses its cols < 24


def test_zip_layout_reads_frames_in_place(tmp_path, writers):
    root = tmp_path / "data"
    src = tmp_path / "src" / "neurofinder.01.00"
    movie = writers.neurofinder_folder(
        src, n_frames=5, shape=(20, 20), regions=[writers.square_region(8, 8)], rate=7.0, ppm=0.5
    )
    (root / "neurofinder").mkdir(parents=True)
    writers.zip_folder(src, root / "neurofinder" / "neurofinder.01.00.zip")
    ds = NeurofinderProvider().load(root)
    rec = ds["01.00"]
    assert rec.provenance["layout"] == "zip"
    assert rec.movie.shape == (5, 12, 12) and rec.fps == 7.0 and rec.um_per_px == 0.5
    np.testing.assert_array_equal(rec.movie.read(2, 5), movie[2:5, 4:16, 4:16])
    assert rec.ground_truth("neurofinder").n == 1


def test_availability_lists_sizes_and_exact_fetch_command(nf_root):
    root, *_ = nf_root
    prov = NeurofinderProvider()
    av = prov.availability(root)
    assert av.available and av.recordings_on_disk == 2 and av.recordings_total == 12
    assert "02.00" in av.reason and "kB" in av.reason
    assert av.how_to_get.startswith("python -m bench fetch neurofinder --only 01.00 01.00.test 01.01")
    assert "02.00 " not in av.how_to_get.replace("02.00.test", "")  # present ones are not fetched again
    inv = {s.name: s for s in prov.inventory(root)}
    assert inv["02.00"].on_disk and inv["02.00"].bytes_on_disk > 0 and not inv["02.00"].missing


def test_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="python -m bench fetch neurofinder"):
        NeurofinderProvider().load(tmp_path)
    assert not NeurofinderProvider().availability(tmp_path).available


def test_partial_folder_images_without_regions(tmp_path, writers):
    root = tmp_path / "data"
    writers.neurofinder_folder(root / "neurofinder" / "neurofinder.01.01")
    with pytest.raises(InputError, match=r"regions\.json") as err:
        NeurofinderProvider().load(root)
    assert "neurofinder.01.01" in str(err.value) and "fetch" in str(err.value)


def test_partial_folder_without_images(tmp_path):
    folder = tmp_path / "neurofinder.01.00"
    folder.mkdir()
    (folder / "info.json").write_text("{}")
    with pytest.raises(InputError, match="images"):
        open_source(folder)


def test_frames_of_different_sizes(tmp_path, writers):
    import tifffile

    folder = tmp_path / "neurofinder.01.00.test"
    writers.neurofinder_folder(folder, n_frames=3)
    tifffile.imwrite(folder / "images" / "image00003.tiff", np.zeros((30, 30), np.uint16))
    with pytest.raises(InputError, match="image00003.tiff") as err:
        open_source(folder)
    assert "one size" in str(err.value)


def test_zip_that_is_not_neurofinder(tmp_path):
    z = tmp_path / "neurofinder.01.00.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("something/readme.txt", "hello")
    with pytest.raises(InputError, match="not a Neurofinder data set") as err:
        open_source(z)
    assert str(z) in str(err.value)
    bad = tmp_path / "neurofinder.01.01.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match="zip"):
        open_source(bad)
    assert bad.exists() and z.exists()  # nothing is deleted


def test_info_json_without_rate(tmp_path, writers):
    folder = tmp_path / "neurofinder.04.00.test"
    writers.neurofinder_folder(folder, shape=(40, 100))
    (folder / "info.json").write_text(json.dumps({"pixels-per-micron": 1.0}))
    with pytest.raises(InputError, match="rate-hz"):
        load_recording("04.00.test", open_source(folder))


def test_masks_that_do_not_fit_the_movie(nf_root):
    root, *_ = nf_root
    path = root / "stneuronet" / "Markings" / "Neurofinder" / "test" / "Grader1" / "FinalMasks_200.mat"
    write_mat(_grader_masks((30, 12)), path, version="5")
    rec = NeurofinderProvider().load(root)["02.00.test"]
    with pytest.raises(InputError, match="fit") as err:
        rec.ground_truth("grader1")
    assert str(path) in str(err.value)


CROPPED = {"100": (504, 504), "101": (504, 504), "200": (504, 464), "201": (504, 464), "400": (480, 416)}
COUNTS = {"100": (184, 147), "101": (123, 127), "200": (206, 90), "201": (160, 90), "400": (149, 78), "401": (330, 127)}


@pytest.mark.parametrize("code", sorted(COUNTS))
def test_real_grader1_test_markings(real_fixtures, code):
    frame = CROPPED.get(code, (480, 416))
    masks = load_marking(real_fixtures / "neurofinder-test" / f"GT_{code}.mat", "neurofinder", frame)
    n, median = COUNTS[code]
    assert masks.shape == frame and masks.n == n
    assert np.median(masks.areas) == pytest.approx(median, abs=0.5)
    # Lined up with the cropped frame: masks reach into all four quadrants of it.
    c = masks.centroids
    assert (c[:, 0] < frame[0] / 2).any() and (c[:, 0] > frame[0] / 2).any()
    assert (c[:, 1] < frame[1] / 2).any() and (c[:, 1] > frame[1] / 2).any()
