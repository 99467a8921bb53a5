"""STNeuroNet (the suite's PyTorch reimplementation, package ``stnn``) as a method.

Staged: :meth:`STNeuroNetMethod.prepare` runs pre-processing and the network
(the expensive part) and saves the probability maps; :meth:`finish`
post-processes them with a threshold and minimum area (cheap), so a
post-processing grid runs the network once per recording. Timings follow the
paper: initialisation (model load, first-batch prefetch) apart from
processing (pre-processing, network, post-processing).

It learns: :meth:`train` trains on a data set's own training recordings
(``stnn.train``), resuming from the last checkpoint, and tunes threshold and
minimum area on them (the paper's procedure).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets.errors import InputError
from datasets.records import Recording
from methods.base import Method, Segmentation, _source_hash
from methods.params import Param, check_settings

__all__ = ["STNeuroNetMethod"]


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
    devices = ("cpu", "cuda")
    staged = True
    learns = True
    tuned_with_weights = ("threshold", "min_area_um2")
    shipped_dataset = "synthetic"
    #: None for threshold, min_area_um2 and overlap means "the weights' tuned value" / "none".
    parameters = {
        "weights": Param(str, stage="expensive", doc="shipped weights name or .pt path"),
        "threshold": Param(float, low=0.0, high=1.0, optional=True, doc="probability threshold"),
        "min_area_um2": Param(float, low=0.0, optional=True, doc="minimum mask area in um^2"),
        "overlap": Param(str, choices=("mean", "median"), optional=True, stage="expensive",
                         doc="overlapping windows combined by mean or median"),
        "windows_per_batch": Param(int, low=1, stage="expensive", doc="windows per forward pass"),
        "device": Param(str, choices=("cpu", "cuda"), stage="expensive", doc="torch device"),
        "precision": Param(str, choices=("auto", "fp32", "bf16"), stage="expensive",
                           doc="network precision: auto = bf16 where the CPU/GPU runs it natively, else fp32"),
    }
    #: Training schedules (``bench run --train-schedule``); settings of :class:`stnn.train.TrainConfig`.
    train_schedules = {
        # The authors': 144x144x120 crops, batch 3, Adam 5e-4, ~36,000 iterations (a GPU job).
        "paper": {},
        # CPU-feasible: fine-tunes the shipped weights on 64x64 crops for 300 iterations.
        "quick": {"init": "synthetic", "crop": [64, 64], "iterations": 300, "lr": 5e-4,
                  "checkpoint_every": 50, "validate_every": 0},
    }

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
            "precision": "auto",
        }

    def param_grid(self, recording: Recording) -> dict[str, list]:
        # The weights carry a threshold and minimum area tuned on their training
        # set; leave-one-out tuning refines them around those values.
        return {"threshold": [None, 0.8, 0.9, 0.95], "min_area_um2": [None, 30.0, 50.0]}

    # ------------------------------------------------------------------ stages
    def prepare(self, recording: Recording, params: dict[str, Any], out: Path) -> dict[str, Any]:
        p = self.check_params(recording, params)
        t0 = time.perf_counter()
        import stnn
        from stnn.infer import probability_stage

        model, meta = stnn.pretrained(p["weights"], device=p["device"], return_metadata=True)
        load_s = time.perf_counter() - t0
        stage = probability_stage(
            recording,
            model,
            device=p["device"],
            overlap=p["overlap"],
            windows_per_batch=p["windows_per_batch"],
            metadata=meta,
            precision=p["precision"],
        )
        stage.save(out)
        t = stage.timings
        return {
            "init_s": load_s + t.init_s,
            "process_s": t.preprocess_s + t.margin_probe_s + t.network_s,
            "versions": {"stnn-weights": str(p["weights"]), "weights_iterations": getattr(meta, "iterations", None)},
        }

    def finish(self, recording: Recording, params: dict[str, Any], stage: Path) -> Segmentation:
        from stnn.infer import ProbabilityStage

        p = self.check_params(recording, params)
        st = ProbabilityStage.load(stage)
        min_area = p["min_area_um2"]
        masks = st.masks(p["threshold"], None if min_area is None else min_area / recording.um_per_px**2)
        t = st.timings
        return Segmentation(
            masks=masks,
            params=p,
            init_s=t.init_s,
            process_s=t.process_s,
            n_frames=recording.n_frames,
            probability_maps=st.full_maps(),
            versions={"stnn-weights": str(p["weights"]), "precision": t.precision},
        )

    # ------------------------------------------------------------------ training
    def check_train_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        from stnn.train import TrainConfig

        s = check_settings(self.name, TrainConfig, settings, extra=("init",))
        if s.get("init") is not None:
            from stnn.weights import resolve

            resolve(s["init"])  # an unknown name or missing file fails at planning
        return s

    def train(
        self,
        recordings: Sequence[Recording],
        settings: Mapping[str, Any],
        out: Path,
        *,
        device: str = "cpu",
        progress: bool = True,
    ) -> dict[str, Any]:
        from stnn.train import TrainConfig, train

        s = self.check_train_settings(settings)
        init = s.pop("init", None)
        result = train(
            list(recordings),
            out,
            config=TrainConfig(**s),
            device=device,
            resume=True,
            progress=progress,
            init=init,
            command="fold training inside a bench run",
        )
        meta = result.metadata
        return {
            "weights": result.weights_path.name,
            "iterations": meta.iterations,
            "train_s": meta.wall_time_s,
            "threshold": meta.threshold,
            "min_area_px": meta.min_area,
            "train_f1": (meta.extra or {}).get("train_f1"),
            "hardware": meta.hardware,
        }

    def code_version(self) -> str:
        return _source_hash("stnn", "methods.stnn")
