"""UNet2DS (Klibisz et al. 2017, DLMIA) as a method: a U-Net on the mean image.

"Fast, simple calcium imaging segmentation with fully convolutional
networks" segments neurons with a 2-D U-Net applied to one summary image
of the whole video, the temporal mean, standardised to zero mean and unit SD.
This is a PyTorch reimplementation of the authors' Keras code
(alexklibisz/deep-calcium, ``unet_2d_summary.py`` at commit 2b15d1b): same
layers, widths, dropout, batch normalisation, softmax output, loss,
optimiser, training windows and augmentation (:mod:`methods.unet2ds.model`,
:mod:`methods.unet2ds.train`).

Shipped weights: ``methods/unet2ds/weights/synthetic.pt`` (float16), trained
on the ``synthetic`` data set's training split with::

    python -m methods.unet2ds train --dataset synthetic --out methods/unet2ds/weights/synthetic.pt

Its metadata (``synthetic.json`` beside it) records the command, wall time,
hardware, validation and training F1, and the post-processing chosen on the
training set.

Post-processing: probability >= ``threshold`` (deep-calcium rounds, i.e.
0.5), 8-connected components, components smaller than ``min_area_um2``
dropped (deep-calcium keeps all; the area is converted to pixels with the
recording's pixel size). Defaults are those chosen on the training set and
stored with the weights.

Parameters: ``threshold`` (0..1), ``min_area_um2`` (>= 0), ``device``
('cpu' or 'cuda'), ``weights`` (path of another checkpoint, default the
shipped one).

Timings: ``init_s`` loads the model; ``process_s`` covers the mean image
(every frame read, in chunks), the forward pass and the post-processing;
``n_frames`` is the number of frames read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.records import Recording
from methods.base import Method, Segmentation, load_stage, save_stage
from methods.params import Param, check_settings

__all__ = ["UNet2DS", "WEIGHTS", "TRAIN_COMMAND"]

WEIGHTS = Path(__file__).resolve().parent / "weights" / "synthetic.pt"
TRAIN_COMMAND = "python -m methods.unet2ds train --dataset synthetic --out methods/unet2ds/weights/synthetic.pt"

#: Used when the checkpoint's metadata has no post-processing (deep-calcium: round, no size filter).
_FALLBACK_THRESHOLD = 0.5
_FALLBACK_MIN_AREA_UM2 = 0.0

PARAMS = {
    "threshold": Param(float, low=0.0, high=1.0, low_open=True, optional=True,
                       doc="probability threshold (None: the value tuned with the weights)"),
    "min_area_um2": Param(float, low=0.0, optional=True,
                          doc="smallest kept component (um^2; None: the value tuned with the weights)"),
    "device": Param(str, choices=("cpu", "cuda"), stage="expensive", doc="torch device"),
    "weights": Param(str, stage="expensive", doc="checkpoint file (default: the shipped synthetic weights)"),
}


def _read_meta(path: Path) -> dict:
    import json

    js = path.with_suffix(".json")
    if js.is_file():
        try:
            return json.loads(js.read_text())
        except ValueError:
            return {}
    return {}


class UNet2DS(Method):
    """U-Net on the standardised mean image, threshold + connected components."""

    name = "unet2ds"
    description = "UNet2DS (Klibisz et al. 2017): U-Net on the mean image, PyTorch reimplementation"
    requirements = ("torch",)
    devices = ("cpu", "cuda")
    parameters = PARAMS
    staged = True
    learns = True
    tuned_with_weights = ("threshold", "min_area_um2")
    shipped_dataset = "synthetic"
    #: deep-calcium's schedule (1,000 iterations of 20 windows of 128 x 128) and the shipped CPU one.
    train_schedules = {
        "paper": {"iterations": 1000, "batch_size": 20, "crop": 128},
        "quick": {},
    }

    def __init__(self, weights: str | None = None):
        self.weights = Path(weights) if weights else WEIGHTS

    def is_available(self) -> tuple[bool, str]:
        ok, why = super().is_available()
        if not ok:
            return ok, why
        if not self.weights.is_file():
            return False, f"weights {self.weights} not found; train them with: {TRAIN_COMMAND}"
        return True, ""

    def default_params(self, recording: Recording) -> dict[str, Any]:
        meta = _read_meta(self.weights)
        return {
            "threshold": float(meta.get("threshold", _FALLBACK_THRESHOLD)),
            "min_area_um2": float(meta.get("min_area_um2", _FALLBACK_MIN_AREA_UM2)),
            "device": "cpu",
        }

    def param_grid(self, recording: Recording) -> dict[str, list]:
        d = self.default_params(recording)
        t = d["threshold"]
        a = d["min_area_um2"]
        thresholds = sorted({round(min(max(x, 0.05), 0.95), 2) for x in (t - 0.1, t, t + 0.1)})
        areas = sorted({round(x, 1) for x in (a / 2, a, a * 2 if a > 0 else 20.0)})
        return {"threshold": thresholds, "min_area_um2": areas}

    # ------------------------------------------------------------------ stages
    def prepare(self, recording: Recording, params: dict[str, Any], out: Path) -> dict[str, Any]:
        import torch

        from methods.unet2ds.core import summary_image
        from methods.unet2ds.model import predict_probability
        from methods.unet2ds.train import load_checkpoint

        p = self.check_params(recording, params)
        path = Path(p.get("weights") or self.weights)
        if not path.is_file():
            raise InputError(f"UNet2DS weights {path} not found", hint=f"train them with: {TRAIN_COMMAND}")
        if p["device"] == "cuda" and not torch.cuda.is_available():
            raise InputError("method 'unet2ds': device 'cuda' requested but torch sees no GPU", hint="use device=cpu")
        t0 = time.perf_counter()
        model, meta = load_checkpoint(path, p["device"])
        init_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        summary, n_frames = summary_image(recording.movie)
        prob = predict_probability(model, summary, p["device"])
        process_s = time.perf_counter() - t1
        info = {"init_s": init_s, "process_s": process_s, "n_frames": n_frames, "weights": path.name,
                "weights_created": meta.get("created", ""),
                "threshold": float(meta.get("threshold", _FALLBACK_THRESHOLD)),
                "min_area_um2": float(meta.get("min_area_um2", _FALLBACK_MIN_AREA_UM2))}
        save_stage(out, info, {"probability": prob.astype(np.float32)})
        return info

    def finish(self, recording: Recording, params: dict[str, Any], stage: Path) -> Segmentation:
        from methods._compat import package_versions
        from methods.unet2ds.core import probability_to_masks

        p = self.check_params(recording, params)
        info, arrays = load_stage(stage, "UNet2DS")
        if "probability" not in arrays:
            raise InputError("unreadable UNet2DS stage (no probability map in stage.npz)", path=stage)
        prob = arrays["probability"]
        # None: the values tuned with the weights (on their training recordings).
        for key in ("threshold", "min_area_um2"):
            if p[key] is None:
                p[key] = info[key]
        t0 = time.perf_counter()
        masks = probability_to_masks(prob, p["threshold"], p["min_area_um2"] / float(recording.um_per_px) ** 2)
        post_s = time.perf_counter() - t0
        versions = {"unet2ds_weights": info["weights"], "weights_created": info["weights_created"]}
        versions.update(package_versions("torch", "numpy", "scipy"))
        used = {k: v for k, v in p.items() if k != "weights"}
        used["weights"] = str(p.get("weights") or self.weights)
        return Segmentation(
            masks=masks,
            params=used,
            init_s=info["init_s"],
            process_s=info["process_s"] + post_s,
            n_frames=info["n_frames"],
            probability_maps=prob[None].astype(np.float32),
            versions=versions,
        )

    # ------------------------------------------------------------------ training
    def check_train_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        from methods.unet2ds.train import TrainConfig

        return check_settings(self.name, TrainConfig, settings)

    def train(
        self,
        recordings: Sequence[Recording],
        settings: Mapping[str, Any],
        out: Path,
        *,
        device: str = "cpu",
        progress: bool = True,
    ) -> dict[str, Any]:
        from methods.unet2ds.train import TrainConfig, save_checkpoint, train

        cfg = TrainConfig(**self.check_train_settings(settings))
        # deep-calcium trains on the CPU-sized batches here; one run is minutes, so no mid-run checkpoints.
        model, meta = train(list(recordings), cfg, None, command="fold training inside a bench run", progress=progress)
        save_checkpoint(model, meta, out / "weights.pt")
        return {
            "weights": "weights.pt",
            "iterations": cfg.iterations,
            "train_s": meta["wall_s"],
            "threshold": meta["threshold"],
            "min_area_um2": meta["min_area_um2"],
            "train_f1": meta["train_f1_mean"],
            "hardware": meta["hardware"],
        }
