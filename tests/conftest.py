"""Shared test helpers: real fixture paths and small mask factories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.masks import Masks
from methods import base

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"
PLUGIN = Path(__file__).resolve().parent / "plugin_example"


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


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """pip-install the example plugin into a private folder and put it on the path."""
    site = tmp_path_factory.mktemp("plugin-site")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(PLUGIN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(site))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), old) if p)
    base._entry_points.cache_clear()
    yield site
    sys.path.remove(str(site))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old
    base._entry_points.cache_clear()


@pytest.fixture
def postprocess_configs(monkeypatch) -> list:
    """Records the PostprocessConfig of every ``stnn.infer.segment`` call, in order."""
    import stnn.infer

    used: list = []
    real = stnn.infer.postprocess
    monkeypatch.setattr(stnn.infer, "postprocess", lambda maps, cfg: used.append(cfg) or real(maps, cfg))
    return used
