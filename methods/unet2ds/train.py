"""Training UNet2DS on the training split of a data set.

Follows deep-calcium's ``UNet2DSummary.fit`` / ``batch_gen`` (commit 2b15d1b):

* inputs are the standardised mean images, targets the mask summaries of
  :func:`methods.unet2ds.core.target_mask`;
* each recording's top 75 % of rows is sampled for training, its bottom
  25 % is the validation area;
* a training window is centred on a randomly chosen neuron pixel of a
  randomly chosen recording, shifted by a random offset in [-5, 5) px,
  clipped at the image borders and zero-filled (the normalised mean) where it
  leaves them;
* each window gets 0 to 15 augmentations drawn with replacement from
  identity, left-right flip, up-down flip and 90/180/270 degree rotations;
* Adam with learning rate 0.002, the loss binary cross-entropy of the
  softmax output (deep-calcium's default; their weighted cross-entropy,
  false negatives x5, and their dice-squared loss are options), learning
  rate halved when the training F1 has not improved for 5 epochs (minimum
  1e-4);
* after every epoch the whole image is predicted and the F1 of the
  connected components inside the validation area is computed; the weights
  of the best mean validation F1 are kept.

Deep-calcium trained 10 epochs x 100 steps of 20 windows of 128 x 128 on a
GPU. The CPU schedule here (:class:`TrainConfig` defaults) is smaller: see
its docstring. After training, the post-processing threshold and minimum
area are chosen on the whole training images (a grid search on F1).

Everything is seeded (numpy ``default_rng(seed)`` and ``torch.manual_seed``);
on one machine with the same thread count the run is repeatable.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from datasets.errors import InputError
from datasets.records import Recording
from methods.unet2ds.core import probability_to_masks, simple_f1, summary_image, target_mask
from methods.unet2ds.model import N_PARAMS, UNet2DS, predict_probability

__all__ = ["TrainConfig", "train", "save_checkpoint", "load_checkpoint", "LOSSES", "THRESHOLDS", "MIN_AREAS_UM2"]

log = logging.getLogger(__name__)

LOSSES = ("bce", "weighted_bce", "dicesq")
#: Post-processing grid searched on the training set after training.
THRESHOLDS = tuple(float(round(t, 2)) for t in np.arange(0.05, 0.851, 0.05))
MIN_AREAS_UM2 = (0.0, 10.0, 20.0, 30.0, 45.0, 60.0)

_AUGMENT = (
    lambda a: a,
    lambda a: a[:, ::-1],
    lambda a: a[::-1, :],
    lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 2),
    lambda a: np.rot90(a, 3),
)


@dataclass
class TrainConfig:
    """Schedule and hyper-parameters.

    The defaults are the CPU schedule of the shipped ``synthetic`` weights:
    250 iterations of 8 windows of 64 x 64 (deep-calcium: 1,000 of 20 x 128 x
    128), validation every 50 iterations (one "epoch"): 594 s (10 min) on 2
    shared CPU cores (AMD EPYC, shared with other jobs; ~4.5 s per iteration).
    """

    iterations: int = 250
    batch_size: int = 8
    crop: int = 64
    lr: float = 0.002
    loss: str = "bce"
    epoch_steps: int = 50
    prop_train: float = 0.75
    max_augment: int = 15
    seed: int = 865
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}", hint=f"one of {', '.join(LOSSES)}")
        if self.crop % 16:
            raise InputError(f"crop must be a multiple of 16, got {self.crop}")
        if self.iterations < 1 or self.batch_size < 1 or self.epoch_steps < 1:
            raise InputError("iterations, batch size and epoch steps must be >= 1")
        if not 0 < self.prop_train < 1:
            raise InputError(f"prop_train must be in (0, 1), got {self.prop_train}")


def _loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.cross_entropy(logits, target)
    if kind == "weighted_bce":
        per_px = F.cross_entropy(logits, target, reduction="none")
        weight = torch.where(target == 1, 5.0, 1.0)
        return (per_px * weight).mean()
    prob = torch.softmax(logits, 1)[:, 1]
    y = target.float()
    return -(2 * (y * prob).sum()) / ((y * y).sum() + (prob * prob).sum() + 1e-7)


def _pixel_f1(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits.argmax(1)
    tp = float(((pred == 1) & (target == 1)).sum())
    return 2 * tp / (float((pred == 1).sum()) + float((target == 1).sum()) + 1e-7)


class _Sampler:
    """deep-calcium's window sampler over the training rows."""

    def __init__(self, summaries, targets, ymax, cfg: TrainConfig, rng: np.random.Generator):
        self.s, self.m, self.ymax, self.cfg, self.rng = summaries, targets, ymax, cfg, rng
        self.locs = [np.argwhere(m[:y] == 1) for m, y in zip(targets, ymax)]
        self.usable = [i for i, loc in enumerate(self.locs) if len(loc)]
        if not self.usable:
            raise InputError("no neuron pixel in the training area of any training recording")

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        hw = self.cfg.crop
        rng = self.rng
        xs = np.zeros((self.cfg.batch_size, hw, hw), np.float32)
        ys = np.zeros((self.cfg.batch_size, hw, hw), np.int64)
        for b in range(self.cfg.batch_size):
            k = self.usable[rng.integers(len(self.usable))]
            s, m, ymax = self.s[k], self.m[k], self.ymax[k]
            ws = s.shape[1]
            cy, cx = self.locs[k][rng.integers(len(self.locs[k]))]
            cy = min(max(0, cy + rng.integers(-5, 5)), ymax)
            cx = min(max(0, cx + rng.integers(-5, 5)), ws)
            y0 = max(0, int(cy - hw / 2))
            y1 = min(y0 + hw, ymax)
            x0 = max(0, int(cx - hw / 2))
            x1 = min(x0 + hw, ws)
            a = np.zeros((hw, hw), np.float32)
            t = np.zeros((hw, hw), np.int64)
            a[: y1 - y0, : x1 - x0] = s[y0:y1, x0:x1]
            t[: y1 - y0, : x1 - x0] = m[y0:y1, x0:x1]
            for j in rng.choice(len(_AUGMENT), rng.integers(0, self.cfg.max_augment + 1)):
                a, t = _AUGMENT[j](a), _AUGMENT[j](t)
            xs[b], ys[b] = a, t
        return xs, ys


