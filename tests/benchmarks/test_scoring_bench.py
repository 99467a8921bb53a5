"""Scoring speed: 400 x 400 masks of ~150 px on a 512x512 frame (target: < 50 ms on one core).

Run with ``tox -e bench`` or ``pytest tests/benchmarks --benchmark-enable``.
"""

import numpy as np
import pytest

from bench.metrics import match
from datasets.masks import Masks


def _random_masks(rng, n, shape=(512, 512), radius=7):
    centres = rng.uniform(radius + 1, shape[0] - radius - 2, size=(n, 2))
    rr, cc = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = rr**2 + cc**2 <= radius**2  # 149 px
    coords = [(np.round(r + rr[disk]).astype(int), np.round(c + cc[disk]).astype(int)) for r, c in centres]
    return Masks.from_coordinates(coords, shape), centres


@pytest.mark.benchmark
def test_score_400_by_400(benchmark):
    rng = np.random.default_rng(0)
    gt, centres = _random_masks(rng, 400)
    jitter = centres + rng.normal(0, 1.5, centres.shape)
    rr, cc = np.mgrid[-7:8, -7:8]
    disk = rr**2 + cc**2 <= 49
    pred = Masks.from_coordinates(
        [
            (np.clip(np.round(r + rr[disk]), 0, 511).astype(int), np.clip(np.round(c + cc[disk]), 0, 511).astype(int))
            for r, c in jitter
        ],
        (512, 512),
    )
    score = benchmark(match, gt, pred)
    assert 300 < score.tp <= 400
    assert np.median(gt.areas) == pytest.approx(149, abs=2)
