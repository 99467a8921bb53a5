import h5py
import numpy as np
import pytest
import tifffile

from datasets.errors import InputError
from datasets.movies import ArrayMovie, HDF5Movie, NpyMovie, TiffMovie
from datasets.records import Dataset, Recording
from datasets.registry import closest, data_root, get_provider
from methods.base import get_method
from tests.conftest import disk_masks

MOVIE = np.arange(6 * 5 * 7, dtype=np.uint16).reshape(6, 5, 7)


def test_movies_read_chunks_and_crop(tmp_path):
    np.save(tmp_path / "m.npy", MOVIE)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["data"] = MOVIE
    tifffile.imwrite(tmp_path / "m.tif", MOVIE, photometric="minisblack")
    for k, frame in enumerate(MOVIE):
        tifffile.imwrite(tmp_path / f"f{k:03d}.tif", frame)
    movies = [
        ArrayMovie(MOVIE),
        NpyMovie(tmp_path / "m.npy"),
        HDF5Movie(tmp_path / "m.h5"),
        TiffMovie(tmp_path / "m.tif"),
        TiffMovie(sorted(tmp_path.glob("f*.tif"))),
    ]
    for m in movies:
        assert m.shape == (6, 5, 7) and m.dtype == np.uint16, m
        np.testing.assert_array_equal(np.concatenate(list(m.chunks(4))), MOVIE)
        np.testing.assert_allclose(m.mean_image(chunk=4), MOVIE.mean(axis=0))
    cropped = HDF5Movie(tmp_path / "m.h5", rows=slice(1, 4), cols=slice(1, 3), frames=slice(0, 3))
    assert cropped.shape == (3, 3, 2)
    np.testing.assert_array_equal(cropped.read(), MOVIE[:3, 1:4, 1:3])


def test_movie_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        HDF5Movie(tmp_path / "none.h5")
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["movie"] = MOVIE
    with pytest.raises(InputError, match="no dataset 'data'.*movie"):
        HDF5Movie(tmp_path / "m.h5")
    tifffile.imwrite(tmp_path / "a.tif", MOVIE[0])
    tifffile.imwrite(tmp_path / "b.tif", MOVIE[0, :4])
    with pytest.raises(InputError, match="one size"):
        TiffMovie([tmp_path / "a.tif", tmp_path / "b.tif"]).read()
    with pytest.raises(InputError, match=r"\(T, H, W\)"):
        ArrayMovie(np.zeros((3, 3)))


def _rec(name, split="train", group=None, gt=None):
    return Recording(
        name,
        ArrayMovie(MOVIE),
        fps=30.0,
        um_per_px=0.78,
        ground_truths={"default": gt or disk_masks([(2, 2)], 1, (5, 7))},
        split=split,
        group=group,
    )


def test_recording_ground_truth_lazy_and_checked():
    calls = []

    def loader():
        calls.append(1)
        return disk_masks([(2, 2)], 1, (5, 7))

    rec = Recording(
        "r",
        ArrayMovie(MOVIE),
        30.0,
        0.78,
        ground_truths={"default": loader, "bad": lambda: disk_masks([(2, 2)], 1, (6, 7))},
    )
    assert calls == []
    assert rec.ground_truth().n == 1 and rec.ground_truth().n == 1 and calls == [1]
    with pytest.raises(InputError, match="ground truth 'bad' is 6x7, the movie frame is 5x7"):
        rec.ground_truth("bad")
    with pytest.raises(InputError, match="no ground truth 'x'.*default, bad"):
        rec.ground_truth("x")
    with pytest.raises(InputError, match="frame rate"):
        Recording("r", ArrayMovie(MOVIE), 0, 0.78)
    with pytest.raises(InputError, match="pixel size"):
        Recording("r", ArrayMovie(MOVIE), 30, -1)


def test_dataset_splits_and_leave_one_out_folds():
    recs = [_rec("a"), _rec("b"), _rec("c", group="g"), _rec("d", group="g"), _rec("t", split="test")]
    ds = Dataset("demo", recs)
    assert [r.name for r in ds.split("train")] == ["a", "b", "c", "d"]
    folds = ds.folds(ds.split("train"))
    assert [f.held_out.name for f in folds] == ["a", "b", "c", "d"]
    assert [r.name for r in folds[0].train] == ["b", "c", "d"]
    assert [r.name for r in folds[2].train] == ["a", "b"]  # its group-mate d is left out too
    assert ds["t"].split == "test"
    with pytest.raises(InputError, match="no recording 'z'"):
        ds["z"]
    with pytest.raises(InputError, match="duplicate"):
        Dataset("x", [_rec("a"), _rec("a")])


def test_registry_suggests_closest_names(monkeypatch, tmp_path):
    assert closest("synthetc", ["synthetic", "neurofinder"]) == "did you mean 'synthetic'?"
    with pytest.raises(InputError, match="unknown data set 'nuerofinder'"):
        get_provider("nuerofinder")
    with pytest.raises(InputError, match="unknown method 'zzz'"):
        get_method("zzz")
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert data_root() == tmp_path
