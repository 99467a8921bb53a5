"""CaImAn Batch and Online adapters: availability, parameters, and a real run in a worker.

The integration test needs a CaImAn interpreter: CaImAn importable here, or
``BENCH_PYTHON_CAIMAN_BATCH`` / ``BENCH_PYTHON_CAIMAN_ONLINE`` (or the
``[python]`` table of the user config) naming the python of a CaImAn
environment, e.g.::

    BENCH_PYTHON_CAIMAN_BATCH=/opt/caiman/bin/python BENCH_PYTHON_CAIMAN_ONLINE=/opt/caiman/bin/python \\
        python -m pytest tests/methods/test_caiman.py

It is skipped otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import methods.caiman as mc
from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie, NpyMovie
from datasets.records import Recording
from methods import base
from methods.params import validate

ENV_VARS = ("BENCH_PYTHON_CAIMAN_BATCH", "BENCH_PYTHON_CAIMAN_ONLINE")


def _recording(shape=(100, 100), n_frames=50, um_per_px=1.2, indicator="GCaMP6f", fps=30.0) -> Recording:
    movie = ArrayMovie(np.zeros((n_frames, *shape), np.uint16))
    return Recording("toy", movie, fps=fps, um_per_px=um_per_px, indicator=indicator)


@pytest.fixture
def no_caiman(monkeypatch, tmp_path):
    """No CaImAn interpreter configured, and CaImAn not importable here."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no [python] table
    monkeypatch.setattr(mc, "caiman_in_this_interpreter", lambda: False)


# ---------------------------------------------------------------------------- availability
@pytest.mark.parametrize("cls", [mc.CaimanBatch, mc.CaimanOnline])
def test_unavailable_says_how_to_install(no_caiman, cls):
    ok, reason = cls().is_available()
    assert not ok
    assert "python -m bench setup caiman" in reason and "BENCH_PYTHON_CAIMAN_BATCH" in reason
    assert "BENCH_PYTHON_CAIMAN_ONLINE" in reason
    assert "not on PyPI" in reason  # warns against the unrelated PyPI package