def _hardware(threads: int) -> dict:
    from stnn.precision import cpu_bf16_flags, cpu_model_name

    return {
        "device": "cpu",
        "cpu": cpu_model_name(),
        "cpu_bf16": list(cpu_bf16_flags()),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def _evaluate(model, summaries, gts, rows=None):
    """Probability maps of the whole images and, if ``rows`` is given, F1 inside those row ranges at 0.5."""
    probs = [predict_probability(model, s) for s in summaries]
    if rows is None:
        return probs, None
    f1 = []
    for p, gt, (y0, y1) in zip(probs, gts, rows):
        w = p.shape[1]
        pred = probability_to_masks(p[y0:y1], 0.5)
        f1.append(simple_f1(gt.crop(slice(y0, y1), slice(0, w)), pred))
    return probs, f1


def choose_postprocessing(probs, gts, um_per_px) -> dict:
    """Threshold and minimum area (um^2) maximising the mean F1 over the given images."""
    best = None
    for t in THRESHOLDS:
        for a in MIN_AREAS_UM2:
            f1 = [simple_f1(gt, probability_to_masks(p, t, a / u**2)) for p, gt, u in zip(probs, gts, um_per_px)]
            if best is None or np.mean(f1) > best[2] + 1e-9:
                best = (t, a, float(np.mean(f1)), [float(x) for x in f1])
    return {"threshold": best[0], "min_area_um2": best[1], "train_f1_mean": best[2], "train_f1": best[3]}


def train(
    recordings: list[Recording] | tuple[Recording, ...],
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    *,
    dataset: str = "",
    command: str = "",
    progress: bool = True,
) -> tuple[UNet2DS, dict]:
    """Train UNet2DS on ``recordings`` (their ``default`` ground truth); save to ``out`` if given.

    Returns the model (best validation weights) and the metadata written
    beside the weights.
    """
    from tqdm import tqdm

    cfg = config or TrainConfig()
    if not recordings:
        raise InputError("no training recordings")
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)

    summaries, gts, targets, names, um = [], [], [], [], []
    for rec in tqdm(recordings, desc="mean images", disable=not progress, leave=False):
        s, _ = summary_image(rec.movie)
        gt = rec.ground_truth("default")
        summaries.append(s)
        gts.append(gt)
        targets.append(target_mask(gt))
        names.append(rec.name)
        um.append(float(rec.um_per_px))
    ymax = [int(s.shape[0] * cfg.prop_train) for s in summaries]
    val_rows = [(y, s.shape[0]) for y, s in zip(ymax, summaries)]
    if any(s.shape[0] - y < 16 for s, y in zip(summaries, ymax)):
        val_rows = None  # frames too small for a validation strip: keep the last weights
    prep_s = time.perf_counter() - start

    sampler = _Sampler(summaries, targets, ymax, cfg, rng)
    model = UNet2DS()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5, min_lr=1e-4)

    history = []
    best_f1, best_state, best_iter = -1.0, None, 0
    ep_loss, ep_f1 = [], []
    bar = tqdm(range(1, cfg.iterations + 1), desc="train unet2ds", disable=not progress)
    for it in bar:
        model.train()
        xb, yb = sampler.batch()
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        logits = model(x)
        loss = _loss(logits, y, cfg.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ep_loss.append(loss.item())
        ep_f1.append(_pixel_f1(logits.detach(), y))
        bar.set_postfix(loss=f"{np.mean(ep_loss[-10:]):.4f}", best_val=f"{max(best_f1, 0):.3f}")
        if it % cfg.epoch_steps == 0 or it == cfg.iterations:
            entry = {"iteration": it, "loss": float(np.mean(ep_loss)), "pixel_f1": float(np.mean(ep_f1))}
            entry["lr"] = opt.param_groups[0]["lr"]
            if val_rows is not None:
                _, vf1 = _evaluate(model, summaries, gts, val_rows)
                entry["val_f1"] = float(np.mean(vf1))
                if entry["val_f1"] > best_f1:
                    best_f1, best_state, best_iter = entry["val_f1"], copy.deepcopy(model.state_dict()), it
            sched.step(entry["pixel_f1"])
            history.append(entry)
            log.info("iteration %d: %s", it, entry)
            ep_loss, ep_f1 = [], []
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_iter = cfg.iterations
    train_s = time.perf_counter() - start - prep_s

    probs, _ = _evaluate(model, summaries, gts)
    post = choose_postprocessing(probs, gts, um)
    wall = time.perf_counter() - start
    meta = {
        "method": "unet2ds",
        "dataset": dataset,
        "train_recordings": names,
        "command": command,
        "config": asdict(cfg),
        "wall_s": round(wall, 1),
        "prep_s": round(prep_s, 1),
        "train_s": round(train_s, 1),
        "hardware": _hardware(threads),
        "n_params": N_PARAMS,
        "best_iteration": best_iter,
        "val_f1": round(best_f1, 4) if best_f1 >= 0 else None,
        "val_note": "F1 at threshold 0.5 in the bottom 25% rows of each training recording (IoU>=0.5 or containment)",
        "threshold": post["threshold"],
        "min_area_um2": post["min_area_um2"],
        "train_f1_mean": round(post["train_f1_mean"], 4),
        "train_f1": dict(zip(names, [round(f, 4) for f in post["train_f1"]])),
        "history": history,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if out is not None:
        save_checkpoint(model, meta, out)
    return model, meta


def save_checkpoint(model: UNet2DS, meta: dict, out: str | Path) -> Path:
    """Write the weights (float16, to halve the file) and ``<out>.json`` with the metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    tmp = out.with_suffix(out.suffix + ".tmp")
    # The metadata travels as JSON text so that the file loads with ``weights_only=True``.
    text = json.dumps(meta, indent=2, default=float)
    torch.save({"format": "unet2ds-v1", "state_dict": state, "meta": text}, tmp)
    tmp.replace(out)
    out.with_suffix(".json").write_text(text + "\n")
    return out


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[UNet2DS, dict]:
    """The model (float32, eval mode) and metadata saved by :func:`save_checkpoint`."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "unet2ds-v1":
        raise InputError(f"{path} is not a UNet2DS checkpoint")
    model = UNet2DS()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    model.eval().to(device)
    meta = ckpt.get("meta", "{}")
    return model, (json.loads(meta) if isinstance(meta, str) else dict(meta))


def main(argv: list[str] | None = None) -> int:
    """``python -m methods.unet2ds train --dataset synthetic --out methods/unet2ds/weights/synthetic.pt``."""
    import argparse

    from datasets import registry

    ap = argparse.ArgumentParser(prog="python -m methods.unet2ds", description="UNet2DS (Klibisz et al. 2017)")
    sub = ap.add_subparsers(dest="action", required=True)
    tr = sub.add_parser("train", help="train on the TRAIN split of a data set")
    d = TrainConfig()
    tr.add_argument("--dataset", default="synthetic")
    tr.add_argument("--out", required=True, help="weights file (.pt); metadata goes to the same name .json")
    tr.add_argument("--iterations", type=int, default=d.iterations)
    tr.add_argument("--epochs", type=int, default=None, help="alternative to --iterations: epochs of --epoch-steps")
    tr.add_argument("--epoch-steps", type=int, default=d.epoch_steps)
    tr.add_argument("--batch-size", type=int, default=d.batch_size)
    tr.add_argument("--crop", type=int, default=d.crop)
    tr.add_argument("--lr", type=float, default=d.lr)
    tr.add_argument("--loss", choices=LOSSES, default=d.loss)
    tr.add_argument("--seed", type=int, default=d.seed)
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    iterations = args.epochs * args.epoch_steps if args.epochs else args.iterations
    cfg = TrainConfig(
        iterations=iterations,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        loss=args.loss,
        epoch_steps=args.epoch_steps,
        seed=args.seed,
        threads=args.threads,
    )
    try:
        recs = registry.get(args.dataset).split("train")
        cmd = "python -m methods.unet2ds " + " ".join(sys.argv[1:] if argv is None else argv)
        _, meta = train(recs, cfg, args.out, dataset=args.dataset, command=cmd, progress=not args.no_progress)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"saved {args.out}: val F1 {meta['val_f1']}, train F1 {meta['train_f1_mean']} "
        f"(threshold {meta['threshold']}, min area {meta['min_area_um2']} um^2), {meta['wall_s']:.0f} s"
    )
    return 0
