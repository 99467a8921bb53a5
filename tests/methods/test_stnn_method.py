"""The stnn method adapter: availability, parameters, and a run through the worker."""

import h5py
import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.movies import HDF5Movie
from datasets.records import Recording
from methods.base import get_method
from methods.stnn import STNeuroNetMethod
from methods.worker import run_in_worker
from stnn.model import STNeuroNet
from stnn.weights import WeightsMetadata, save_weights
from tests.conftest import disk_masks


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    return save_weights(STNeuroNet(), path, WeightsMetadata(threshold=0.5, min_area=5.0, um_per_px=1.0, fps=6.0))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    gt = disk_masks([(8, 8), (20, 20)], 3, (32, 32))
    rng = np.random.default_rng(0)
    frames = rng.poisson(100 + 50 * gt.to_dense().sum(0)[None] * (rng.random((60, 1, 1)) > 0.7)).astype(np.uint16)
    with h5py.File(d / "m.h5", "w") as f:
        f["data"] = frames
    return Recording("r", HDF5Movie(d / "m.h5"), 6.0, 1.0, {"default": gt})


def test_unavailable_without_weights_says_how_to_train():
    m = STNeuroNetMethod()
    m.weights = "no-such-weights"
    ok, reason = m.is_available()
    assert not ok and "python -m stnn train" in reason


def test_registered_and_parameters_checked(recording, weights):
    m = get_method("stnn")
    assert m.name == "stnn" and "threshold" in m.param_grid(recording)
    with pytest.raises(InputError, match="method 'stnn': parameter 'threshold' must be <= 1"):
        m.segment(recording, {"weights": str(weights), "threshold": 2.0})
    with pytest.raises(InputError, match="method 'stnn' has no parameter"):
        m.segment(recording, {"weights": str(weights), "thresold": 0.5})


def test_runs_in_a_worker_with_given_weights(recording, weights):
    res = run_in_worker("stnn", recording, {"weights": str(weights), "threshold": 0.5, "min_area_um2": 4.0})
    assert res.ok, res.message + res.log_tail
    seg = res.segmentation
    assert seg.masks.shape == (32, 32)
    assert seg.probability_maps is not None and seg.probability_maps.shape[-2:] == (32, 32)
    assert seg.init_s > 0 and seg.process_s > 0 and seg.n_frames == 60


def test_weights_tuned_values_reach_postprocessing(recording, weights, postprocess_configs):
    # Regression: the adapter loaded the network itself and segment() then fell back to the
    # default threshold (0.98) instead of the weights' tuned one.
    get_method("stnn").segment(recording, {"weights": str(weights)})
    assert (postprocess_configs[0].threshold, postprocess_configs[0].min_area) == (0.5, 5.0)
