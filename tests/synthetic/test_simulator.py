"""Each modelled feature of the simulator, checked by a measurement on the tiny preset."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.errors import InputError
from datasets.synthetic import INDICATORS, TINY_PARAMS, SimulationParams, simulate
from datasets.synthetic.anatomy import build_field_of_view


def _movie(params, seed):
    frames, dff = [], []
    res = simulate(params, seed, lambda s, f, d: (frames.append(f.copy()), dff.append(d.copy())))
    return res, np.concatenate(frames), np.concatenate(dff, axis=1)


@pytest.fixture(scope="module")
def tiny():
    return _movie(TINY_PARAMS, 3)


def test_same_seed_bit_identical_and_seeds_differ(tiny):
    _, movie, _ = tiny
    _, again, _ = _movie(TINY_PARAMS, 3)
    assert movie.dtype == np.uint16 and movie.shape == (TINY_PARAMS.n_frames, 96, 96)
    assert np.array_equal(movie, again)
    _, other, _ = _movie(TINY_PARAMS, 4)
    assert not np.array_equal(movie, other)


def test_blocks_do_not_change_statistics_and_stream():
    p = TINY_PARAMS.replace(n_frames=230, block_frames=50)
    calls = []
    simulate(p, 1, lambda s, f, d: calls.append((s, f.shape[0])))
    assert calls == [(0, 50), (50, 50), (100, 50), (150, 50), (200, 30)]


def _centre_ratios(p, seed):
    """Footprint at each soma's centroid over its maximum (a dark nucleus: well below 1)."""
    fov = build_field_of_view(p, seed)
    fp = fov.footprints.tocsc()
    ratios = []
    for i in range(fov.n_somata):
        col = fp[:, i].toarray().ravel().reshape(p.height, p.width)
        cy, cx = np.round(fov.masks.centroids[i]).astype(int)
        ratios.append(col[cy, cx] / col.max())
    return fov, np.array(ratios)


def test_soma_size_shape_and_nucleus():
    p = TINY_PARAMS
    fov, ratios = _centre_ratios(p.replace(focal_offset_max=0.0), 5)
    areas_um2 = fov.masks.areas * p.um_per_px**2
    diam = 2 * np.sqrt(areas_um2 / np.pi)
    assert 10 <= np.median(diam) <= 14 and diam.min() > 6 and diam.max() < 20
    # Every soma cut through its middle: the footprint at the centroid is dimmer than the ring around it.
    assert np.median(ratios) < 0.6


def test_focal_depth_shows_the_nucleus_only_where_the_plane_crosses_it():
    p = TINY_PARAMS.replace(soma_density_per_mm2=6000.0)
    fov, ratios = _centre_ratios(p, 5)
    dz = fov.focal_offsets
    assert dz.shape == (fov.n_somata,) and np.abs(dz).max() <= p.focal_offset_max
    crossed = np.abs(dz) < 0.5 * p.nucleus_fraction  # near the middle: a clear dark nucleus
    missed = np.abs(dz) > 1.15 * p.nucleus_fraction  # beyond the largest nucleus: none
    assert crossed.sum() >= 3 and missed.sum() >= 3
    assert np.median(ratios[crossed]) < 0.6 and ratios[missed].min() > 0.8
    # The offsets come from their own stream: masks and placement are those of the middle cut.
    flat, _ = _centre_ratios(p.replace(focal_offset_max=0.0), 5)
    assert np.array_equal(flat.masks.to_dense(), fov.masks.to_dense()) and not flat.focal_offsets.any()


def test_overlapping_pairs_exist():
    fov = build_field_of_view(SimulationParams(height=128, width=128), 2)
    assert fov.overlapping().mean() > 0.1


def test_silent_neurons_never_fire_and_never_gt(tiny):
    res, _, dff = tiny
    silent = res.silent
    assert silent.any()
    assert all(res.spike_times[i].size == 0 for i in np.flatnonzero(silent))
    assert np.all(dff[silent] == 0)
    assert not np.any(res.active & silent)