def test_configured_interpreter_that_does_not_exist(no_caiman, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_PYTHON_CAIMAN_BATCH", str(tmp_path / "nope" / "python"))
    ok, reason = mc.CaimanBatch().is_available()
    assert not ok and str(tmp_path / "nope" / "python") in reason and "BENCH_PYTHON_CAIMAN_BATCH" in reason


def test_configured_interpreter_without_caiman(no_caiman, monkeypatch, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named caiman' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BENCH_PYTHON_CAIMAN_ONLINE", str(fake))
    ok, reason = mc.CaimanOnline().is_available()
    assert not ok
    assert "cannot import caiman.source_extraction.cnmf" in reason and "No module named caiman" in reason
    assert "bench setup caiman" in reason


def test_a_venv_python_is_probed_even_if_it_links_to_this_interpreter(no_caiman, monkeypatch, tmp_path):
    """A virtual environment's python is a symlink to the base interpreter: compare paths, not targets."""
    link = tmp_path / "venv" / "bin" / "python"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setenv("BENCH_PYTHON_CAIMAN_BATCH", str(link))
    calls = []
    monkeypatch.setattr(mc, "interpreter_has_caiman", lambda python: calls.append(python) or (True, ""))
    assert mc.CaimanBatch().is_available() == (True, "")
    assert calls == [str(link)]


def test_configured_interpreter_in_the_config_file(no_caiman, monkeypatch, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 0\n")  # "imports" CaImAn
    fake.chmod(0o755)
    cfg = tmp_path / "config" / "bench"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(f'[python]\ncaiman-batch = "{fake}"\n')
    assert mc.CaimanBatch().is_available() == (True, "")
    assert not mc.CaimanOnline().is_available()[0]  # configured per method


def test_pypi_impostor_is_not_caiman(monkeypatch, tmp_path):
    """The PyPI package named 'caiman' (a MicroPython tool) has no source_extraction."""
    (tmp_path / "caiman").mkdir()
    (tmp_path / "caiman" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "caiman", raising=False)
    assert not mc.caiman_in_this_interpreter()
    (tmp_path / "caiman" / "source_extraction" / "cnmf").mkdir(parents=True)
    assert mc.caiman_in_this_interpreter()


# ---------------------------------------------------------------------------- parameters
def test_batch_defaults_follow_the_recording(monkeypatch, tmp_path):
    monkeypatch.setenv("CAIMAN_DATA", str(tmp_path))  # no CNN model files
    monkeypatch.setenv("HOME", str(tmp_path))
    p = mc.CaimanBatch().default_params(_recording(um_per_px=1.2, indicator="GCaMP6s", fps=15.0))
    assert p["fr"] == 15.0 and p["decay_time"] == 1.0
    assert p["gSig"] == 5  # 6 um / 1.2 um per px
    assert p["rf"] == 20 and p["stride"] == 8 and p["rf"] > 2 * p["gSig"] + 1
    assert p["K"] == 4  # (41 px * 1.2 um)^2 / (25 um)^2
    assert (p["p"], p["gnb"], p["method_init"]) == (1, 2, "greedy_roi")
    assert p["use_cnn"] is False and p["cnn_model_dir"] == ""
    assert p["n_processes"] == 1

    p = mc.CaimanBatch().default_params(_recording(shape=(80, 90), um_per_px=0.6, indicator=None))
    assert p["decay_time"] == mc.DEFAULT_DECAY_TIME == 0.4 and p["gSig"] == 10
    assert p["rf"] == 0 and p["stride"] == 0  # an 81 px patch would cover the 80 px rows
    assert p["K"] == round(48 * 54 / 625)  # the whole 48x54 um frame


def test_batch_uses_the_cnn_only_when_its_model_files_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("CAIMAN_DATA", str(tmp_path))
    (tmp_path / "model").mkdir()
    for f in ("cnn_model.json", "cnn_model.h5"):
        (tmp_path / "model" / f).write_text("{}")
    p = mc.CaimanBatch().default_params(_recording())
    assert p["use_cnn"] is True and p["cnn_model_dir"] == str(tmp_path / "model")
    (tmp_path / "model" / "cnn_model.h5").unlink()
    assert mc.CaimanBatch().default_params(_recording())["use_cnn"] is False


def test_online_defaults_follow_the_recording():
    p = mc.CaimanOnline().default_params(_recording(n_frames=3000, indicator="gcamp6f"))
    assert (p["fr"], p["decay_time"], p["gSig"]) == (30.0, 0.4, 5)
    assert p["init_batch"] == 200 and p["init_method"] == "bare"
    assert p["K"] == round(120 * 120 / 2500)  # one neuron per 50x50 um of the 120x120 um frame
    assert p["expected_comps"] >= 200
    assert mc.CaimanOnline().default_params(_recording(n_frames=300))["init_batch"] == 60


@pytest.mark.parametrize("cls, spec", [(mc.CaimanBatch, mc.BATCH_PARAMS), (mc.CaimanOnline, mc.ONLINE_PARAMS)])
def test_defaults_and_grid_are_valid(cls, spec):
    rec = _recording(n_frames=1000)
    m = cls()
    p = m.check_params(rec, None)
    assert set(p) == set(spec)
    grid = m.param_grid(rec)
    assert grid and set(grid) <= set(spec)
    for name, values in grid.items():
        for v in values:
            validate(m.name, spec, p, {name: v})


@pytest.mark.parametrize(
    "cls, params, words",
    [
        (mc.CaimanBatch, {"gSig": "5"}, ["caiman-batch", "'gSig'", "number"]),
        (mc.CaimanBatch, {"gSig": 5.5}, ["caiman-batch", "'gSig'", "whole number"]),
        (mc.CaimanBatch, {"K": True}, ["caiman-batch", "'K'", "number"]),
        (mc.CaimanBatch, {"min_SNR": -1}, ["caiman-batch", "'min_SNR'", ">= 0"]),
        (mc.CaimanBatch, {"rval_thr": 1.5}, ["caiman-batch", "'rval_thr'", "<= 1"]),
        (mc.CaimanBatch, {"mask_thr": 0}, ["caiman-batch", "'mask_thr'", "> 0"]),
        (mc.CaimanBatch, {"method_init": "greedy"}, ["caiman-batch", "'method_init'", "greedy_roi"]),
        (mc.CaimanBatch, {"rval_th": 0.8}, ["caiman-batch", "'rval_th'", "rval_thr"]),
        (mc.CaimanBatch, {"rf": 11}, ["caiman-batch", "'rf'", "2*gSig+1"]),
        (mc.CaimanBatch, {"stride": 20}, ["caiman-batch", "'stride'", "< rf"]),
        (mc.CaimanBatch, {"use_cnn": True, "cnn_model_dir": ""}, ["caiman-batch", "'use_cnn'", "cnn_model.h5"]),
        (mc.CaimanBatch, {"gSig": 60}, ["caiman-batch", "'gSig'", "frame"]),
        (mc.CaimanOnline, {"init_batch": 50}, ["caiman-online", "'init_batch'", "50 frames"]),
        (mc.CaimanOnline, {"init_method": "cnn"}, ["caiman-online", "'init_method'", "bare"]),
        (mc.CaimanOnline, {"normalize": 1}, ["caiman-online", "'normalize'", "true or false"]),
        (mc.CaimanOnline, {"fr": 0}, ["caiman-online", "'fr'", "> 0"]),
        (mc.CaimanOnline, {"epochs": 0}, ["caiman-online", "'epochs'", ">= 1"]),
    ],
)
def test_bad_parameters_name_method_and_parameter(cls, params, words):
    with pytest.raises(InputError) as err:
        cls().check_params(_recording(n_frames=50), params)
    for w in words:
        assert w in str(err.value)


def test_segment_validates_before_importing_caiman(no_caiman):
    with pytest.raises(InputError, match="caiman-batch.*'K'"):
        mc.CaimanBatch().segment(_recording(), {"K": 0})


def test_components_become_thresholded_masks_in_fortran_pixel_order():
    """Exercises the mask conversion with a stand-in for CaImAn's threshold_components."""
    import scipy.sparse as sp

    dims = (6, 8)
    img = np.zeros(dims)
    img[1:3, 4:7] = 1.0  # a 2x3 blob away from the diagonal: a C/F mix-up would move it
    a = sp.csc_matrix(np.stack([img.ravel(order="F"), np.zeros(img.size)], axis=1))

    def fake_threshold(a_keep, dims_, medw=None, thr_method="max", maxthr=0.2):
        assert dims_ == dims and thr_method == "max" and maxthr == 0.3 and medw is None
        return a_keep

    masks = mc._components_to_masks(fake_threshold, a, dims, np.array([0, 1]), 0.3)
    assert len(masks) == 1  # the empty component is dropped
    assert np.array_equal(masks.to_dense()[0], img > 0)


# ---------------------------------------------------------------------------- integration
def toy_recording(folder: Path, shape=(64, 64), n_frames=900, n_cells=10, radius=5, fps=30.0, seed=0):
    """Disks with sparse GCaMP6f-like transients, a smooth background and Poisson noise, as a .npy movie."""
    rng = np.random.default_rng(seed)
    h, w = shape
    centres: list[np.ndarray] = []
    while len(centres) < n_cells:
        c = rng.uniform(radius + 2, [h - radius - 3, w - radius - 3])
        if all(np.hypot(*(c - d)) > 2.6 * radius for d in centres):
            centres.append(c)
    rr, cc = np.mgrid[:h, :w]
    d2 = np.stack([(rr - r) ** 2 + (cc - c) ** 2 for r, c in centres])
    gt = d2 <= radius**2
    footprints = np.exp(-d2 / (2 * (0.7 * radius) ** 2)) * gt
    spikes = rng.random((n_cells, n_frames)) < 0.6 / fps
    decay = np.exp(-1.0 / (0.4 * fps))
    traces = np.zeros((n_cells, n_frames))
    for t in range(n_frames):
        traces[:, t] = (traces[:, t - 1] * decay if t else 0.0) + spikes[:, t] * rng.uniform(1.0, 2.0, n_cells)
    background = 40 + 10 * np.exp(-((rr - h / 2) ** 2 + (cc - w / 2) ** 2) / (2 * (h / 2) ** 2))
    rate = background[None] + 60 * np.einsum("nt,nhw->thw", traces, footprints) + 20 * footprints.sum(0)[None]
    np.save(folder / "movie.npy", rng.poisson(rate).astype(np.uint16))
    # um_per_px 1.2: the adapters' 6 um neuron radius is the disks' 5 px.
    gt_masks = Masks.from_dense(gt)
    return Recording("toy", NpyMovie(folder / "movie.npy"), fps, 1.2, {"default": gt_masks}, indicator="GCaMP6f")


@pytest.mark.slow
@pytest.mark.parametrize("name, min_f1", [("caiman-batch", 0.6), ("caiman-online", 0.5)])
def test_finds_the_neurons_of_a_toy_movie_in_a_worker(tmp_path, name, min_f1):
    from bench.metrics import match
    from methods.worker import WorkerLimits, run_in_worker

    method = base.get_method(name)
    ok, reason = method.is_available()
    if not ok:
        pytest.skip(reason)
    rec = toy_recording(tmp_path)
    res = run_in_worker(name, rec, {}, limits=WorkerLimits(timeout_s=600, threads=2), keep_dir=tmp_path / "job")
    assert res.ok, f"{res.status}: {res.message}\n{res.log_tail}"
    seg = res.segmentation
    score = match(rec.ground_truth(), seg.masks, rule="suns")
    print(
        f"\n{name}: F1 {score.f1:.3f} recall {score.recall:.3f} precision {score.precision:.3f} "
        f"({score.tp}/{score.n_gt} GT, {score.n_pred} detected); init {seg.init_s:.1f} s, "
        f"process {seg.process_s:.1f} s, io {seg.io_s:.2f} s, {seg.frames_per_s:.0f} frames/s, "
        f"wall {res.wall_s:.1f} s, peak {res.peak_memory_mb:.0f} MB; {seg.versions}"
    )
    assert score.f1 >= min_f1
    assert seg.masks.shape == rec.frame_shape
    assert seg.versions["caiman"] and seg.versions["numpy"].startswith("1.")
    assert seg.init_s > 0 and seg.process_s > 0 and seg.io_s > 0
    expected_frames = rec.n_frames - (seg.params["init_batch"] if name == "caiman-online" else 0)
    assert seg.n_frames == expected_frames
    assert seg.params["gSig"] == 5 and seg.params["fr"] == 30.0
    # CaImAn's files stayed in the worker's private folders and were removed; nothing landed in HOME.
    job = tmp_path / "job"
    assert not list((job / "caiman").glob("caiman-run-*"))
    assert not (job / "home" / "caiman_data").exists()


@pytest.mark.slow
def test_batch_acceptance_and_mask_cut_reuse_one_cnmf_fit(tmp_path):
    """The thresholds are cheap: one prepare (CNMF), then finishes at several points on its stored metrics."""
    from methods.params import expensive_part
    from methods.worker import WorkerLimits, run_in_worker

    method = base.get_method("caiman-batch")
    ok, reason = method.is_available()
    if not ok:
        pytest.skip(reason)
    rec = toy_recording(tmp_path)
    loose, strict = {"min_SNR": 1.0, "rval_thr": 0.5}, {"min_SNR": 100.0, "rval_thr": 1.0}
    p = [method.check_params(rec, q) for q in (loose, strict, {**loose, "mask_thr": 0.6})]
    assert expensive_part(method.parameters, p[0]) == expensive_part(method.parameters, p[1])
    limits = WorkerLimits(timeout_s=600, threads=2)
    stage = tmp_path / "stage"
    res = run_in_worker("caiman-batch", rec, {}, limits=limits, action="prepare", stage=stage)
    assert res.ok, f"{res.status}: {res.message}\n{res.log_tail}"
    segs = []
    for q in (loose, strict, {**loose, "mask_thr": 0.6}):
        r = run_in_worker("caiman-batch", rec, q, limits=limits, action="finish", stage=stage)
        assert r.ok, f"{r.status}: {r.message}\n{r.log_tail}"
        segs.append(r.segmentation)
    assert len(segs[0].masks) >= 3 and len(segs[1].masks) < len(segs[0].masks)
    # A higher cut keeps fewer pixels of the same components.
    assert len(segs[2].masks) == len(segs[0].masks) and segs[2].masks.areas.sum() < segs[0].masks.areas.sum()
