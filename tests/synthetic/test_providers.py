"""The registered synthetic data sets: generation on first use, on-disk formats, describe and show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datasets.registry as registry
from datasets.describe import describe_dataset, format_description
from datasets.show import show_recording
from datasets.synthetic import SyntheticNeurofinder, SyntheticTiny

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, SyntheticTiny().load(root)


def test_registered():
    provs = registry.providers()
    for name in ("synthetic", "synthetic-neurofinder", "synthetic-tiny"):
        assert name in provs
        assert provs[name].availability(Path("/nonexistent")).available


def test_tiny_generated_cached_and_loaded(tiny_root, monkeypatch):
    root, ds = tiny_root
    assert len(ds) == 2 and {r.split for r in ds} == {"train", "test"}
    av = SyntheticTiny().availability(root)
    assert av.recordings_on_disk == av.recordings_total == 2
    rec = ds.recordings[0]
    assert (root / "synthetic-tiny" / rec.name / "movie.h5").is_file()
    gt, allm = rec.ground_truth("default"), rec.ground_truth("all_somata")
    assert 0 < gt.n < allm.n
    assert rec.movie.read(0, 10).dtype == np.uint16
    mtime = (root / "synthetic-tiny" / rec.name / "movie.h5").stat().st_mtime
    monkeypatch.setenv("BENCH_DATA", str(root))
    again = registry.get("synthetic-tiny")
    assert (root / "synthetic-tiny" / rec.name / "movie.h5").stat().st_mtime == mtime
    assert np.array_equal(again.recordings[0].movie.read(0, 5), rec.movie.read(0, 5))
    assert len(ds.folds()) == 2
    assert not list((root / "synthetic-tiny").glob(".*tmp*"))


def test_describe_and_show(tiny_root, tmp_path):
    _, ds = tiny_root
    ref = FIXTURES if FIXTURES.is_dir() else None
    d = describe_dataset(ds, reference_dir=ref)
    json.dumps(d)
    r = d["recordings"][0]
    assert r["n_active"] > 0 and r["n_silent"] > 0 and r["psnr"] is not None
    assert r["contrast"]["mean_in_over_out"] > 1.0 and r["contrast"]["corr_in_minus_out"] > 0
    if ref is not None:
        assert len(d["reference"]["abo275"]) >= 1
        assert 235 <= d["reference"]["abo275"][0]["n_active"] <= 355
    text = format_description(d)
    assert "tiny00" in text and "paper" in text
    png = show_recording(ds.recordings[0], tmp_path / "fig.png")
    assert png.stat().st_size > 20_000


def test_neurofinder_layout(tmp_path):
    prov = SyntheticNeurofinder()
    prov.params = prov.params.replace(height=64, width=64, n_frames=60, block_frames=30)
    prov.specs = prov.specs[:1]
    ds = prov.load(tmp_path)
    folder = tmp_path / "synthetic-neurofinder" / prov.specs[0].name
    assert len(list((folder / "images").glob("image*.tiff"))) == 60
    info = json.loads((folder / "info.json").read_text())
    # The published info.json keys (codeneuro/neurofinder test.json); the value of
    # "pixels-per-micron" is, as in the published files, micrometres per pixel (1.15).
    for key in ("id", "indicator", "region", "depth-microns", "pixels-per-micron", "rate-hz", "dimensions"):
        assert key in info
    assert info["rate-hz"] == 7.0 and info["indicator"] == "GCaMP6s" and info["dimensions"] == [64, 64, 60]
    assert info["pixels-per-micron"] == pytest.approx(1.15)
    regions = json.loads((folder / "regions" / "regions.json").read_text())
    rec = ds.recordings[0]
    assert len(regions) == rec.ground_truth("default").n
    assert rec.movie.shape == (60, 64, 64) and rec.um_per_px == pytest.approx(1.15)


def test_neurofinder_layout_loads_with_the_neurofinder_reader(tmp_path):
    """The generated folder opens with datasets.neurofinder (as a real neurofinder.01.00 folder)."""
    from datasets.neurofinder import load_recording, open_source

    prov = SyntheticNeurofinder()
    prov.params = prov.params.replace(height=64, width=64, n_frames=60, block_frames=30)
    prov.specs = prov.specs[:1]
    ds = prov.load(tmp_path)
    folder = tmp_path / "synthetic-neurofinder" / prov.specs[0].name
    src = open_source(folder, expect_regions=True)
    rec = load_recording(prov.specs[0].name.removeprefix("neurofinder."), src)
    assert rec.fps == 7.0 and rec.indicator == "GCaMP6s" and rec.split == "train"
    assert rec.um_per_px == pytest.approx(ds.recordings[0].um_per_px)  # pixels-per-micron holds um per pixel
    assert rec.movie.shape == (60, 56, 56)  # the 01 series' 4 px border is cropped
    ours = ds.recordings[0]
    assert np.array_equal(rec.movie.read(0, 3), ours.movie.read(0, 3)[:, 4:-4, 4:-4])
    gt = rec.ground_truth("neurofinder")
    assert gt.n <= ours.ground_truth("default").n