def test_active_neurons_reach_dprime_threshold(tiny):
    res, _, _ = tiny
    assert res.active.any()
    assert np.all(res.dprime_peak[res.active] >= res.threshold)
    assert abs(SimulationParams().threshold - 3.6539) < 1e-3


def test_rates_lognormal_bursty():
    p = SimulationParams(height=128, width=128, n_frames=3000, block_frames=500)
    res = simulate(p, 11)
    rates = res.firing_rates[~res.silent]
    assert 1.0 < rates.mean() < 6.0
    assert np.median(rates) < rates.mean()  # skewed: many sparse firers
    # Bursts: some frames hold more than one spike.
    assert (
        max(np.max(np.diff(np.flatnonzero(np.diff(t) > 0.02), prepend=0)) if t.size > 2 else 0 for t in res.spike_times)
        >= 1
    )


def _isolated_spike_kinetics(indicator: str, step_factor: float = 1.0):
    """(half-decay s, time to peak s) of every isolated single spike in a noiseless dF/F trace.

    One soma, rare single spikes (no bursts), one calcium step size, 100 Hz,
    driven through ActivityModel.block exactly as a movie is generated.
    """
    from datasets.synthetic.activity import ActivityModel

    p = SimulationParams(
        height=32,
        width=32,
        indicator=indicator,
        soma_density_per_mm2=1.0 / (32 * 32 * 0.78**2 * 1e-6),  # exactly one soma
        silent_fraction=0.0,
        oof_density_per_mm2=0,
        dendrite_density_per_mm2=0,
        n_vessels=0,
        fps=100.0,
        bin_fps=6.0,
        n_frames=12000,
        block_frames=1000,
        rate_mean_hz=0.25,
        rate_log_sd=0.0,
        burst_extra_spikes=0.0,
        calcium_log_sd=0.0,
    )
    fov = build_field_of_view(p, 0)
    assert fov.n_somata == 1 and fov.n_units == 1
    m = ActivityModel(p, 0, fov)
    m.calcium_step = m.calcium_step * step_factor  # a neuron with more or less calcium per spike
    blocks = [m.block(b, b * p.block_frames, p.block_frames) for b in range(p.n_frames // p.block_frames)]
    dff = np.concatenate([blk.dff[0] for blk in blocks]).astype(np.float64)
    spikes = np.flatnonzero(np.concatenate([blk.spike_frames[0] for blk in blocks]))
    halves, peaks, amps = [], [], []
    gap = int(3.0 * p.fps)  # isolated: no other spike 3 s before or after
    for k, s in enumerate(spikes):
        if (k and s - spikes[k - 1] < gap) or (k + 1 < len(spikes) and spikes[k + 1] - s < gap) or s + gap > dff.size:
            continue
        seg = dff[s : s + gap]
        pk = int(np.argmax(seg))
        halves.append(np.flatnonzero(seg[pk:] < 0.5 * seg[pk])[0] / p.fps)
        # A spike at a random time inside frame s shows from frame s + 1.
        peaks.append(pk / p.fps)
        amps.append(seg[pk])
    assert len(halves) >= 5
    return np.array(halves), np.array(peaks), np.array(amps)


@pytest.mark.parametrize("indicator, published_half_s", [("GCaMP6f", 0.14), ("GCaMP6s", 0.55)])
def test_indicator_single_spike_half_decay(indicator, published_half_s):
    """Noiseless single-spike dF/F decays to half in the published t_1/2 (Chen et al. 2013), +-25 %."""
    halves, peaks, amps = _isolated_spike_kinetics(indicator)
    assert np.all(np.abs(halves / published_half_s - 1) <= 0.25), halves
    assert abs(np.median(halves) / published_half_s - 1) <= 0.1
    if indicator == "GCaMP6f":
        assert np.all((peaks >= 0.02) & (peaks <= 0.08)), peaks  # ~45-50 ms rise to the peak
    else:
        assert np.median(peaks) > 0.1  # GCaMP6s rises more slowly
    # One action potential gives a dF/F of some 10-50 % (GCaMP6 in vivo: ~20 %).
    assert np.all((amps > 0.05) & (amps < 1.0)), amps


@pytest.mark.parametrize("indicator, published_half_s", [("GCaMP6f", 0.14), ("GCaMP6s", 0.55)])
def test_indicator_half_decay_holds_for_other_spike_sizes(indicator, published_half_s):
    """Neurons differ in calcium per spike; their t_1/2 still stays within +-25 % of the published value."""
    for factor in (0.3, 3.0):
        halves, _, _ = _isolated_spike_kinetics(indicator, factor)
        assert np.all(np.abs(halves / published_half_s - 1) <= 0.25), (factor, halves)


def test_indicator_saturates_for_bursts():
    from datasets.synthetic.activity import _hill_dff

    for ind in INDICATORS.values():
        top = ind.dynamic_range - 1
        fifty = _hill_dff(ind, np.array(ind.resting_nM + 50 * 20.0))
        many = _hill_dff(ind, np.array(ind.resting_nM + 200 * 20.0))
        assert fifty < many < top  # bounded by F_max
        assert many < 1.5 * fifty  # saturated: 200 spikes give little more than 50


def test_vignetting_bleaching_and_vessels(tiny):
    p = TINY_PARAMS
    res, movie, _ = tiny
    mean = movie.astype(float).mean(0) - p.adc_offset
    h, w = mean.shape
    # Background pixels only (no soma, no vessel): the comparison is not swayed by content.
    bg = ~res.fov.vessels & ~res.fov.masks.union()
    yy, xx = np.mgrid[:h, :w]
    central = bg & (yy >= h // 3) & (yy < 2 * h // 3) & (xx >= w // 3) & (xx < 2 * w // 3)
    corner = bg & (np.minimum(yy, h - 1 - yy) < 16) & (np.minimum(xx, w - 1 - xx) < 16)
    centre, corners = mean[central].mean(), mean[corner]
    assert centre / np.median(corners) > 1.2
    first = movie[:100].astype(float).mean() - p.adc_offset
    bleached = simulate(p.replace(bleach_per_min=0.5), 3, lambda s, f, d: None if s else None)
    assert bleached is not None
    frames = []
    simulate(p.replace(bleach_per_min=0.5), 3, lambda s, f, d: frames.append(f))
    mv = np.concatenate(frames).astype(float) - p.adc_offset
    assert mv[-100:].mean() < 0.97 * mv[:100].mean()
    assert first > 0
    # Vessels are dark.
    fov = res.fov
    if fov.vessels.any():
        assert mean[fov.vessels].mean() < 0.6 * mean[~fov.vessels].mean()


def test_noise_is_photon_limited():
    p = TINY_PARAMS.replace(
        soma_density_per_mm2=0,
        oof_density_per_mm2=0,
        dendrite_density_per_mm2=0,
        n_vessels=0,
        n_neuropil_components=0,
        bleach_per_min=0.0,
        photons_per_px=20.0,
        read_noise_photons=0.0,
    )
    frames = []
    simulate(p, 0, lambda s, f, d: frames.append(f))
    mv = (np.concatenate(frames).astype(float) - p.adc_offset) / p.adc_gain
    mean, var = mv.mean(0).ravel(), mv.var(0).ravel()
    slope = np.polyfit(mean, var, 1)[0]
    assert 0.8 < slope < 1.2  # Poisson: variance equals mean in photons


def test_neuropil_is_correlated_and_slow():
    p = TINY_PARAMS.replace(
        soma_density_per_mm2=0,
        oof_density_per_mm2=0,
        dendrite_density_per_mm2=0,
        n_vessels=0,
        neuropil_modulation=0.3,
        photons_per_px=50.0,
        n_frames=900,
    )
    frames = []
    simulate(p, 0, lambda s, f, d: frames.append(f))
    mv = np.concatenate(frames).astype(float)
    a, b = mv[:, 40:44, 40:44].mean((1, 2)), mv[:, 44:48, 44:48].mean((1, 2))
    assert np.corrcoef(a, b)[0, 1] > 0.5


def test_motion_off_by_default_and_optional():
    assert SimulationParams().motion_um == 0
    p = TINY_PARAMS.replace(motion_um=3.0, n_frames=200)
    frames = []
    simulate(p, 0, lambda s, f, d: frames.append(f))
    assert np.concatenate(frames).shape[0] == 200


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", -5),
        ("n_frames", 0),
        ("um_per_px", 0.0),
        ("um_per_px", -1.0),
        ("soma_radius_um", -2.0),
        ("silent_fraction", 1.5),
        ("indicator", "GCaMP99"),
        ("fps", 0.0),
    ],
)
def test_bad_parameters_name_the_parameter(field, value):
    with pytest.raises(InputError, match=field):
        SimulationParams(**{field: value})


def test_density_too_high_raises():
    p = SimulationParams(height=64, width=64, soma_density_per_mm2=60000.0)
    with pytest.raises(InputError, match="soma_density_per_mm2.*valid range"):
        simulate(p, 0)


@pytest.mark.parametrize(
    "changes, name, valid",
    [
        ({"photons_per_px": -1.0}, "photons_per_px", "> 0"),
        ({"adc_gain": -3.0}, "adc_gain", "> 0"),
        ({"read_noise_photons": -0.5}, "read_noise_photons", ">= 0"),
        ({"border_left_px": 300.0}, "border_left_px", "0 to 240 px"),
        ({"border_left_px": 100.0, "border_right_px": 150.0}, "border_left_px", "0 to 90 px"),
        ({"border_top_px": -1.0}, "border_top_px", ">= 0"),
        ({"border_ragged_px": 100.0}, "border_ragged_px", "0 to 32 px"),
        ({"motion_um": 500.0}, "motion_um", "0 to 49.92 um"),
        ({"focal_offset_max": 1.5}, "focal_offset_max", "[0, 1]"),
    ],
)
def test_bad_calibration_parameters_name_parameter_and_range(changes, name, valid):
    with pytest.raises(InputError) as err:
        SimulationParams(**changes)
    msg = str(err.value)
    assert name in msg and "valid" in msg and valid in msg, msg


def test_borders_dark_ragged_and_motion_bit_identical():
    """Registration borders collect no photons; with motion and borders the same seed gives the same movie."""
    p = TINY_PARAMS.replace(
        n_frames=200, motion_um=1.0, border_left_px=10.0, border_right_px=6.0, border_ragged_px=2.0, block_frames=60
    )
    _, movie, _ = _movie(p, 5)
    _, again, _ = _movie(p, 5)
    assert np.array_equal(movie, again)
    col = movie.mean(axis=(0, 1))
    interior = np.median(col[30:66])
    # Dark (offset and read noise only, clipped at 0): below a quarter of the interior, the note's border rule.
    assert col[:4].max() < 0.25 * interior and col[-2:].max() < 0.25 * interior
    assert col[20] > 0.5 * interior
    # Ragged: the edge column differs from row to row.
    edge = (movie.mean(axis=0) > p.adc_offset + 0.25 * (interior - p.adc_offset)).argmax(axis=1)
    assert np.ptp(edge) >= 2 and 4 <= np.median(edge) <= 16


def test_photon_budget_sets_sd_over_mean():
    """At about one photon per pixel per frame the movie is shot-noise dominated: SD ~ mean (offset removed)."""
    p = TINY_PARAMS.replace(n_frames=200, photons_per_px=1.0, adc_offset=0.0, read_noise_photons=0.0)
    _, movie, _ = _movie(p, 1)
    m = movie.astype(float)
    ratio = np.median(m.std(0) / m.mean(0))
    assert 0.8 < ratio < 1.3, ratio
