"""End-to-end inference on tiny movies with a randomly initialised network, and the weights format."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie
from datasets.records import Recording
from stnn.infer import DiskFrames, output_blocks, segment, window_starts
from stnn.model import STNeuroNet
from stnn.weights import WeightsMetadata, pretrained, resolve, save_weights


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return STNeuroNet().eval()


def _movie(t, h=8, w=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(100, size=(t, h, w)).astype(np.uint16)


def test_window_tiling():
    assert window_starts(240, 120) == [0, 120]
    assert window_starts(250, 120) == [0, 120, 130]  # final window ends at T (no dropped map)
    assert window_starts(360, 120) == [0, 120, 240]  # T % 120 == 0: no extra window
    assert window_starts(50, 120) == [0]
    assert window_starts(250, 120, 60) == [0, 60, 120, 130]
    assert len(output_blocks(250, 120)) == 3


def test_segment_shapes_and_timings(model):
    # 6 Hz movie (no binning) with 250 frames: ceil(250 / 120) = 3 maps.
    res = segment(_movie(250), model, fps=6.0, um_per_px=1.0, device="cpu", threshold=0.5, min_area=5)
    masks, maps, tm = res  # unpacks as a tuple
    assert isinstance(masks, Masks) and masks.shape == (8, 12)
    assert maps.shape == (3, 8, 12) and maps.dtype == np.float32
    assert np.all((maps >= 0) & (maps <= 1))
    assert tm.n_frames == 250 and tm.n_windows == 3 and tm.n_maps == 3
    assert tm.network_s > 0 and tm.preprocess_s > 0 and tm.fps > 0 and tm.init_s >= 0


def test_segment_bins_to_6hz_and_batches(model):
    # 30 Hz, 5 * 130 frames -> 130 binned frames -> 2 maps, with both windows in one forward batch.
    res = segment(_movie(650), model, fps=30.0, um_per_px=1.0, device="cpu", windows_per_batch=4)
    assert res.timings.n_frames == 130
    assert res.prob_maps.shape[0] == 2


def test_last_window_map_matches_a_direct_forward(model):
    mov = _movie(30)
    res = segment(
        mov, model, fps=6.0, um_per_px=1.0, device="cpu", windows_per_batch=1, batch_frames=24, precision="fp32"
    )
    assert res.timings.precision == "fp32"
    # Recompute the final window [6, 30) by hand from the same pre-processing.
    from stnn.infer import default_preprocess_config
    from stnn.preprocess import preprocess, whiten

    pre = whiten(preprocess(mov, default_preprocess_config(6.0, 1.0), device="cpu").astype(np.float64))
    x = torch.from_numpy(pre[6:30].astype(np.float32))[None, None]
    np.testing.assert_allclose(res.prob_maps[1], model.predict_proba(x)[0].numpy(), atol=2e-4)


def test_overlap_modes(model):
    mov = _movie(50, 8, 8)
    for mode in ("mean", "median"):
        # 24-frame windows every 12 frames: starts 0, 12, 24, 26; maps of blocks [0, 24), [24, 48), [26, 50).
        res = segment(mov, model, fps=6.0, um_per_px=1.0, device="cpu", overlap=mode, batch_frames=24)
        assert res.prob_maps.shape == (3, 8, 8)
        assert res.timings.n_windows == 4
    with pytest.raises(InputError):
        segment(mov, model, fps=6.0, um_per_px=1.0, device="cpu", overlap="max")


def test_short_movie_is_padded_with_a_warning(model, caplog):
    with caplog.at_level(logging.WARNING, logger="stnn.infer"):
        res = segment(_movie(40), model, fps=6.0, um_per_px=1.0, device="cpu")
    assert res.prob_maps.shape == (1, 8, 12)
    assert "fewer than one" in caplog.text


def test_recording_input_and_border_crop(model):
    rec = Recording("r", ArrayMovie(_movie(130, 24, 24)), 6.0, 1.0)
    from stnn.infer import default_preprocess_config

    cfg = default_preprocess_config(6.0, 1.0, border_um=3.0)  # removes 2 px before, 3 after
    res = segment(rec, model, device="cpu", preprocess_config=cfg, threshold=0.0, min_area=0)
    assert res.masks.shape == (24, 24) and res.prob_maps.shape == (2, 24, 24)
    assert np.all(res.prob_maps[:, :2] == 0) and np.all(res.prob_maps[:, -3:] == 0)
    assert res.masks.n >= 1 and not res.masks.union()[:2].any()


@pytest.mark.parametrize(
    "movie, kwargs, message",
    [
        (np.ones((16, 16)), {}, "3-D"),
        (np.full((130, 16, 16), 7.0), {}, "zero variance"),
        (np.where(np.arange(130)[:, None, None] == 5, np.nan, 1.0) + np.zeros((1, 16, 16)), {}, "non-finite"),
        (np.random.default_rng(0).random((130, 6, 16)), {}, "minimum"),
        (np.random.default_rng(0).random((3, 16, 16)), {"fps": 30.0}, "fewer than one temporal bin"),
        (np.random.default_rng(0).random((130, 16, 16)), {"fps": None}, "frame rate"),
    ],
)
def test_bad_inputs(model, movie, kwargs, message):
    args = {"fps": 6.0, "um_per_px": 1.0, "device": "cpu"}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        segment(movie, model, **args)


@pytest.mark.parametrize("norm", [{}, {"norm_sd": 0.05, "norm_offset": 0.3}, {"normalize": False}])
def test_prepared_windows_equal_the_whitened_normalised_movie(tmp_path, norm):
    # One pass: the file holds the un-normalised movie, the whitening statistics absorb the normalisation.
    from dataclasses import replace

    from stnn.infer import _load_windows, default_preprocess_config, prepare_movie
    from stnn.preprocess import preprocess, whiten

    mov = _movie(40, 16, 20)
    cfg = replace(default_preprocess_config(6.0, 1.0), **norm)
    prep = prepare_movie(mov, cfg, tmp_path, device="cpu")
    ref = whiten(preprocess(mov, cfg, device="cpu").astype(np.float64))
    windows = _load_windows(prep, [0, 16], 24).numpy()
    np.testing.assert_allclose(windows[0, 0], ref[0:24], atol=1e-4)
    np.testing.assert_allclose(windows[1, 0], ref[16:40], atol=1e-4)
    # The padding value (the movie's minimum) whitens to the whitened movie's minimum.
    assert (prep.minimum - prep.mean) / prep.std == pytest.approx(float(ref.min()), abs=1e-4)


def test_disk_frames_roundtrip(tmp_path):
    d = DiskFrames(tmp_path / "x.f32", (5, 3, 4))
    d[1:3] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(d[1:3], np.arange(24).reshape(2, 3, 4))
    assert d[0:5].shape == (5, 3, 4) and np.all(d[0] == 0)


def test_weights_save_and_pretrained_roundtrip(tmp_path, model, postprocess_configs):
    meta = WeightsMetadata(command="test", threshold=0.9, min_area=30.0, um_per_px=0.78, validation_f1=0.5)
    path = save_weights(model, tmp_path / "tiny.pt", meta)
    assert path.with_suffix(".json").is_file()
    loaded, meta2 = pretrained(path, return_metadata=True)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert meta2.threshold == 0.9 and meta2.name == "tiny"
    assert meta2.min_area_for(1.56) == pytest.approx(7.5)
    assert not loaded.training
    # segment() takes the tuned threshold / min area from the metadata, for a weights path
    # and for a loaded network handed over with its metadata; a bare network gets the defaults.
    used = postprocess_configs
    res = segment(_movie(120), str(path), fps=6.0, um_per_px=0.78, device="cpu")
    assert res.prob_maps.shape == (1, 8, 12)
    segment(_movie(120), loaded, fps=6.0, um_per_px=0.78, device="cpu", metadata=meta2)
    segment(_movie(120), loaded, fps=6.0, um_per_px=0.78, device="cpu")
    assert [(c.threshold, c.min_area) for c in used[:2]] == [(0.9, 30.0), (0.9, 30.0)]
    assert used[2].threshold != 0.9 and used[2].min_area != 30.0


def test_missing_weights_message():
    with pytest.raises(InputError, match="no shipped weights 'nope'.*python -m stnn train"):
        resolve("nope")
    with pytest.raises(InputError, match="not found"):
        pretrained("/no/such/file.pt")
