"""ABO loader: the experiment HDF5 and NWB layouts, the paper's preparation, marking files, laziness."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from datasets.abo import LAYER175, LAYER275, ABOProvider, open_abo_movie, published_markings
from datasets.errors import InputError
from datasets.markings import load_marking
from datasets.maskio import write_mat
from datasets.masks import Masks

EXP = "501484643"  # 275 um, all four ground truths published


def _write_movie(path, n_frames=12, seed=0):
    rng = np.random.default_rng(seed)
    movie = rng.integers(0, 3000, size=(n_frames, 512, 512), dtype=np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=movie, chunks=(1, 512, 512))
    return movie


def _gt(shape=(487, 487), n=3):
    stack = np.zeros((n, *shape), bool)
    for i in range(n):
        stack[i, 20 + 30 * i : 28 + 30 * i, 100 + 7 * i : 110 + 7 * i] = True  # not symmetric: catches transposes
    return Masks.from_dense(stack)


@pytest.fixture
def abo_root(tmp_path):
    root = tmp_path / "data"
    movie = _write_movie(root / "abo" / f"ophys_experiment_{EXP}.h5")
    marks = root / "stneuronet" / "Markings" / "ABO" / "Layer275"
    gt = _gt()
    for sub in ("FinalGT", "Allen", "Grader3", "Grader4"):
        (marks / sub).mkdir(parents=True)
    # FinalGT: v7.3 whose h5py view is (N, rows, cols); Allen/Grader: v5 (cols, rows, N) -> axes (2, 1, 0).
    write_mat(gt, marks / "FinalGT" / f"FinalMasks_FPremoved_{EXP}.mat", version="7.3")
    write_mat(gt.transpose(), marks / "Allen" / f"Masks_{EXP}.mat", version="5")
    write_mat(gt.subset([0, 1]).transpose(), marks / "Grader3" / f"FinalMasks_{EXP}.mat", version="5")
    write_mat(gt.subset([2]).transpose(), marks / "Grader4" / f"FinalMasks_{EXP}.mat", version="5")
    return root, movie, gt


def test_ids_and_published_files():
    assert len(LAYER275) == len(LAYER175) == 10 and not set(LAYER275) & set(LAYER175)
    assert published_markings(EXP) == {"final": True, "allen": True, "grader3": True, "grader4": True}
    assert published_markings("539670003")["final"] is False  # listed, not retrievable
    assert published_markings("501271265") == {"final": False, "allen": True}


def test_hdf5_layout_preparation_and_ground_truths(abo_root):
    root, movie, gt = abo_root
    ds = ABOProvider().load(root)
    assert [r.name for r in ds] == [EXP] and ds.default_grader == "final"
    rec = ds[EXP]
    assert rec.movie.shape == (12 // 5, 487, 487)
    assert (rec.fps, rec.um_per_px, rec.indicator, rec.split, rec.group) == (30.0, 0.78, "GCaMP6f", "train", "275um")
    np.testing.assert_array_equal(rec.movie.read(), movie[:2, 12:499, 12:499])
    # The paper's registration border, about 10 um a side at 0.78 um/px, is the recording's crop.
    assert rec.crop == (12, 13, 12, 13)
    assert all(9 <= side * rec.um_per_px <= 11 for side in rec.crop)
    assert set(rec.graders) == {"final", "allen", "grader3", "grader4"}
    assert rec.ground_truth("final") == gt
    assert rec.ground_truth("allen") == gt
    assert rec.ground_truth("grader3") == gt.subset([0, 1])
    assert rec.ground_truth("grader4") == gt.subset([2])
    with pytest.raises(InputError, match="grader1"):
        rec.ground_truth("grader1")


def test_opening_reads_no_frame(abo_root, monkeypatch):
    root, *_ = abo_root

    def refuse(self, *args, **kwargs):
        raise AssertionError("a frame was read")

    # Every frame read goes through Dataset.__getitem__ / read_direct; refuse both while opening.
    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    prov = ABOProvider()
    assert prov.availability(root).recordings_on_disk == 1
    rec = prov.load(root)[EXP]
    assert rec.movie.shape == (2, 487, 487) and rec.frame_shape == (487, 487) and rec.n_frames == 2
    monkeypatch.undo()
    assert rec.movie.read(0, 1).shape == (1, 487, 487)


def test_availability_names_missing_movies_and_command(abo_root):
    root, *_ = abo_root
    av = ABOProvider().availability(root)
    assert av.available and av.recordings_on_disk == 1 and av.recordings_total == 20
    assert av.how_to_get.startswith("python -m bench fetch abo --only 524691284")
    assert EXP not in av.how_to_get  # only the missing movies are fetched
    inv = {s.name: s for s in ABOProvider().inventory(root)}
    assert inv[EXP].on_disk and inv[EXP].bytes_on_disk > 0
    assert inv[EXP].missing == () and "final" in inv[EXP].note
    assert inv["524691284"].missing[0] == "ophys_experiment_524691284.h5" and not inv["524691284"].on_disk


def test_small_frames_are_rejected(tmp_path):
    path = tmp_path / "abo" / "ophys_experiment_524691284.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((10, 100, 100), np.uint16))
    with pytest.raises(InputError, match="512x512") as err:
        open_abo_movie(path)
    assert str(path) in str(err.value)


def test_empty_root_says_how_to_fetch(tmp_path):
    with pytest.raises(InputError, match="python -m bench fetch abo"):
        ABOProvider().load(tmp_path)


def test_nwb_two_photon_series_and_plane_segmentation(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.ophys import ImageSegmentation, OpticalChannel, TwoPhotonSeries

    from datasets.nwb import read_nwb_masks

    rng = np.random.default_rng(3)
    movie = rng.integers(0, 1000, size=(10, 512, 512), dtype=np.uint16)
    nwb = pynwb.NWBFile("test", "abo", datetime(2020, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device("scope")
    channel = OpticalChannel(name="ch", description="green", emission_lambda=510.0)
    plane = nwb.create_imaging_plane(
        name="plane",
        optical_channel=channel,
        description="",
        device=dev,
        excitation_lambda=910.0,
        imaging_rate=30.0,
        indicator="GCaMP6f",
        location="VISp",
    )
    series = TwoPhotonSeries(name="motion_corrected", data=movie, imaging_plane=plane, rate=30.0, unit="n.a.")
    nwb.add_acquisition(series)
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation(name="rois", description="seg", imaging_plane=plane, reference_images=series)
    full = np.zeros((2, 512, 512), np.float32)
    full[0, 40:48, 100:112] = 1
    full[1, 300:305, 200:203] = 0.5
    for m in full:
        ps.add_roi(image_mask=m)
    nwb.create_processing_module(name="ophys", description="seg").add(seg)
    path = tmp_path / "data" / "abo" / f"ophys_experiment_{EXP}.nwb"
    path.parent.mkdir(parents=True)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)

    m = open_abo_movie(path)
    assert m.shape == (2, 487, 487)
    np.testing.assert_array_equal(m.read(), movie[:2, 12:499, 12:499])
    rec = ABOProvider().load(tmp_path / "data")[EXP]
    assert rec.movie.shape == (2, 487, 487)
    masks = read_nwb_masks(path, (512, 512))
    assert masks.n == 2 and masks.areas.tolist() == [96, 15]
    assert masks.crop(slice(12, 499), slice(12, 499)).centroids[0] == pytest.approx([43.5 - 12, 105.5 - 12])


# ---------------------------------------------------------------------------- real marking files
REAL = {
    # id: final, allen, grader3, grader4 counts (fixtures README / spec section 9)
    "501484643": (269, 184, 250, 215),
    "501574836": (278, 240, 278, 245),
}


def _matched(reference: Masks, other: Masks) -> int:
    iou = reference.iou(other)
    return int((iou.max(axis=1) >= 0.5).sum()) if other.n else 0


@pytest.mark.parametrize("exp", sorted(REAL))
def test_real_abo_markings_counts_and_alignment(real_fixtures, exp):
    d = real_fixtures / "abo275"
    frame = (487, 487)
    final = load_marking(d / f"GT_{exp}.mat", "abo", frame)
    allen = load_marking(d / f"ALLEN_{exp}.mat", "abo", frame)
    g3 = load_marking(d / f"G3_{exp}.mat", "abo", frame)
    g4 = load_marking(d / f"G4_{exp}.mat", "abo", frame)
    assert (final.n, allen.n, g3.n, g4.n) == REAL[exp]
    # The rules line every file up with the final GT (the fixtures README: Allen TP 177/203 under
    # IoU >= 0.5); transposing a file instead collapses the agreement, so a wrong rule cannot pass.
    for other in (allen, g3, g4):
        assert _matched(final, other) > 0.6 * other.n
        assert _matched(final, other.transpose()) < 0.15 * other.n
