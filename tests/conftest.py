"""Shared test helpers: real fixture paths and small mask factories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.masks import Masks

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures beside the checkout; tests using it skip when it is absent."""
    if not (FIXTURES / "abo275").is_dir():
        pytest.skip("../shared/fixtures is not present")
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Never let a test write into the user's real data root."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path_factory.getbasetemp() / "bench-data"))


def disk_masks(centres, radius, shape) -> Masks:
    """Disks of the given radius at (row, col) centres."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    stack = (
        np.stack([(rr - r) ** 2 + (cc - c) ** 2 <= radius**2 for r, c in centres])
        if len(centres)
        else np.zeros((0, *shape), bool)
    )
    return Masks.from_dense(stack)
