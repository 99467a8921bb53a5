"""Seconds per training iteration of STNeuroNet (``python -m stnn perf --train``).

Times the real training step of :func:`stnn.train.train` (forward, Dice
loss, backward, Adam) at the training crop and batch on random whitened
crops drawn, augmented and prefetched by the trainer's own sampler from an
in-memory recording, in each precision asked for. Precisions are timed in
alternating rounds and the fastest round of each is kept, so that load from
other processes biases neither.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from datasets.errors import InputError
from datasets.masks import Masks

from .precision import precision_name, resolve_precision
from .train import PreparedRecording, TrainConfig, _model_for_training, _Prefetcher, _Sampler, _train_step
from .weights import hardware_description

__all__ = ["TrainPerfResult", "perf_train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainPerfResult:
    """Seconds per iteration per precision (fastest of the rounds) and the sampler's cost."""

    crop: tuple[int, int]
    frames: int
    batch: int
    device: str
    hardware: str
    threads: int
    channels_last: bool
    iterations: int
    rounds: int
    s_per_iteration: dict[str, float] = field(default_factory=dict)
    cpu_s_per_iteration: dict[str, float] = field(default_factory=dict)
    sample_s_per_batch: float = float("nan")

    def as_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    def summary(self) -> str:
        """Lines for people."""
        lines = [
            f"STNeuroNet training step, {self.batch} x {self.crop[0]}x{self.crop[1]} px x {self.frames} frames on "
            f"{self.hardware} ({self.threads} threads, channels_last={self.channels_last})"
        ]
        base = self.s_per_iteration.get("fp32")
        for name, sec in self.s_per_iteration.items():
            ratio = f" ({base / sec:.2f}x fp32)" if base and name != "fp32" else ""
            cpu = self.cpu_s_per_iteration.get(name, float("nan"))
            lines.append(f"  {name:4s}: {sec:6.3f} s/iteration{ratio}; CPU {cpu:.3f} s/iteration")
        lines.append(f"  drawing a batch: {self.sample_s_per_batch:.3f} s (prefetched in a background thread)")
        return "\n".join(lines)


def _random_recording(config: TrainConfig, seed: int) -> PreparedRecording:
    """A whitened random movie twice the crop with blinking disks as labels."""
    rng = np.random.default_rng(seed)
    t, h, w = 2 * config.frames, 2 * config.crop[0], 2 * config.crop[1]
    video = rng.standard_normal((t, h, w), dtype=np.float32)
    rr, cc = np.mgrid[:h, :w]
    centres = rng.uniform(0, 1, size=(max(h * w // 400, 1), 2)) * (h, w)
    disks = np.stack([(rr - r) ** 2 + (cc - c) ** 2 <= 25 for r, c in centres])
    active = rng.random((len(disks), t)) < 0.1
    labels = np.einsum("kt,khw->thw", active.astype(np.uint8), disks.astype(np.uint8)).clip(0, 1).astype(np.uint8)
    return PreparedRecording("random", video, labels, 0.0, 1.0, Masks.from_dense(disks), slice(0, h), slice(0, w))


def perf_train(
    crop: tuple[int, int] = (64, 64),
    frames: int = 120,
    batch: int = 3,
    device: torch.device | str | None = None,
    *,
    precisions: tuple[str, ...] = ("fp32", "auto"),
    iterations: int = 3,
    rounds: int = 2,
    channels_last: bool = False,
    seed: int = 0,
) -> TrainPerfResult:
    """Time training iterations in each of ``precisions``.

    Parameters
    ----------
    crop, frames, batch
        Training crop (rows, cols), binned frames and crops per iteration
        (default: the shipped weights' 64 x 64 x 120, batch 3).
    device : torch.device or str, optional
        Default: CUDA if available.
    precisions : tuple of str
        ``'auto'``, ``'fp32'`` or ``'bf16'`` each; resolved on ``device``
        (:mod:`stnn.precision`) and timed once per distinct resolved dtype.
    iterations : int
        Timed iterations per round (after one untimed warm-up iteration).
    rounds : int
        Alternating rounds over the precisions; the fastest is reported.
    channels_last : bool
        Channels-last 3-D convolution weights (:class:`~stnn.train.TrainConfig`).
    seed : int
        Data and model seed.

    Returns
    -------
    TrainPerfResult
    """
    if iterations < 1 or rounds < 1:
        raise InputError(f"iterations and rounds must be >= 1, got {iterations}, {rounds}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available", hint="use --device cpu")
    cfg = TrainConfig(crop=tuple(crop), frames=frames, batch=batch, seed=seed, channels_last=channels_last)
    dtypes: dict[str, torch.dtype] = {}
    for p in precisions:
        dtype = resolve_precision(p, dev)
        dtypes.setdefault(precision_name(dtype), dtype)
    rec = _random_recording(cfg, seed)
    sampler = _Sampler([rec], cfg, np.random.default_rng(seed))
    t = time.perf_counter()
    for _ in range(3):
        sampler.batch()
    sample_s = (time.perf_counter() - t) / 3

    runs = {}
    for name, dtype in dtypes.items():
        torch.manual_seed(seed)
        model = _model_for_training(cfg, dev)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
        runs[name] = (model, opt, scaler, dtype)
    best = dict.fromkeys(dtypes, float("inf"))
    best_cpu = dict.fromkeys(dtypes, float("inf"))
    batches = _Prefetcher(sampler)
    try:

        def step(name: str) -> None:
            model, opt, scaler, dtype = runs[name]
            x, y, _ = batches.next()
            _train_step(model, opt, scaler, x.to(dev), y.to(dev), dtype, cfg.logit_leak)

        for name in runs:
            step(name)  # warm-up: oneDNN kernel creation, allocator
        for _ in range(rounds):
            for name in runs:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t, c = time.perf_counter(), time.process_time()
                for _ in range(iterations):
                    step(name)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                best[name] = min(best[name], (time.perf_counter() - t) / iterations)
                best_cpu[name] = min(best_cpu[name], (time.process_time() - c) / iterations)
                logger.info("%s: %.3f s/iteration", name, best[name])
    finally:
        batches.close()
    return TrainPerfResult(
        crop=tuple(cfg.crop),
        frames=cfg.frames,
        batch=cfg.batch,
        device=str(dev),
        hardware=hardware_description(dev),
        threads=torch.get_num_threads(),
        channels_last=channels_last,
        iterations=iterations,
        rounds=rounds,
        s_per_iteration=best,
        cpu_s_per_iteration=best_cpu,
        sample_s_per_batch=sample_s,
    )
