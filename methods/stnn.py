"""STNeuroNet (the suite's PyTorch reimplementation, package ``stnn``) as a method.

The adapter loads trained weights (``stnn.pretrained``: shipped weights by
name, or a ``.pt`` path), runs the whole pipeline of :func:`stnn.infer.segment`
and reports the paper's timings: initialisation (model load and first-batch
prefetch) apart from processing (pre-processing, network, post-processing).
"""

from __future__ import annotations

import time
from typing import Any

from datasets.errors import InputError
from datasets.records import Recording
from methods.base import Method, Segmentation
from methods.params import Param, validate

__all__ = ["STNeuroNetMethod"]

#: Binned frames per network window in the paper.
WINDOW = 120


class STNeuroNetMethod(Method):
    """STNeuroNet with trained weights.

    Parameters of ``segment``: ``weights`` (shipped name or ``.pt`` path),
    ``threshold`` and ``min_area_um2`` (post-processing; default: the values
    tuned with the weights), ``overlap`` (None, 'mean' or 'median': the
    paper's speed/accuracy trade-off), ``windows_per_batch`` and ``device``.
    """

    name = "stnn"
    description = "STNeuroNet (PyTorch reimplementation): 3-D CNN on 120-frame batches, fused masks"
    requirements = ("torch",)
    weights = "synthetic"

    #: Parameters; None for threshold, min_area_um2 and overlap means "the weights' tuned value" / "none".
    SPEC = {
        "weights": Param(str, doc="shipped weights name or .pt path"),
        "threshold": Param(float, low=0.0, high=1.0, doc="probability threshold"),
        "min_area_um2": Param(float, low=0.0, doc="minimum mask area in um^2"),
        "overlap": Param(str, choices=("mean", "median"), doc="overlapping windows combined by mean or median"),
        "windows_per_batch": Param(int, low=1, doc="windows per forward pass"),
        "device": Param(str, choices=("cpu", "cuda"), doc="torch device"),
    }
    OPTIONAL = ("threshold", "min_area_um2", "overlap")

    def is_available(self) -> tuple[bool, str]:
        ok, reason = super().is_available()
        if not ok:
            return ok, reason
        from stnn.weights import resolve

        try:
            resolve(self.weights)
        except InputError as exc:
            return False, str(exc)
        return True, ""

    def default_params(self, recording: Recording) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "threshold": None,
            "min_area_um2": None,
            "overlap": None,
            "windows_per_batch": 2,
            "device": "cpu",
        }

    def param_grid(self, recording: Recording) -> dict[str, list]:
        # The weights carry a threshold and minimum area tuned on their training
        # set; leave-one-out tuning refines them around those values.
        return {"threshold": [None, 0.8, 0.9, 0.95], "min_area_um2": [None, 30.0, 50.0]}

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        merged = {**self.default_params(recording), **params}
        given = {k: v for k, v in merged.items() if not (k in self.OPTIONAL and v is None)}
        params = {**dict.fromkeys(self.OPTIONAL), **validate(self.name, self.SPEC, {}, given)}
        if recording.movie is None:
            raise InputError(f"method '{self.name}' needs the movie of recording {recording.name}")
        t0 = time.perf_counter()
        import stnn
        from stnn.infer import segment

        model, meta = stnn.pretrained(params["weights"], device=params["device"], return_metadata=True)
        load_s = time.perf_counter() - t0
        min_area = params["min_area_um2"]
        result = segment(
            recording,
            model,
            device=params["device"],
            threshold=params["threshold"],
            min_area=None if min_area is None else min_area / recording.um_per_px**2,
            overlap=params["overlap"],
            windows_per_batch=params["windows_per_batch"],
            metadata=meta,
        )
        t = result.timings
        return Segmentation(
            masks=result.masks,
            params=params,
            init_s=load_s + t.init_s,
            process_s=t.process_s,
            n_frames=recording.n_frames,
            probability_maps=result.prob_maps,
            versions={"stnn-weights": str(params["weights"]), "weights_iterations": getattr(meta, "iterations", None)},
        )
