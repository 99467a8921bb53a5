"""Acceptance statistics of the default ``synthetic`` data set (one generation shared by all checks).

Targets (the issue): for EVERY recording, the active-neuron density and the
median active-mask area lie inside the range of the real ABO 275 um ground
truth (235-355 neurons on 487x487 px at 0.78 um/px; median areas 156-188 px),
at least 15 % of the active neurons overlap another soma (but far from the
90 % of a purely random placement; the real GT: 41-46 % of GT masks overlap
another GT mask), at least 20 % of the somata are silent; the PSNR spreads
over the regime where methods differ: some active neurons below 5 (at least
5 % over the data set and some in most recordings), some above 20.

Issue 17 (calibrating the photon budget to a real movie, with burstier firing
so that Suite2p behaves on it as on real data) lowered the share below PSNR 5
from the earlier 25 % to 10-15 %; the test asks for what issue 17 keeps.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from datasets.synthetic import SyntheticDefault

pytestmark = pytest.mark.slow

ABO_UM2 = (487 * 0.78) ** 2
DENSITY = (235 / ABO_UM2, 355 / ABO_UM2)
AREA_UM2 = (156 * 0.78**2, 188 * 0.78**2)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    ds = SyntheticDefault().load(tmp_path_factory.mktemp("synthetic"))
    out = []
    for r in ds:
        with h5py.File(r.provenance["truth_file"], "r") as f:
            truth = {k: f[k][()] for k in ("active", "silent", "psnr", "overlapping")}
        out.append((r, r.provenance["stats"], truth))
    return out


def test_ten_recordings_with_splits(recordings):
    assert len(recordings) == 10
    assert sorted({r.split for r, _, _ in recordings}) == ["test", "train"]


def test_every_density_inside_the_real_range_with_margin(recordings):
    dens = np.array([s["active_density_per_um2"] for _, s, _ in recordings])
    lo, hi = DENSITY
    margin = 0.03 * (hi - lo)
    assert np.all((dens >= lo + margin) & (dens <= hi - margin)), dens
    assert abs(np.median(dens) - 0.0019) < 0.0003  # the paper's 0.0019 per um^2


def test_every_median_area_inside_the_real_range(recordings):
    area = np.array([s["median_active_area_um2"] for _, s, _ in recordings])
    assert np.all((area >= AREA_UM2[0]) & (area <= AREA_UM2[1])), area


def test_overlap_and_silent_shares(recordings):
    overlap = np.array([s["active_overlap_share"] for _, s, _ in recordings])
    assert np.all(overlap >= 0.15), overlap
    assert np.median(overlap) <= 0.7, overlap  # not the ~0.9 of random placement at this density
    assert all(s["silent_share"] >= 0.20 for _, s, _ in recordings)
    for _, s, t in recordings:
        assert s["n_silent"] == int(t["silent"].sum()) and not np.any(t["active"] & t["silent"])


def test_psnr_covers_the_regime_where_methods_differ(recordings):
    ps = [t["psnr"][t["active"].astype(bool)] for _, _, t in recordings]
    pooled = np.concatenate(ps)
    assert np.mean(pooled < 5) >= 0.05
    assert sum(np.mean(p < 5) > 0 for p in ps) >= 0.8 * len(ps), [round(float(np.mean(p < 5)), 3) for p in ps]
    assert np.mean(pooled > 20) > 0.02
