"""Train STNeuroNet with the paper's schedule for as long as a time box allows (used by ``session.sh``).

The paper trained ~36,000 iterations of 144x144x120 crops (batch 3, Adam 5e-4). This script measures the
seconds per iteration on the device, trains as many iterations as fit in ``--seconds`` (minus the time
kept for tuning and the test split), validates on the test split at a few points (the learning curve),
tunes threshold and minimum area on the training split (the paper's procedure) and writes
``weights.pt`` + ``weights.json`` + ``summary.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.metrics import match
from datasets.registry import get
from stnn.infer import segment
from stnn.train import TrainConfig, train

#: Seconds kept after training for tuning on the 7 training recordings and scoring the 3 test recordings.
RESERVE_S = 110


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, required=True, help="time box for everything in this script")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--device", default="cuda")
    p.add_argument("--iterations", type=int, default=None, help="train this many (default: what the time box allows)")
    p.add_argument("--init", default=None, help="start from these weights (shipped name or .pt): fine-tuning")
    p.add_argument("--crop", type=int, default=144, help="crop side (the paper's 144; smaller for a smoke test)")
    args = p.parse_args()
    t_start = time.perf_counter()
    ds = get(args.dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    command = (
        f"python reports/gpu/train_paper.py --seconds {args.seconds:g} --out {args.out} --dataset {args.dataset} "
        f"--device {args.device} --crop {args.crop}"
        + (f" --iterations {args.iterations}" if args.iterations else "")
        + (f" --init {args.init}" if args.init else "")
    )

    # Pre-processing of the training recordings and 30 timed iterations.
    probe = 30
    crop = (args.crop, args.crop)
    cfg = TrainConfig(iterations=probe, checkpoint_every=probe, validate_every=0, tune_at_end=False, crop=crop)
    t0 = time.perf_counter()
    first = train(ds, args.out, config=cfg, device=args.device, progress=False, command=command, init=args.init)
    prep_s = float(first.metadata.extra.get("preprocess_s", 0.0))
    per_it = (time.perf_counter() - t0 - prep_s) / probe
    left = args.seconds - (time.perf_counter() - t_start) - RESERVE_S
    n_val = 4
    # The probe includes cuDNN autotuning and warm-up, so this estimate is on the safe side.
    iterations = args.iterations or max(probe, int(left / per_it * 0.92))  # validation passes take the rest
    every = max(iterations // n_val, 1)
    print(f"{per_it * 1e3:.1f} ms per iteration; training {iterations} iterations, validating every {every}")
    cfg = TrainConfig(iterations=iterations, checkpoint_every=every, validate_every=every, crop=crop)
    result = train(ds, args.out, config=cfg, device=args.device, resume=True, validate_on="test", progress=False,
                   command=command, init=args.init)
    meta = result.metadata

    # Test split, with the weights' tuned threshold and minimum area.
    scores = {}
    for rec in ds.split("test"):
        res = segment(rec, result.model, device=args.device, metadata=meta)
        s = match(rec.ground_truth(ds.grader_for(rec)), res.masks, rule="stnn")
        scores[rec.name] = {"f1": s.f1, "recall": s.recall, "precision": s.precision, "n_pred": s.n_pred}
    summary = {
        "iterations": iterations,
        "seconds_per_iteration": per_it,
        "preprocess_s": prep_s,
        "train_wall_s": meta.wall_time_s,
        "threshold": meta.threshold,
        "min_area_px": meta.min_area,
        "train_f1": meta.extra.get("train_f1"),
        "learning_curve": list(zip(result.history.get("val_iteration", []), result.history.get("val_f1", []))),
        "test": scores,
        "test_f1_mean": sum(v["f1"] for v in scores.values()) / max(len(scores), 1),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "total_s": time.perf_counter() - t_start,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
