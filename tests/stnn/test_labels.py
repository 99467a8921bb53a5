"""Temporal labels: threshold, template, traces, spike detection and label maps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from datasets.errors import InputError
from stnn.labels import (
    detect_events,
    dprime_threshold,
    exponential_template,
    extract_traces,
    label_map,
    label_volume,
    moving_baseline,
    neuropil_masks,
    temporal_labels,
)

SPIKES = [60, 170, 300, 420]


def _transient_trace(t=540, fs=6.0, tau=0.2, amp=25.0, noise=1.0, seed=0, spikes=SPIKES):
    rng = np.random.default_rng(seed)
    x = 200.0 + noise * rng.standard_normal(t)
    j = np.arange(t)
    for s in spikes:
        x += np.where(j >= s, amp * np.exp(-(j - s) / (tau * fs)), 0.0)
    return x


def test_dprime_threshold_abo():
    assert dprime_threshold(6.0, 2.9, 0.035) == pytest.approx(3.6539, abs=1e-4)
    with pytest.raises(InputError):
        dprime_threshold(6.0, 7.0, 0.035)


def test_exponential_template():
    np.testing.assert_allclose(
        exponential_template(0.2, 6.0), [0.15, 0.0652, 0.0283, 0.0123, 0.0054, 0.0023], atol=5e-5
    )
    assert exponential_template(0.8, 30.0).size == 30  # 1 s long


def test_moving_baseline_is_reflected_median_and_population_sd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    base, sd = moving_baseline(x, 4)
    pad = np.concatenate([x[:4][::-1], x, x[-4:][::-1]])  # edge sample repeated
    windows = np.lib.stride_tricks.sliding_window_view(pad, 9)
    np.testing.assert_allclose(base, np.median(windows, axis=1))
    np.testing.assert_allclose(sd, windows.std(axis=1), atol=1e-10)


def test_injected_transients_are_detected_at_their_frames():
    x = _transient_trace()
    det = detect_events(x[None], fs=6.0, tau=0.2)
    assert det.spikes[0].tolist() == SPIKES
    assert det.thresholds[0] == pytest.approx(dprime_threshold(6.0, 2.9, 0.035))
    expected = np.zeros(x.size, dtype=bool)
    for s in SPIKES:
        expected[s : s + 3] = True  # spike frame + 0.5 s at 6 Hz
    np.testing.assert_array_equal(det.activity[0], expected)


def test_flat_noise_trace_gets_an_event_by_lowering_the_threshold():
    rng = np.random.default_rng(5)
    x = 100.0 + rng.standard_normal((2, 400))
    det = detect_events(x, fs=6.0)
    thr0 = dprime_threshold(6.0, 2.9, 0.035)
    for k in range(2):
        assert det.activity[k].sum() >= 1
        assert det.thresholds[k] < thr0
        steps = (thr0 - det.thresholds[k]) / 0.2
        assert steps == pytest.approx(round(steps), abs=1e-9)
    # With a floor at the initial threshold nothing is labelled.
    floored = detect_events(x, fs=6.0, floor=thr0)
    assert not floored.activity.any()


def test_given_spike_frames_override_detection():
    x = np.vstack([_transient_trace(seed=1), _transient_trace(seed=2)])
    det = detect_events(x, spike_frames=[None, [10.4, 538]])
    assert det.spikes[0].tolist() == SPIKES
    assert det.spikes[1].tolist() == [10, 538]
    assert np.flatnonzero(det.activity[1]).tolist() == [10, 11, 12, 538, 539]


def _masks(h=30, w=30):
    m = np.zeros((3, h, w), dtype=bool)
    m[0, 10:13, 10:13] = True
    m[1, 10:13, 14:16] = True  # touching neighbour, excluded from 0's neuropil
    m[2, 25:28, 2:5] = True
    return m


def test_neuropil_disk_minus_all_masks():
    masks = _masks()
    npil = neuropil_masks(masks, um_per_px=1.0, radius_um=5.0).toarray().reshape(3, 30, 30)
    yy, xx = np.mgrid[:30, :30]
    # Mask 0: centroid (11, 11), bbox side 3 -> radius 5 + round(1.5) = 7.
    disk = (yy - 11) ** 2 + (xx - 11) ** 2 <= 49
    np.testing.assert_array_equal(npil[0], disk & ~masks.any(0))
    assert not (npil & masks.any(0)).any()


def test_traces_formula_and_streaming():
    rng = np.random.default_rng(0)
    masks = _masks()
    movie = rng.uniform(0, 100, size=(37, 30, 30))
    npil = neuropil_masks(masks, um_per_px=1.0).toarray().reshape(3, 30, 30)
    tr = extract_traces(movie, masks, um_per_px=1.0, chunk=5)
    for k in range(3):
        area = masks[k].sum()
        ref = (movie[:, masks[k]].mean(1) - 0.75 * movie[:, npil[k]].mean(1)) * area
        np.testing.assert_allclose(tr[k], ref, rtol=1e-10)
    sparse = sp.csr_matrix(masks.reshape(3, -1))
    np.testing.assert_allclose(extract_traces(movie, sparse, (30, 30), um_per_px=1.0, chunk=100), tr)
    with pytest.raises(InputError):
        extract_traces(movie[:, :20], masks)


def test_temporal_labels_end_to_end():
    t, h, w = 360, 20, 20
    rng = np.random.default_rng(1)
    movie = 50 + rng.standard_normal((t, h, w)) * 0.5
    mask = np.zeros((1, h, w), dtype=bool)
    mask[0, 8:12, 8:12] = True
    spikes = [40, 150, 260]
    j = np.arange(t)
    sig = sum(np.where(j >= s, 8 * np.exp(-(j - s) / 1.2), 0.0) for s in spikes)
    movie[:, mask[0]] += sig[:, None]
    act, det = temporal_labels(movie, mask, fs=6.0, um_per_px=0.78, chunk=50, return_details=True)
    assert act.shape == (1, t) and act.dtype == bool
    assert det.spikes[0].tolist() == spikes


def test_label_map_is_union_of_active_masks():
    masks = _masks()
    activity = np.zeros((3, 10), dtype=bool)
    activity[0, 2] = True
    activity[1, 8] = True
    activity[2, 4:6] = True
    np.testing.assert_array_equal(label_map(activity, masks, 0, 5), masks[0] | masks[2])
    np.testing.assert_array_equal(label_map(activity, masks, 6, 10), masks[1])
    assert not label_map(activity, masks, 6, 8).any()
    sparse = sp.csr_matrix(masks.reshape(3, -1))
    np.testing.assert_array_equal(label_map(activity, sparse, 0, 10, frame_shape=(30, 30)), masks.any(0))
    vol = label_volume(activity, masks, 0, 10)
    assert vol.shape == (10, 30, 30)
    np.testing.assert_array_equal(vol[2], masks[0])
    np.testing.assert_array_equal(vol[4], masks[2])
    assert not vol[0].any()
    np.testing.assert_array_equal(vol.max(axis=0), label_map(activity, masks))
