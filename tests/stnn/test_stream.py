"""Streaming STNeuroNet: per-frame filter, incremental fusion, agreement with batch, memory and bad input."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.registry import data_root
from stnn.fusion import IncrementalFusion
from stnn.infer import segment, window_starts
from stnn.model import STNeuroNet
from stnn.postprocess import PostprocessConfig, finalize
from stnn.preprocess import homomorphic_filter
from stnn.stream import FrameFilter, StreamConfig, StreamSegmenter, segment_stream
from tests.conftest import disk_masks

# The user's data root, read at import (the autouse fixture later points BENCH_DATA at a temporary folder).
DATA = Path(os.environ.get("STNN_TEST_DATA") or data_root())


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny networks gain nothing from a thread pool, and on a loaded machine its synchronisation is 50x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return STNeuroNet().eval()


def _movie(t, h=16, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(100, size=(t, h, w)).astype(np.uint16)


def _segmenter(model, **config):
    cfg = StreamConfig(**{"window": 8, **config})
    # float32: a random network's decisions near the threshold flip with bfloat16 rounding.
    return StreamSegmenter(model, fps=6.0, um_per_px=1.0, device="cpu", threshold=0.5, min_area=3, config=cfg,
                           precision="fp32")


def _stream(model, frames, config=None):
    seg = _segmenter(model, **(config or {}))
    ups = seg.push_many(frames)
    res = seg.finish()
    return seg, ups + res.updates, res


def test_frame_filter_equals_the_batch_homomorphic_filter():
    rng = np.random.default_rng(1)
    frame = torch.from_numpy(rng.gamma(2.0, 50.0, size=(40, 53)).astype(np.float32))
    ref = homomorphic_filter(frame[None], 5.0, 2.0)[0]
    got = FrameFilter(frame.shape, 5.0, 2.0, torch.device("cpu"))(frame)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=2e-5)


def _window_labels(rng, n_windows, shape=(64, 64)):
    """Label images of jittered disks (some neurons missing in some windows, one drifting pair)."""
    centres = [(12, 12), (12, 40), (40, 12), (44, 44), (30, 30), (30, 36)]
    out = []
    for _ in range(n_windows):
        keep = [c for c in centres if rng.random() > 0.25]
        jit = [(r + rng.integers(-2, 3), c + rng.integers(-2, 3)) for r, c in keep]
        radii = rng.integers(3, 6, size=len(jit))
        masks = Masks.from_coordinates(
            [(m.coordinates(0)) for m in (disk_masks([p], int(rad), shape) for p, rad in zip(jit, radii))], shape
        )
        out.append(masks.to_label_image())
    return out


@pytest.mark.parametrize("seed", range(6))
def test_incremental_fusion_equals_batch_finalize(seed):
    rng = np.random.default_rng(seed)
    labels = _window_labels(rng, 5)
    cfg = PostprocessConfig(threshold=0.5, min_area=20, um_per_px=1.0, merge_distance_um=4.0)
    expected = finalize(labels, cfg)
    fusion = IncrementalFusion((64, 64), cfg.merge_distance_px, cfg.encompass_ratio, cfg.min_area)
    kinds = set()
    for w, lab in enumerate(labels):
        m = Masks.from_label_image(lab)
        ups = fusion.add_window(m.subset(np.flatnonzero(m.areas > cfg.min_area)), w, float(w), time.time())
        kinds |= {u.kind for u in ups}
        # Every window's neurons are what batch gives on the windows so far.
        assert fusion.masks == finalize(labels[: w + 1], cfg)
    assert fusion.masks == expected
    assert "new" in kinds
    assert fusion.forgotten == 0
    assert len(fusion.neuron_ids) == len(set(fusion.neuron_ids))


def test_fusion_memory_is_bounded_by_max_members():
    rng = np.random.default_rng(0)
    fusion = IncrementalFusion((64, 64), 4.0, 0.75, 20, max_members=3)
    for w, lab in enumerate(_window_labels(rng, 12)):
        m = Masks.from_label_image(lab)
        fusion.add_window(m.subset(np.flatnonzero(m.areas > 20)), w, float(w), 0.0)
    assert max(len(g.members) for g in fusion.groups.values()) <= 3
    assert fusion.forgotten > 0
    assert sum(g.count for g in fusion.groups.values()) == fusion.forgotten + sum(
        len(g.members) for g in fusion.groups.values()
    )


def test_merge_updates_report_the_absorbed_ids():
    shape = (40, 40)
    fusion = IncrementalFusion(shape, 4.0, 0.75, 5)
    # Window 0: two neurons 6 px apart; window 1: one mask between them links both -> one merged neuron.
    fusion.add_window(disk_masks([(20, 14), (20, 20)], 2, shape), 0, 1.0, 0.0)
    ups = fusion.add_window(disk_masks([(20, 17)], 2, shape), 1, 2.0, 0.0)
    merged = [u for u in ups if u.kind == "merged"]
    assert len(merged) == 1 and merged[0].neuron_id == 0 and merged[0].merged_ids == (1,)
    assert merged[0].t_s == 2.0 and merged[0].mask is not None and merged[0].area > 0


def test_stream_matches_batch_with_random_weights(model):
    mov = _movie(44, seed=3)  # 6 Hz, windows of 8: starts 0, 8, ..., 32 and a last one ending at 44
    seg, ups, res = _stream(model, mov)
    assert res.stats.windows == len(window_starts(44, 8)) == 6
    assert res.stats.binned_frames == 44 and res.stats.raw_frames == 44
    ref = segment(mov, model, fps=6.0, um_per_px=1.0, device="cpu", threshold=0.5, min_area=3, batch_frames=8,
                  precision="fp32")
    # The last window uses the whole stream's statistics, as batch; earlier ones a running estimate.
    assert res.masks.shape == ref.masks.shape == (16, 16)
    from bench.metrics import match

    assert ref.masks.n > 0 and match(ref.masks, res.masks).f1 >= 0.95
    assert all(u.t_s > 0 and u.wall_time > 0 for u in ups)
    assert {u.window for u in ups} <= set(range(res.stats.windows))


def test_stream_binning_and_the_last_partial_bin(model):
    s = StreamSegmenter(model, fps=30.0, um_per_px=1.0, device="cpu", config=StreamConfig(window=8))
    s.push_many(_movie(5 * 20 + 3))
    res = s.finish()
    assert res.stats.binned_frames == 20 and res.stats.leftover_raw == 3
    assert res.stats.windows == len(window_starts(20, 8))
    assert res.stats.recording_s == pytest.approx(103 / 30.0)


def test_sliding_stride_runs_more_windows(model):
    _, _, res = _stream(model, _movie(40), config={"stride": 4})
    assert res.stats.windows == len(window_starts(40, 8, 4)) == 9


def test_iterator_api_and_snapshots(model):
    seg = _segmenter(model, keep_snapshots=True)
    updates = list(segment_stream(iter(_movie(30)), seg))
    res = seg.finish()
    assert len(res.snapshots) == res.stats.windows == 4
    assert [t for t, _ in res.snapshots] == sorted(t for t, _ in res.snapshots)
    assert res.snapshots[-1][1] == res.masks
    # Replaying the updates gives the final neurons.
    state: dict[int, Masks] = {}
    for u in updates:
        for gone in u.merged_ids:
            state.pop(gone, None)
        if u.kind == "removed":
            state.pop(u.neuron_id, None)
        else:
            state[u.neuron_id] = u.mask
    assert sum(m.n for m in state.values()) == res.masks.n


def test_memory_does_not_grow_with_stream_length(model):
    seg = _segmenter(model, history=4)
    n = 160
    frames = _movie(9 * n, seed=9)
    # Warm-up past max_members (32 windows), so that every bounded structure has reached its size.
    seg.push_many(frames[: 4 * n])
    tracemalloc.start()
    try:
        seg.push_many(frames[4 * n : 5 * n])
        gc.collect()
        a, objects_a = tracemalloc.get_traced_memory()[0], len(gc.get_objects())
        seg.push_many(frames[5 * n : 9 * n])
        gc.collect()
        b, objects_b = tracemalloc.get_traced_memory()[0], len(gc.get_objects())
    finally:
        tracemalloc.stop()
    assert seg.stats.windows == 9 * n // 8
    # N, then 4N frames (60 more windows): no more live Python objects (one mask set or record kept per
    # window would add hundreds), and little more allocated memory (CPython's free lists, which tracemalloc
    # counts as allocated, fill slowly: about 40 KiB here).
    assert objects_b - objects_a < 50, (objects_a, objects_b)
    assert b - a < 96 * 1024, (a, b)
    assert max(len(g.members) for g in seg._fusion.groups.values()) <= seg.config.max_members


# -- bad input -------------------------------------------------------------------------------


def test_changing_shape_or_dtype_is_refused_and_the_stream_goes_on(model):
    seg = StreamSegmenter(model, fps=6.0, um_per_px=1.0, device="cpu", config=StreamConfig(window=8))
    mov = _movie(10)
    seg.push_many(mov[:5])
    with pytest.raises(InputError, match="16x16"):
        seg.push(np.zeros((16, 17), np.uint16))
    with pytest.raises(InputError, match="dtype"):
        seg.push(mov[5].astype(np.float32))
    with pytest.raises(InputError, match="2-D"):
        seg.push(mov[5:7])
    seg.push_many(mov[5:])
    assert seg.finish().stats.raw_frames == 10


def test_nan_frames_repeat_the_previous_frame(model):
    mov = _movie(20).astype(np.float32)
    bad = mov.copy()
    bad[7] = np.nan
    bad[8, 3, 3] = np.inf
    fixed = mov.copy()
    fixed[7] = fixed[6]
    fixed[8] = fixed[6]
    _, _, res_bad = _stream(model, bad)
    _, _, res_fixed = _stream(model, fixed)
    assert res_bad.stats.bad_frames == 2 and res_bad.stats.raw_frames == 20
    assert res_bad.masks == res_fixed.masks
    with pytest.raises(InputError, match="NaN"):
        _stream(model, bad, config={"on_bad_frame": "error"})


def test_negative_values_are_refused(model):
    seg = StreamSegmenter(model, fps=6.0, um_per_px=1.0, device="cpu", config=StreamConfig(window=8))
    with pytest.raises(InputError, match="<= -1"):
        seg.push(np.full((16, 16), -5.0, np.float32))


def test_stream_shorter_than_one_window_says_so(model, caplog):
    _, _, res = _stream(model, _movie(5))
    assert res.stats.short_stream and res.stats.windows == 1
    assert isinstance(res.masks, Masks) and res.masks.shape == (16, 16)
    assert "fewer than one 8-frame window" in caplog.text
    s = StreamSegmenter(model, fps=30.0, um_per_px=1.0, device="cpu", config=StreamConfig(window=8))
    s.push_many(_movie(3))
    res = s.finish()
    assert res.stats.short_stream and res.stats.windows == 0 and res.masks.n == 0


class _SlowNet(torch.nn.Module):
    """A real network that takes at least ``delay`` seconds per window (a stand-in for a slow device)."""

    def __init__(self, net, delay):
        super().__init__()
        self.net, self.delay = net, delay

    def forward(self, x):
        time.sleep(self.delay)
        return self.net(x)


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_frames_faster_than_processing_are_bounded(model, policy):
    cfg = StreamConfig(window=8, threaded=True, max_queue=6, policy=policy)
    seg = StreamSegmenter(_SlowNet(model, 0.2), fps=6.0, um_per_px=1.0, device="cpu", threshold=0.5, config=cfg)
    seg.push_many(_movie(48))
    res = seg.finish()
    st = res.stats
    assert st.raw_frames == 48  # dropped frames are repeats of the previous one: times stay right
    assert st.max_queued <= 6
    if policy == "block":
        assert st.blocked_pushes > 0 and st.blocked_s > 0 and st.dropped_frames == 0
    else:
        assert st.dropped_frames > 0 and st.blocked_pushes == 0
    assert st.windows == len(window_starts(48, 8))


def test_worker_errors_reach_the_caller(model):
    cfg = StreamConfig(window=8, threaded=True, on_bad_frame="error")
    seg = StreamSegmenter(model, fps=6.0, um_per_px=1.0, device="cpu", config=cfg)
    seg.push(np.ones((16, 16), np.float32))
    seg.push(np.full((16, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        seg.finish()


def test_bad_configuration():
    with pytest.raises(InputError):
        StreamConfig(policy="wait")
    with pytest.raises(InputError):
        StreamConfig(window=4)
    with pytest.raises(InputError):
        StreamSegmenter(STNeuroNet(), fps=0.0, um_per_px=1.0)


# -- the shipped weights on real (simulated) data ------------------------------------------


def _tiny_movie():
    path = DATA / "synthetic-tiny" / "tiny00" / "movie.h5"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set BENCH_DATA or STNN_TEST_DATA to a data root with synthetic-tiny)")
    from datasets.movies import HDF5Movie

    return HDF5Movie(path)


@pytest.mark.slow
def test_final_masks_agree_with_batch_on_shipped_weights():
    import stnn
    from bench.metrics import match

    movie = _tiny_movie()
    net, meta = stnn.pretrained("synthetic", device="cpu", return_metadata=True)
    # 600 raw frames at 30 Hz = 120 binned: 40-frame windows give 3 windows with 3 running estimates.
    ref = segment(movie, net, fps=30.0, um_per_px=0.78, device="cpu", metadata=meta, batch_frames=40)
    seg = StreamSegmenter(
        net, fps=30.0, um_per_px=0.78, device="cpu", metadata=meta, config=StreamConfig(window=40, threaded=True)
    )
    for block in movie.chunks(64):
        seg.push_many(block)
    res = seg.finish()
    assert res.stats.windows == 3
    assert ref.masks.n > 0
    assert match(ref.masks, res.masks).f1 >= 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_gpu_stream_matches_cpu(model):
    mov = _movie(30)
    _, _, cpu = _stream(model, mov)
    seg = StreamSegmenter(
        model,
        fps=6.0,
        um_per_px=1.0,
        device="cuda",
        threshold=0.5,
        min_area=3,
        amp=False,
        config=StreamConfig(window=8),
    )
    seg.push_many(mov)
    gpu = seg.finish()
    from bench.metrics import match

    assert gpu.stats.windows == cpu.stats.windows
    assert cpu.masks.n == 0 or match(cpu.masks, gpu.masks).f1 >= 0.95


# -- command line ----------------------------------------------------------------------------


def test_stream_command_prints_latency_and_real_time_factor(model, tmp_path, capsys):
    import json

    from stnn.cli import main
    from stnn.weights import WeightsMetadata, save_weights

    weights = save_weights(model, tmp_path / "w.pt", WeightsMetadata(threshold=0.5, min_area=3.0, um_per_px=1.0))
    np.save(tmp_path / "m.npy", _movie(40))
    args = ["stream", str(tmp_path / "m.npy"), "--fps", "6", "--um-per-px", "1", "--weights", str(weights)]
    assert main([*args, "--window", "8", "--replay-fps", "0", "--json", "--out", str(tmp_path / "o.npz")]) == 0
    fig = json.loads(capsys.readouterr().out)
    assert fig["windows"] == 5 and fig["raw_frames"] == 40 and fig["real_time_factor"] > 0
    assert fig["latency_p95_ms"] >= fig["latency_median_ms"] > 0
    assert Masks.load(tmp_path / "o.npz").n == fig["n_masks"]
    assert main([*args, "--window", "8", "--replay-fps", "200", "--max-frames", "20"]) == 0
    out = capsys.readouterr().out
    assert "latency per window: median" in out and "real-time factor" in out
    assert main([*args, "--window", "4"]) == 2
    assert "window must be >= 8" in capsys.readouterr().err
