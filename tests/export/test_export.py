"""bench export: NWB, ImageJ ROI sets, Suite2p stat.npy and .npz from a real run folder; stnn segment to NWB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.export import export_run
from bench.harness import RunConfig, run_benchmark
from datasets import registry
from datasets.interchange import write_imagej_rois, write_suite2p_stat
from datasets.maskio import load_masks
from datasets.masks import Masks

pynwb = pytest.importorskip("pynwb")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run of ``files:`` on synthetic-tiny: tiny00 has saved masks, tiny01 has none (a failed unit)."""
    root = tmp_path_factory.getbasetemp() / "bench-data"  # the data root every test sees (tests/conftest.py)
    ds = registry.get("synthetic-tiny", root=root)
    pred = tmp_path_factory.mktemp("pred")
    gt = ds["tiny00"].ground_truth("default")
    gt.subset(np.arange(min(4, gt.n))).save(pred / "tiny00.npz")
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = RunConfig("synthetic-tiny", (f"saved=files:{pred}/{{recording}}.npz",), tune="none", split="all")
    run_benchmark(cfg, out, dataset=ds, progress=False, analyse_psnr=False)
    return out, ds, Masks.load(pred / "tiny00.npz")


def test_all_formats_read_back_to_the_same_masks(run, tmp_path):
    out, ds, masks = run
    rep = export_run(out, ["all"], out=tmp_path / "x", dataset=ds)
    assert [(f.method, f.recording, f.status) for f in rep.not_exported] == [("saved", "tiny01", "error")]
    names = sorted(p.relative_to(tmp_path / "x").as_posix() for p in rep.files)
    assert names == ["saved/tiny00.npz", "saved/tiny00.nwb", "saved/tiny00/stat.npy", "saved/tiny00_RoiSet.zip"]
    for p in rep.files:
        assert load_masks(p, frame=masks.shape).masks == masks, p
    # The ground truths travel in the NWB file, beside the method's masks.
    nwb = tmp_path / "x" / "saved" / "tiny00.nwb"
    for g in ds["tiny00"].graders:
        assert load_masks(nwb, var=f"ground_truth_{g}").masks == ds["tiny00"].ground_truth(g)


def test_nwb_metadata_movie_link_and_inspector(run, tmp_path, capsys):
    from nwbinspector import Importance, inspect_nwbfile

    out, ds, masks = run
    nwb = export_run(out, ["nwb"], out=tmp_path, dataset=ds).files[0]
    issues = list(inspect_nwbfile(nwbfile_path=str(nwb)))
    serious = [m for m in issues if m.importance in (Importance.CRITICAL, Importance.ERROR)]
    assert not serious, [m.message for m in serious]
    rec = ds["tiny00"]
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:
        f = io.read()
        plane = f.imaging_planes["ImagingPlane"]
        assert plane.imaging_rate == rec.fps and plane.indicator == rec.indicator
        assert list(plane.grid_spacing) == [rec.um_per_px, rec.um_per_px]
        series = f.acquisition["TwoPhotonSeries"]
        linked = (nwb.parent / series.external_file[0]).resolve()
        assert linked == Path(rec.movie.path).resolve() and series.data.shape[0] == 0  # linked, never copied
        seg = f.processing["ophys"]["ImageSegmentation"]
        desc = json.loads(seg["saved"].description)
        assert desc["params"]["path"].endswith("tiny00.npz") and "versions" in desc
        assert set(seg.plane_segmentations) == {"saved", "ground_truth_default", "ground_truth_all_somata"}
    # bench score reads the file back to the same masks (the method's, not a ground truth's).
    gt = tmp_path / "gt.npz"
    masks.save(gt)
    assert main(["score", "--pred", str(nwb), "--gt", str(gt), "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["n_pred"] == score["tp"] == masks.n and score["pred_format"] == "nwb-plane-segmentation"


def test_existing_target_is_refused_unless_overwrite(run, tmp_path, capsys):
    out, _, _ = run
    args = ["export", str(out), "--format", "npz,roi", "--out", str(tmp_path)]
    assert main(args) == 0
    assert "not exported: saved on tiny01" in capsys.readouterr().out
    before = (tmp_path / "saved" / "tiny00.npz").stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "exist already" in err and "--overwrite" in err and "\n" not in err
    assert (tmp_path / "saved" / "tiny00.npz").stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "savd"], "did you mean 'saved'"),
        (["--format", "xml"], "unknown export format xml"),
    ],
)
def test_bad_arguments_are_one_line(run, tmp_path, capsys, extra, message):
    out, _, _ = run
    assert main(["export", str(out), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_or_foreign_run_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


_masks = (
    st.lists(st.lists(st.lists(st.booleans(), min_size=9, max_size=9), min_size=7, max_size=7), min_size=1, max_size=4)
    .map(lambda s: np.array(s, bool))
    .filter(lambda a: bool(a.reshape(len(a), -1).any(axis=1).all()))
)


@settings(max_examples=60, deadline=None)
@given(stack=_masks)
def test_roi_and_stat_are_exact_for_any_mask(tmp_path_factory, stack):
    """Holes, pieces and diagonal contacts included: the traced polygons fill back to the same pixels."""
    d = tmp_path_factory.mktemp("rt")
    masks = Masks.from_dense(stack)
    assert load_masks(write_imagej_rois(masks, d / "RoiSet.zip"), frame=masks.shape).masks == masks
    assert load_masks(write_suite2p_stat(masks, d / "stat.npy"), frame=masks.shape).masks == masks


def test_stnn_segment_writes_nwb(tmp_path, capsys):
    """``python -m stnn segment --out X.nwb`` writes the same masks as ``--out X.npz``, inspector-clean."""
    from nwbinspector import Importance, inspect_nwbfile

    from stnn.cli import main as stnn_main

    rec = registry.get("synthetic-tiny")["tiny01"]
    common = [str(rec.movie.path), "--fps", "30", "--um-per-px", "0.78", "--device", "cpu"]
    assert stnn_main(["segment", *common, "--out", str(tmp_path / "m.nwb")]) == 0
    assert stnn_main(["segment", *common, "--out", str(tmp_path / "m.npz")]) == 0
    masks = Masks.load(tmp_path / "m.npz")
    assert masks.n > 0
    assert load_masks(tmp_path / "m.nwb").masks == masks  # frame from the linked series' dimension
    issues = inspect_nwbfile(nwbfile_path=str(tmp_path / "m.nwb"))
    assert not [m.message for m in issues if m.importance in (Importance.CRITICAL, Importance.ERROR)]
