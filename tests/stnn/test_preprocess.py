"""Streaming pre-processing: crop, binning, homomorphic filter, SD normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from datasets.errors import InputError
from stnn.preprocess import (
    PreprocessConfig,
    RunningMoments,
    bin_frames,
    crop_slices,
    gaussian_blur,
    gaussian_kernel1d,
    homomorphic_filter,
    preprocess,
    reflect_indices,
    whiten,
)


def _movie(t=23, h=20, w=18, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    illum = 50 + 3 * xx + 2 * yy  # non-uniform illumination
    return (illum[None] * rng.uniform(0.5, 1.5, size=(t, h, w))).astype(np.uint16)


def _reference(movie, cfg):
    """In-memory NumPy/SciPy reference of the whole pipeline."""
    top, bottom, left, right = cfg.crop
    v = movie[:, top : movie.shape[1] - bottom, left : movie.shape[2] - right].astype(np.float64)
    n = v.shape[0] // cfg.bin_factor
    v = v[: n * cfg.bin_factor].reshape(n, cfg.bin_factor, *v.shape[1:]).sum(1)
    radius = int(np.ceil(cfg.truncate * cfg.sigma_px))
    lg = np.log(v + 1)
    blur = np.stack([ndi.gaussian_filter(f, cfg.sigma_px, mode="reflect", radius=radius) for f in lg])
    out = np.exp(lg - blur)
    return (out - cfg.norm_offset) / out.std(ddof=1)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 3.5, 30.0])
def test_gaussian_blur_matches_scipy_reflect(sigma):
    rng = np.random.default_rng(1)
    frames = rng.uniform(1, 10, size=(2, 17, 23))
    out = gaussian_blur(torch.from_numpy(frames.astype(np.float32)), sigma, truncate=2.0).numpy()
    radius = int(np.ceil(2.0 * sigma))
    ref = np.stack([ndi.gaussian_filter(f, sigma, mode="reflect", radius=radius) for f in frames])
    np.testing.assert_allclose(out, ref, rtol=1e-4)


def test_kernel_size_follows_matlab():
    assert gaussian_kernel1d(30.0).size == 121  # 2 * ceil(2 * 30) + 1
    assert gaussian_kernel1d(1.2).size == 7  # ceil(2.4) = 3 (SciPy would use 2)
    assert gaussian_kernel1d(1.2).sum() == pytest.approx(1.0)


def test_reflect_indices_repeat_edge():
    assert reflect_indices(4, 3).tolist() == [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    # Pads longer than the axis continue the symmetric extension periodically.
    assert reflect_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]


def test_homomorphic_flattens_illumination():
    yy, xx = np.mgrid[:32, :32]
    # Multiplicative illumination log-linear in x, y times a small texture.
    texture = 1 + 0.2 * ((xx + yy) % 2)
    frame = torch.tensor((100 * np.exp(0.05 * xx + 0.02 * yy) * texture - 1)[None], dtype=torch.float32)
    out = homomorphic_filter(frame, sigma=2.0)[0].numpy()
    # Away from the borders (kernel radius 4) only the texture is left, relative to its geometric mean.
    inner = out[4:-4, 4:-4]
    ratio = inner / (texture[4:-4, 4:-4] / np.sqrt(1.2))
    np.testing.assert_allclose(ratio, 1.0, atol=0.02)
    assert inner.std() / inner.mean() < 0.12


def test_bin_frames_sums_and_drops_remainder():
    frames = np.arange(7 * 2 * 2, dtype=np.uint16).reshape(7, 2, 2)
    out = bin_frames(frames, 3)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[0], frames[:3].sum(0))
    np.testing.assert_array_equal(out[1], frames[3:6].sum(0))
    assert bin_frames(frames, 1).shape == (7, 2, 2)


def test_crop_slices_and_config_derivation():
    cfg = PreprocessConfig.for_recording(30.0, 0.78)
    assert cfg.crop == (12, 13, 12, 13)  # MATLAB 13:end-13 -> 487 px from 512
    assert cfg.bin_factor == 5
    assert cfg.sigma_px == 30.0
    rows, cols = crop_slices((512, 512), cfg.crop)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (12, 499, 12, 499)
    sym = PreprocessConfig.for_recording(7.0, 1.0, border_um=(4.0, 24.0), target_fps=3.0, crop_convention="symmetric")
    assert sym.crop == (4, 4, 24, 24) and sym.bin_factor == 2
    assert PreprocessConfig.for_recording(2.0, 1.0, target_fps=6.0).bin_factor == 1
    with pytest.raises(InputError):
        PreprocessConfig.for_recording(-1.0, 0.78)


@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_streaming_matches_in_memory_reference(chunk):
    movie = _movie()
    cfg = PreprocessConfig(crop=(1, 2, 2, 1), bin_factor=3, sigma_px=2.5)
    out = preprocess(movie, cfg, device="cpu", chunk=chunk)
    ref = _reference(movie, cfg)
    assert out.shape == (7, 17, 15) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-5)
    assert out.std(ddof=1) == pytest.approx(1.0, rel=1e-4)


def test_h5py_and_memmap_inputs(tmp_path):
    h5py = pytest.importorskip("h5py")
    movie = _movie(t=12, h=14, w=16)
    cfg = PreprocessConfig(crop=(1, 1, 1, 1), bin_factor=2, sigma_px=1.5, n_frames=11)
    ref = preprocess(movie[:11], cfg, device="cpu")
    path = tmp_path / "movie.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=movie, chunks=(2, 14, 16))
    with h5py.File(path, "r") as f:
        out = preprocess(f["data"], cfg, device="cpu", chunk=2)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    mm = np.memmap(tmp_path / "movie.raw", dtype=np.uint16, mode="w+", shape=movie.shape)
    mm[:] = movie
    mm.flush()
    ro = np.memmap(tmp_path / "movie.raw", dtype=np.uint16, mode="r", shape=movie.shape)
    dest = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=ref.shape)
    res = preprocess(ro, cfg, device="cpu", chunk=3, out=dest)
    assert res is dest
    np.testing.assert_allclose(np.asarray(dest), ref, rtol=1e-6)


def test_fixed_sd_and_no_filter():
    movie = _movie(t=6, h=8, w=8).astype(np.float32)
    cfg = PreprocessConfig(crop=(0, 0, 0, 0), bin_factor=1, homomorphic=False, norm_sd=2.0, norm_offset=1.0)
    np.testing.assert_allclose(preprocess(movie, cfg, device="cpu"), (movie - 1.0) / 2.0, rtol=1e-6)


def test_errors():
    cfg = PreprocessConfig(crop=(1, 1, 1, 1), bin_factor=2, sigma_px=1.0)
    with pytest.raises(InputError, match="3-D"):
        preprocess(np.ones((8, 8)), cfg)
    with pytest.raises(InputError, match="fewer than one temporal bin"):
        preprocess(np.ones((1, 8, 8)), cfg)
    with pytest.raises(InputError, match="too small"):
        preprocess(np.ones((4, 2, 8)), cfg)
    bad = np.ones((4, 8, 8), dtype=np.float32)
    bad[3, 2, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        preprocess(bad, cfg, device="cpu")
    with pytest.raises(InputError, match="zero variance"):
        preprocess(np.full((4, 8, 8), 7.0), cfg, device="cpu")
    with pytest.raises(InputError, match="<= -1"):
        preprocess(np.full((4, 8, 8), -3.0), cfg, device="cpu")
    with pytest.raises(ValueError):  # InputError is a ValueError
        PreprocessConfig(bin_factor=0)


def test_running_moments_and_whiten():
    rng = np.random.default_rng(3)
    data = rng.normal(5.0, 2.0, size=1000)
    mom = RunningMoments()
    for part in np.array_split(data, 7):
        mom.update(part if len(part) % 2 else torch.from_numpy(part))
    assert mom.std(ddof=1) == pytest.approx(data.std(ddof=1), rel=1e-12)
    assert mom.mean == pytest.approx(data.mean(), rel=1e-12)
    assert mom.minimum == data.min() and mom.finite()
    mom.update(torch.tensor([np.inf]))
    assert not mom.finite()
    w = whiten(data.astype(np.float32))
    assert w.dtype == np.float32
    assert w.mean() == pytest.approx(0.0, abs=1e-5) and w.std() == pytest.approx(1.0, rel=1e-5)
    wt = whiten(torch.from_numpy(data))
    assert float(wt.std(unbiased=False)) == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_array_equal(whiten(np.full(5, 3.0)), np.zeros(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    movie = _movie()
    cfg = PreprocessConfig(crop=(1, 2, 2, 1), bin_factor=3, sigma_px=2.5)
    np.testing.assert_allclose(
        preprocess(movie, cfg, device="cuda"), preprocess(movie, cfg, device="cpu"), rtol=1e-4, atol=1e-5
    )
