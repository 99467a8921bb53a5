"""Training (loss, a few iterations, checkpoint + resume) and post-processing tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie
from datasets.records import Dataset, Recording
from stnn.train import TrainConfig, dice_loss, latest_checkpoint, train
from stnn.tune import DEFAULT_THRESHOLDS, default_min_areas, f1_score, match_count, tune


def blinking_recording(
    name="tiny", t=60, shape=(16, 16), centres=((4, 4), (4, 11), (11, 8)), radius=2.5, seed=0, split="train"
):
    """A 6 Hz movie of a few disks that blink (GCaMP6s-like decays) on Poisson noise."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    disks = np.stack([(rr - r) ** 2 + (cc - c) ** 2 <= radius**2 for r, c in centres])
    act = np.zeros((len(centres), t))
    for k in range(len(centres)):
        x = 0.0
        spikes = rng.random(t) < 0.08
        spikes[5 + 7 * k] = True  # every neuron fires at least once
        for i in range(t):
            x = x * np.exp(-1 / 4.8) + (3.0 if spikes[i] else 0.0)
            act[k, i] = x
    movie = rng.poisson(100.0 + 20 * disks.sum(0) + 80.0 * np.einsum("kt,khw->thw", act, disks)).astype(np.uint16)
    return Recording(
        name, ArrayMovie(movie), 6.0, 1.0, {"default": Masks.from_dense(disks)}, indicator="GCaMP6s", split=split
    )


FAST = dict(crop=(16, 16), frames=16, batch=1, checkpoint_every=1, validate_every=0, tune_at_end=False)


def test_dice_loss():
    target = torch.zeros(2, 8, 8)
    target[:, 2:5, 2:5] = 1
    perfect = torch.stack([(1 - target) * 50, target * 50], dim=1)
    assert float(dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-4)
    flat = torch.zeros(2, 2, 8, 8)  # p = 0.5 everywhere
    p, n, pos = 0.5, 128, 18
    expected = 1 - 0.5 * (2 * p * (n - pos) / (n * p * p + (n - pos)) + 2 * p * pos / (n * p * p + pos))
    assert float(dice_loss(flat, target)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_train_checkpoint_and_resume(tmp_path):
    rec = blinking_recording()
    straight = train([rec], tmp_path / "a", iterations=2, progress=False, device="cpu", **FAST)
    assert len(straight.history["loss"]) == 2
    assert latest_checkpoint(tmp_path / "a").name == "ckpt-00000002.pt"

    first = train([rec], tmp_path / "b", iterations=1, progress=False, device="cpu", **FAST)
    assert (tmp_path / "b" / "cache" / "tiny" / "video.npy").is_file()
    assert (tmp_path / "b" / "cache" / "tiny" / "labels.npy").is_file()
    assert len(first.history["loss"]) == 1
    resumed = train([rec], tmp_path / "b", iterations=2, resume=True, progress=False, device="cpu", **FAST)
    ckpt = torch.load(latest_checkpoint(tmp_path / "b"), weights_only=False)
    assert ckpt["iteration"] == 2
    assert len(resumed.history["loss"]) == 2
    # Model, optimiser and RNG states are restored: resuming equals training straight through.
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-5)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k
    meta = json.loads((tmp_path / "b" / "weights.json").read_text())
    assert meta["format"] == "stnn-weights-v1" and meta["iterations"] == 2


@pytest.mark.slow
def test_train_validates_and_tunes(tmp_path):
    data = Dataset("toy", [blinking_recording(), blinking_recording("held", seed=1, split="test")])
    res = train(
        data,
        tmp_path / "run",
        iterations=2,
        progress=False,
        device="cpu",
        validate_on="test",
        **{**FAST, "validate_every": 2, "tune_at_end": True},
    )
    assert res.history["val_iteration"] == [2] and 0.0 <= res.history["val_f1"][0] <= 1.0
    assert res.metadata.threshold in DEFAULT_THRESHOLDS
    assert res.metadata.min_area in default_min_areas(1.0)
    assert res.metadata.validation_f1 is not None
    assert res.metadata.extra["train_recordings"] == ["tiny"]


def test_train_config_errors():
    with pytest.raises(InputError):
        TrainConfig(crop=(4, 4))
    with pytest.raises(InputError):
        TrainConfig(rotations=(5,))
    with pytest.raises(InputError, match="logit_leak"):
        TrainConfig(logit_leak=1.5)
    with pytest.raises(InputError):
        train([], "/tmp/never", iterations=1)


# -- tuning -------------------------------------------------------------------------------

RR, CC = np.mgrid[:48, :48]


def _disk(r, c, radius=4):
    return (RR - r) ** 2 + (CC - c) ** 2 <= radius**2


def test_tune_picks_the_known_best_pair():
    centres = [(10, 10), (10, 30), (30, 10), (30, 30)]
    gt = Masks.from_dense(np.stack([_disk(r, c) for r, c in centres]))  # 49 px each
    maps = np.zeros((2, 48, 48))
    for r, c in centres:
        maps[:, _disk(r, c)] = 0.9
    maps[:, 42:45, 2:6] = 0.9  # 12-px speck: removed by min_area >= 12
    maps[:, _disk(40, 40, 5)] = 0.6  # a false neuron below 0.6 < threshold
    best = tune({"a": maps}, {"a": gt}, um_per_px=0.78)
    threshold, min_area, f1 = best
    assert f1 == pytest.approx(1.0)
    # Ties go to the highest threshold (0.9) and the largest min area below 49 px (40).
    assert threshold == pytest.approx(0.9) and min_area == pytest.approx(40.0)
    assert best.table.shape == (len(DEFAULT_THRESHOLDS), 7, 1)
    # With a low threshold and a small area the false detections cost precision.
    assert best.table[0, 0, 0] == pytest.approx(2 * 4 / (4 + 5))  # the 12-px speck is already gone


def test_default_grids():
    assert DEFAULT_THRESHOLDS[0] == 0.5 and 0.95 in DEFAULT_THRESHOLDS and DEFAULT_THRESHOLDS[-1] == 0.98
    assert 1.0 not in DEFAULT_THRESHOLDS and len(DEFAULT_THRESHOLDS) == 12
    assert default_min_areas(0.78) == (15, 20, 25, 40, 55, 70, 85)
    assert default_min_areas(1.56)[0] == pytest.approx(15 / 4)


def test_matcher_rules():
    a = Masks.from_dense(np.stack([_disk(10, 10), _disk(30, 30)]))
    inside = Masks.from_dense(np.stack([_disk(10, 10, 2)]))  # IoU < 0.5 but contained: a match
    assert match_count(a, inside) == 1
    shifted = Masks.from_dense(np.stack([_disk(10, 14)]))  # IoU ~ 0.3: no match
    assert match_count(a, shifted) == 0
    assert f1_score(a, a) == (1.0, 1.0, 1.0)
    assert f1_score(a, Masks.empty((48, 48)))[2] == 0.0


def test_matcher_agrees_with_bench_metrics():
    bench_metrics = pytest.importorskip("bench.metrics")  # the test may import bench; stnn may not
    rng = np.random.default_rng(3)
    gt = Masks.from_dense(np.stack([_disk(*rng.integers(6, 42, 2), rng.integers(3, 6)) for _ in range(12)]))
    pred = Masks.from_dense(np.stack([_disk(*rng.integers(6, 42, 2), rng.integers(2, 6)) for _ in range(12)]))
    assert match_count(gt, pred) == bench_metrics.match(gt, pred, rule="stnn").tp
    assert match_count(gt, gt) == bench_metrics.match(gt, gt, rule="stnn").tp
