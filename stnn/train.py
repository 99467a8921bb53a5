"""Train STNeuroNet from scratch on recordings with ground-truth masks.

The paper's recipe (Part A "Training"; spec Part B section 3):

* input: the pre-processed video (crop, binned to ~6 Hz, homomorphic filter,
  SD normalisation) with NiftyNet sample whitening ``(v - mean) / std`` over
  the whole video;
* target: spatio-temporal labels from spike detection on the GT traces
  (:func:`stnn.labels.temporal_labels`); the target of a crop is the union of
  the masks active in any of its frames (the t-max of the label volume);
* random crops of 144 x 144 px x 120 frames, kept only when at least one
  neuron is active in them (the paper's rule; retried up to
  ``max_resample`` times, then the last draw is used);
* augmentation: rotations by 0, 90 and 180 degrees (the paper; the authors'
  on-line reader had rotation off and only the offline tiles were rotated)
  and independent random flips of both axes, applied alike to video and
  label;
* Dice loss over the batch (softmax, both classes, spec section 3), Adam
  with lr 5e-4, batch 3, constant rate.

Deviations, documented: crop starts are drawn from every valid position
(NiftyNet's ``randint(0, D - W)`` never drew the last one); crops larger
than a recording's frame (or movie) shrink to it; 90/270-degree rotations
are skipped when the crop is not square; the whitening statistics are those
of the unpadded video.

Run state lives in ``out_dir``: ``cache/<recording>/`` (pre-processed video,
per-frame label volume, statistics, as ``.npy`` memory maps),
``checkpoints/ckpt-<iteration>.pt`` (model, optimiser, AMP scaler, iteration,
RNG states, history), and at the end ``weights.pt`` + ``weights.json``
(:mod:`stnn.weights`) and ``history.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Dataset, Recording

from .fuse import channels_last_weights
from .infer import MovieView, PreparedMovie, Timings, default_preprocess_config, probability_maps
from .labels import label_volume, temporal_labels
from .model import STNeuroNet
from .postprocess import PostprocessConfig, postprocess
from .precision import PRECISIONS, autocast, precision_name, resolve_precision
from .preprocess import RunningMoments, preprocess
from .tune import f1_score, tune
from .weights import WeightsMetadata, hardware_description, save_weights

__all__ = ["TrainConfig", "TrainResult", "PreparedRecording", "dice_loss", "prepare_recording", "train"]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (defaults: the paper's).

    Attributes
    ----------
    crop : (int, int)
        Spatial crop (rows, cols), 144 x 144.
    frames : int
        Binned frames per crop (120).
    iterations : int
        Total iterations (paper: 35,000-40,000).
    batch : int
        Crops per iteration (3).
    lr : float
        Adam learning rate (5e-4).
    seed : int
        Seeds model initialisation, dropout and sampling.
    checkpoint_every : int
        Iterations between checkpoints (the last iteration is always saved).
    validate_every : int
        Iterations between validation F1 evaluations (0: never during training).
    rotations : tuple of int
        Quarter turns drawn uniformly ((0, 1, 2) = 0, 90, 180 degrees).
    flips : bool
        Random flips of both axes.
    amp : bool, optional
        ``False`` forces float32 (as ``precision='fp32'``); otherwise
        ``precision`` decides.
    precision : {'auto', 'fp32', 'bf16'}
        Mixed precision of the forward pass (:mod:`stnn.precision`):
        ``'auto'`` autocasts to bfloat16 where the CPU or GPU runs it natively
        (float16 with loss scaling on a CUDA GPU without bfloat16), else
        float32. Weights, optimiser state and the loss stay float32.
    channels_last : bool
        Keep the 3-D convolution weights (hence activations) channels-last
        (``torch.channels_last_3d``).
    grader : str, optional
        Ground truth used (default: the data set's default grader).
    tf_compat, dropout : see :class:`~stnn.model.STNeuroNet`.
    target_fps : float
        Binned frame rate (6 Hz).
    border_um : float
        Border cropped in pre-processing (0: the suite's recordings are
        already cropped).
    tau : float, optional
        Indicator decay for spike detection (s); default from the
        recording's indicator (GCaMP6s 0.8, else 0.2).
    max_resample : int
        Draws per crop before accepting one without active neurons.
    tune_at_end : bool
        Tune threshold and minimum area on the training recordings at the
        end (the paper's procedure) and store them in the weights' metadata.
    postprocess : PostprocessConfig, optional
        Post-processing for validation (threshold, min_area; default scaled
        to the pixel size).
    logit_leak : float
        Negative slope of the final activation during training only (0: the
        authors' ReLU). With the ReLU, the first iterations, where almost
        every pixel is background, can push the neuron logit below zero
        everywhere; its gradient is then zero for good and the probability
        never exceeds 0.5 (observed in a CPU run at lr 1e-3). A leak of
        0.01 keeps that channel trainable; inference always uses the ReLU.
    """

    crop: tuple[int, int] = (144, 144)
    frames: int = 120
    iterations: int = 36_000
    batch: int = 3
    lr: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 1000
    validate_every: int = 1000
    rotations: tuple[int, ...] = (0, 1, 2)
    flips: bool = True
    amp: bool | None = None
    grader: str | None = None
    tf_compat: bool = False
    dropout: float = 0.5
    target_fps: float = 6.0
    border_um: float = 0.0
    tau: float | None = None
    max_resample: int = 20
    tune_at_end: bool = True
    postprocess: PostprocessConfig | None = None
    logit_leak: float = 0.01
    precision: str = "auto"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if len(self.crop) != 2 or min(self.crop) < 8:
            raise InputError(f"crop must be two sizes >= 8 px, got {self.crop}")
        if self.frames < 8 or self.batch < 1 or self.iterations < 0:
            raise InputError(
                f"frames must be >= 8, batch >= 1, iterations >= 0; got {self.frames}, {self.batch}, {self.iterations}"
            )
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.logit_leak < 1.0:
            raise InputError(f"logit_leak must be within [0, 1), got {self.logit_leak}")
        if self.checkpoint_every < 1 or self.validate_every < 0:
            raise InputError("checkpoint_every must be >= 1 and validate_every >= 0")
        if not self.rotations or any(r not in (0, 1, 2, 3) for r in self.rotations):
            raise InputError(f"rotations must be quarter turns within 0..3, got {self.rotations}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: STNeuroNet
    metadata: WeightsMetadata
    weights_path: Path
    history: dict[str, list] = field(default_factory=dict)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """NiftyNet Dice loss: ``1 - mean_c 2 sum(p_c g_c) / (sum p_c^2 + sum g_c + eps)``.

    Softmax over the two channels; sums pool every pixel of the batch; both
    classes (background included) are averaged, as the authors' loss.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, 2, H, W)``.
    target : torch.Tensor
        ``(B, H, W)`` with 0 (background) / 1 (neuron).
    """
    p = torch.softmax(logits.float(), dim=1)
    g = torch.stack([1.0 - target.float(), target.float()], dim=1)
    dims = (0, 2, 3)
    num = 2.0 * (p * g).sum(dims)
    den = (p * p).sum(dims) + g.sum(dims) + eps
    return 1.0 - (num / den).mean()


# -- per-recording cache ----------------------------------------------------------------


@dataclass
class PreparedRecording:
    """A recording's cached training inputs.

    Attributes
    ----------
    name : str
    video : np.ndarray
        ``(T, H, W)`` float32 memory map of the pre-processed video.
    labels : np.ndarray
        ``(T, H, W)`` uint8 memory map of per-frame labels.
    mean, std : float
        Whitening statistics of ``video``.
    gt : Masks
        Ground truth in the pre-processed frame.
    rows, cols : slice
        Crop of the pre-processing in the recording's frame.
    """

    name: str
    video: np.ndarray
    labels: np.ndarray
    mean: float
    std: float
    gt: Masks
    rows: slice
    cols: slice

    def prepared_movie(self) -> PreparedMovie:
        """View for :func:`stnn.infer.probability_maps`."""
        return PreparedMovie(
            self.video,
            self.mean,
            self.std,
            float(np.min(self.video[: min(len(self.video), 256)])),
            self.rows,
            self.cols,
            self.gt.shape,
        )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "recording"


def _tau_for(rec: Recording, tau: float | None) -> float:
    if tau is not None:
        return float(tau)
    return 0.8 if (rec.indicator or "").lower().endswith("6s") else 0.2


def prepare_recording(
    rec: Recording,
    cache_dir: str | Path,
    config: TrainConfig,
    grader: str = "default",
    device: torch.device | str | None = None,
) -> PreparedRecording:
    """Pre-process a recording and build its per-frame labels, cached under ``cache_dir``.

    The cache is reused when its ``meta.json`` matches the recording (name,
    shape, rates) and the pre-processing settings.
    """
    pre_cfg = default_preprocess_config(
        rec.fps, rec.um_per_px, target_fps=config.target_fps, border_um=config.border_um
    )
    folder = Path(cache_dir) / _safe(rec.name)
    t, h, w = (int(s) for s in rec.movie.shape)
    top, bottom, left, right = pre_cfg.crop
    rows, cols = slice(top, h - bottom), slice(left, w - right)
    gt = rec.ground_truth(grader).crop(rows, cols)
    key = {
        "version": _CACHE_VERSION,
        "name": rec.name,
        "shape": [t, h, w],
        "fps": rec.fps,
        "um_per_px": rec.um_per_px,
        "grader": grader,
        "n_gt": gt.n,
        "gt_pixels": int(gt.matrix.nnz),
        "preprocess": asdict(pre_cfg),
        "tau": _tau_for(rec, config.tau),
    }
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == json.loads(json.dumps(key)):
            logger.info("recording %s: using cached inputs in %s", rec.name, folder)
            return PreparedRecording(
                rec.name,
                np.load(folder / "video.npy", mmap_mode="r"),
                np.load(folder / "labels.npy", mmap_mode="r"),
                meta["mean"],
                meta["std"],
                gt,
                rows,
                cols,
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("recording %s: pre-processing and labelling into %s", rec.name, folder)
    movie = MovieView(rec.movie)
    n_bin = t // pre_cfg.bin_factor
    hc, wc = rows.stop - rows.start, cols.stop - cols.start
    video = np.lib.format.open_memmap(folder / "video.npy", mode="w+", dtype=np.float32, shape=(n_bin, hc, wc))
    preprocess(movie, pre_cfg, device=device, out=video)
    moments = RunningMoments()
    for b0 in range(0, n_bin, 64):
        moments.update(np.asarray(video[b0 : b0 + 64]))
    std = max(moments.std(ddof=0), 1e-5)
    video.flush()

    # Labels come from the binned, cropped *raw* video (not the filtered one), as the authors'.
    raw_cfg = replace(pre_cfg, homomorphic=False, normalize=False)
    raw = np.lib.format.open_memmap(folder / "raw_binned.npy", mode="w+", dtype=np.float32, shape=(n_bin, hc, wc))
    preprocess(movie, raw_cfg, device="cpu", out=raw)
    fs = rec.fps / pre_cfg.bin_factor
    if gt.n:
        activity = temporal_labels(
            raw, gt.matrix, fs=fs, um_per_px=rec.um_per_px, frame_shape=gt.shape, tau=_tau_for(rec, config.tau)
        )
    else:
        activity = np.zeros((0, n_bin), bool)
    del raw
    (folder / "raw_binned.npy").unlink()
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.uint8, shape=(n_bin, hc, wc))
    for b0 in range(0, n_bin, 256):
        b1 = min(b0 + 256, n_bin)
        if gt.n:
            labels[b0:b1] = label_volume(activity, gt.matrix, b0, b1, frame_shape=gt.shape)
        else:
            labels[b0:b1] = 0
    labels.flush()
    np.save(folder / "activity.npy", activity)
    meta_path.write_text(json.dumps({"key": key, "mean": moments.mean, "std": std}, indent=2, default=str))
    return PreparedRecording(
        rec.name,
        np.load(folder / "video.npy", mmap_mode="r"),
        np.load(folder / "labels.npy", mmap_mode="r"),
        moments.mean,
        std,
        gt,
        rows,
        cols,
    )


# -- sampling ------------------------------------------------------------------------


class _Sampler:
    """Random crops with augmentation from prepared recordings."""

    def __init__(self, recs: Sequence[PreparedRecording], config: TrainConfig, rng: np.random.Generator) -> None:
        self.recs = list(recs)
        self.cfg = config
        self.rng = rng
        self.ch = min(config.crop[0], *(r.video.shape[1] for r in self.recs))
        self.cw = min(config.crop[1], *(r.video.shape[2] for r in self.recs))
        self.ct = min(config.frames, *(r.video.shape[0] for r in self.recs))
        if (self.ch, self.cw, self.ct) != (config.crop[0], config.crop[1], config.frames):
            logger.warning("crops shrink to %dx%d px x %d frames to fit the recordings", self.ch, self.cw, self.ct)
        rot = tuple(config.rotations)
        if self.ch != self.cw:
            rot = tuple(r for r in rot if r % 2 == 0) or (0,)
        self.rotations = rot
        # Sample recordings in proportion to their number of possible crops (their size).
        sizes = np.array([r.video.size for r in self.recs], np.float64)
        self.weights = sizes / sizes.sum()

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        rec = self.recs[int(self.rng.choice(len(self.recs), p=self.weights))]
        t, h, w = rec.video.shape
        for _ in range(max(self.cfg.max_resample, 1)):
            t0 = int(self.rng.integers(0, t - self.ct + 1))
            r0 = int(self.rng.integers(0, h - self.ch + 1))
            c0 = int(self.rng.integers(0, w - self.cw + 1))
            lab = np.asarray(rec.labels[t0 : t0 + self.ct, r0 : r0 + self.ch, c0 : c0 + self.cw]).max(axis=0)
            if lab.any():
                break
        vid = np.asarray(rec.video[t0 : t0 + self.ct, r0 : r0 + self.ch, c0 : c0 + self.cw], np.float32)
        vid = (vid - np.float32(rec.mean)) / np.float32(rec.std)
        return vid, lab

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(self.cfg.batch):
            vid, lab = self._draw()
            k = int(self.rng.choice(self.rotations))
            flip_r, flip_c = (self.rng.random(2) < 0.5) if self.cfg.flips else (False, False)
            vid, lab = np.rot90(vid, k, axes=(1, 2)), np.rot90(lab, k)
            if flip_r:
                vid, lab = vid[:, ::-1], lab[::-1]
            if flip_c:
                vid, lab = vid[:, :, ::-1], lab[:, ::-1]
            xs.append(np.ascontiguousarray(vid))
            ys.append(np.ascontiguousarray(lab))
        x = torch.from_numpy(np.stack(xs)[:, None])
        y = torch.from_numpy(np.stack(ys).astype(np.float32))
        return x, y


class _Prefetcher:
    """Draws the next batch in a background thread while the network trains on the current one.

    Reading crops from the memory maps, augmenting and whitening them then
    costs no time on the training path. Each batch comes with the sampler's
    random state right after it was drawn, which is what a checkpoint must
    store for a resumed run to draw the same batches (the sampler itself is
    already one batch ahead).
    """

    def __init__(self, sampler: _Sampler) -> None:
        self.sampler = sampler
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stnn-batches")
        self._pending: Future | None = None

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        x, y = self.sampler.batch()
        return x, y, self.sampler.rng.bit_generator.state

    def next(self, prefetch: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The next batch ``(x, y, sampler state after it)``; starts drawing the one after when ``prefetch``."""
        pending = self._pending or self._pool.submit(self._draw)
        batch = pending.result()
        self._pending = self._pool.submit(self._draw) if prefetch else None
        return batch

    def close(self) -> None:
        """Wait for a batch still being drawn and stop the thread."""
        self._pool.shutdown(wait=True)


def _model_for_training(config: TrainConfig, device: torch.device) -> STNeuroNet:
    model = STNeuroNet(tf_compat=config.tf_compat, dropout=config.dropout).to(device)
    return channels_last_weights(model) if config.channels_last else model


def _train_step(
    model: STNeuroNet,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype,
    logit_leak: float,
) -> float:
    """One optimisation step on a batch already on the model's device; returns the loss."""
    model.train()
    with autocast(x.device, dtype):
        logits = model(x, logit_slope=logit_leak)
    loss = dice_loss(logits, y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


def _training_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    return torch.float32 if config.amp is False else resolve_precision(config.precision, device)


# -- checkpoints ---------------------------------------------------------------------


def _checkpoint_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint with the highest iteration in ``out_dir/checkpoints``, or None."""
    found = sorted(_checkpoint_dir(Path(out_dir)).glob("ckpt-*.pt"))
    return found[-1] if found else None


def _rng_state(rng: np.random.Generator, numpy_state: dict[str, Any] | None = None) -> dict[str, Any]:
    state = {"numpy": numpy_state or rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto a GPU holds it there
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save_checkpoint(path: Path, **state: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a truncated "latest" checkpoint


# -- validation ----------------------------------------------------------------------


def evaluate(
    model: STNeuroNet,
    recs: Sequence[PreparedRecording],
    post: PostprocessConfig,
    device: torch.device,
    frames: int = 120,
    amp: bool | None = None,
    precision: str = "auto",
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean F1 of ``model`` on prepared recordings, and their probability maps."""
    maps, f1s = {}, []
    for rec in recs:
        m = probability_maps(
            rec.prepared_movie(),
            model,
            device=device,
            batch_frames=frames,
            amp=amp,
            timings=Timings(),
            precision=precision,
        )
        maps[rec.name] = m
        f1s.append(f1_score(rec.gt, postprocess(m, post))[2])
    return (float(np.mean(f1s)) if f1s else float("nan")), maps


# -- driver --------------------------------------------------------------------------


def _recordings(data: Dataset | Sequence[Recording]) -> tuple[list[Recording], str, str]:
    if isinstance(data, Dataset):
        train_recs = list(data.split("train")) or list(data.recordings)
        return train_recs, data.name, data.default_grader
    if isinstance(data, Recording):
        return [data], data.name, "default"
    recs = list(data)
    if not recs or not all(isinstance(r, Recording) for r in recs):
        raise InputError("train() needs a Dataset or a non-empty sequence of Recordings")
    return recs, "recordings", "default"


def _validation(data: Any, validate_on: Any) -> list[Recording]:
    if validate_on is None or validate_on == "none":
        return []
    if isinstance(validate_on, str):
        if not isinstance(data, Dataset):
            raise InputError(f"validate_on={validate_on!r} needs a Dataset")
        if validate_on == "test":
            return list(data.split("test"))
        raise InputError(f"validate_on must be None, 'test' or a list of Recordings, got {validate_on!r}")
    if isinstance(validate_on, Recording):
        return [validate_on]
    return list(validate_on)


def train(
    dataset_or_recordings: Dataset | Sequence[Recording] | Recording,
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    device: torch.device | str | None = None,
    resume: bool = False,
    validate_on: str | Sequence[Recording] | None = None,
    progress: bool = True,
    command: str | None = None,
    init: str | Path | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train STNeuroNet; write checkpoints, weights and metadata into ``out_dir``.

    Parameters
    ----------
    dataset_or_recordings : Dataset, Recording or sequence of Recording
        Training data (a Dataset's ``train`` split, or all of it when it has none).
    out_dir : str or Path
        Run folder (cache, checkpoints, weights).
    config : TrainConfig, optional
        Hyper-parameters; ``overrides`` replace single fields
        (``iterations=100, crop=(64, 64), seed=1``...).
    device : torch.device or str, optional
        Default: CUDA if available.
    resume : bool
        Continue from the latest checkpoint in ``out_dir`` (a fresh start when
        there is none). ``iterations`` is the total target.
    validate_on : None, 'test' or sequence of Recording
        Held-out recordings scored (F1 after post-processing) every
        ``validate_every`` iterations and at the end; ``'test'`` = the
        Dataset's test split. Monitoring only: no model selection.
    progress : bool
        Show a tqdm progress bar (loss, validation F1).
    command : str, optional
        Recorded in the metadata (default: ``sys.argv``).
    init : str or Path, optional
        Start from these weights (shipped name or ``.pt`` path) instead of a
        random initialisation (fine-tuning); a checkpoint found with
        ``resume`` takes precedence.

    Returns
    -------
    TrainResult
    """
    from tqdm.auto import tqdm

    cfg = replace(config or TrainConfig(), **overrides) if overrides else (config or TrainConfig())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available", hint="use --device cpu")
    train_recs, data_name, default_grader = _recordings(dataset_or_recordings)
    val_recs = _validation(dataset_or_recordings, validate_on)
    grader = cfg.grader or default_grader
    um = {r.um_per_px for r in train_recs}
    if len(um) > 1:
        logger.warning("training recordings have different pixel sizes %s; min areas use the first", sorted(um))
    um_per_px = train_recs[0].um_per_px
    post = cfg.postprocess or PostprocessConfig.for_pixel_size(um_per_px)

    t_start = time.perf_counter()
    cache = out / "cache"
    prepared = [prepare_recording(r, cache, cfg, grader, dev) for r in train_recs]
    val_prepared = [prepare_recording(r, cache, cfg, grader, dev) for r in val_recs]
    prep_s = time.perf_counter() - t_start

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = _model_for_training(cfg, dev)
    if init is not None:
        from .weights import load_weights, resolve

        state, _ = load_weights(resolve(init))
        model.load_state_dict(state)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    dtype = _training_dtype(cfg, dev)
    # Loss scaling only for float16 (bfloat16 has float32's exponent range).
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    history: dict[str, list] = {"loss": [], "val_iteration": [], "val_f1": []}
    start_it, train_s = 0, 0.0

    if resume:
        ckpt_path = latest_checkpoint(out)
        if ckpt_path is None:
            logger.info("no checkpoint in %s: starting from scratch", out)
        else:
            ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)  # no pickled code runs
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            _set_rng_state(rng, ckpt["rng"])
            start_it = int(ckpt["iteration"])
            history = ckpt.get("history", history)
            train_s = float(ckpt.get("train_s", 0.0))
            logger.info("resumed from %s (iteration %d)", ckpt_path.name, start_it)

    sampler = _Sampler(prepared, cfg, rng)
    batches = _Prefetcher(sampler)
    logger.info("training in %s on %s", precision_name(dtype), dev)
    bar = tqdm(total=cfg.iterations, initial=start_it, disable=not progress, desc="train", dynamic_ncols=True)
    last_val = history["val_f1"][-1] if history["val_f1"] else None
    t_loop = time.perf_counter()
    try:
        for it in range(start_it, cfg.iterations):
            x, y, sampler_state = batches.next(prefetch=it + 1 < cfg.iterations)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss_v = _train_step(model, opt, scaler, x, y, dtype, cfg.logit_leak)
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"the loss became {loss_v} at iteration {it + 1}")
            history["loss"].append(loss_v)
            done = it + 1
            if val_prepared and cfg.validate_every and done % cfg.validate_every == 0:
                last_val, _ = evaluate(model, val_prepared, post, dev, sampler.ct, cfg.amp, cfg.precision)
                history["val_iteration"].append(done)
                history["val_f1"].append(last_val)
            postfix = {"loss": f"{loss_v:.4f}"}
            if last_val is not None:
                postfix["val_F1"] = f"{last_val:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                _save_checkpoint(
                    _checkpoint_dir(out) / f"ckpt-{done:08d}.pt",
                    model=model.state_dict(),
                    optimizer=opt.state_dict(),
                    scaler=scaler.state_dict() if scaler.is_enabled() else None,
                    iteration=done,
                    rng=_rng_state(rng, sampler_state),
                    history=history,
                    train_s=train_s + time.perf_counter() - t_loop,
                    config=asdict(cfg),
                )
    finally:
        batches.close()
        bar.close()
    train_s += time.perf_counter() - t_loop

    # Post-processing parameters tuned on the training set (the paper's procedure).
    meta = WeightsMetadata(
        name=out.name,
        command=command if command is not None else " ".join(sys.argv),
        dataset=data_name,
        iterations=cfg.iterations,
        hardware=hardware_description(dev),
        um_per_px=um_per_px,
        fps=train_recs[0].fps,
        model={"tf_compat": cfg.tf_compat},
        preprocess={"target_fps": cfg.target_fps, "border_um": cfg.border_um, "sigma_um": 30 * 0.78},
        extra={
            "seed": cfg.seed,
            "grader": grader,
            "final_loss": history["loss"][-1] if history["loss"] else None,
            "train_recordings": [r.name for r in train_recs],
            "val_recordings": [r.name for r in val_recs],
            "preprocess_s": prep_s,
            "crop": list(cfg.crop),
            "frames": cfg.frames,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "logit_leak": cfg.logit_leak,
            "precision": precision_name(dtype),
            "torch": torch.__version__,
            "init": None if init is None else str(init),
        },
    )
    if cfg.tune_at_end and prepared:
        t_tune = time.perf_counter()
        _, maps = evaluate(model, prepared, post, dev, sampler.ct, cfg.amp, cfg.precision)
        best = tune(maps, {r.name: r.gt for r in prepared}, um_per_px=um_per_px, config=post)
        meta.threshold, meta.min_area = best.threshold, best.min_area
        meta.extra["train_f1"] = best.f1
        meta.extra["tune_s"] = time.perf_counter() - t_tune
        post = replace(post, threshold=best.threshold, min_area=best.min_area)
    if val_prepared:
        meta.validation_f1, _ = evaluate(model, val_prepared, post, dev, sampler.ct, cfg.amp, cfg.precision)
    meta.wall_time_s = train_s + prep_s
    weights_path = save_weights(model, out / "weights.pt", meta)
    (out / "history.json").write_text(json.dumps(history))
    logger.info("trained %d iterations in %.1f s; weights in %s", cfg.iterations, train_s, weights_path)
    return TrainResult(model, meta, weights_path, history)
