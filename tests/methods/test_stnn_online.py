"""The stnn-online adapter: streaming STNeuroNet as a method, with snapshots for F1 against time."""

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.movies import ArrayMovie
from datasets.records import Recording
from methods.base import Segmentation
from methods.stnn_online import STNeuroNetOnline
from stnn.infer import window_starts
from stnn.model import STNeuroNet
from stnn.weights import WeightsMetadata, save_weights
from tests.conftest import disk_masks


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    meta = WeightsMetadata(threshold=0.5, min_area=5.0, um_per_px=1.0, fps=6.0, extra={"frames": 8})
    return save_weights(STNeuroNet(), path, meta)


def _recording(n=60):
    gt = disk_masks([(8, 8), (20, 20)], 3, (32, 32))
    rng = np.random.default_rng(0)
    frames = rng.poisson(100 + 50 * gt.to_dense().sum(0)[None] * (rng.random((n, 1, 1)) > 0.7)).astype(np.uint16)
    return Recording("r", ArrayMovie(frames), 6.0, 1.0, {"default": gt})


def test_registered_as_an_entry_point():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."bench.methods"]')[1].split("\n[")[0]
    assert 'stnn-online = "methods.stnn_online:STNeuroNetOnline"' in section


def test_segment_returns_final_masks_and_snapshots(weights):
    m = STNeuroNetOnline()
    rec = _recording()
    seg = m.segment(rec, {"weights": str(weights), "stride": 4})
    assert isinstance(seg, Segmentation) and seg.masks.shape == (32, 32)
    assert len(seg.snapshots) == len(window_starts(60, 8, 4))
    times = [t for t, _ in seg.snapshots]
    assert times == sorted(times) and times[-1] == pytest.approx(10.0)  # 60 frames at 6 Hz
    assert seg.snapshots[-1][1] == seg.masks
    assert seg.process_s > 0 and seg.n_frames == 60 and seg.params["stride"] == 4
    with pytest.raises(InputError, match="stride"):
        m.segment(rec, {"weights": str(weights), "stride": 0})
    assert not m.learns and not m.staged and not m.in_default_run
