"""Shipped STNeuroNet weights: ``<name>.pt`` (a state_dict) with ``<name>.json`` beside it.

Format
------
``<name>.pt``
    ``torch.save(model.state_dict())``: plain tensors only, so it loads with
    ``torch.load(weights_only=True)`` (no pickled code is executed).
``<name>.json``
    :class:`WeightsMetadata`: how the weights were made (command, wall time,
    hardware, iterations), how well they do (validation F1) and the
    post-processing parameters tuned on the training set (threshold,
    min_area in px at ``um_per_px``), plus the model and pre-processing
    settings needed to use them.

:func:`pretrained` loads shipped weights by name from this folder, or any
``.pt`` path.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from datasets.errors import InputError

__all__ = [
    "WEIGHTS_DIR",
    "FORMAT",
    "WeightsMetadata",
    "save_weights",
    "load_weights",
    "pretrained",
    "available",
    "resolve",
    "hardware_description",
]

logger = logging.getLogger(__name__)

#: Folder of the shipped weights.
WEIGHTS_DIR = Path(__file__).resolve().parent
#: Format tag written into every metadata file.
FORMAT = "stnn-weights-v1"


@dataclass
class WeightsMetadata:
    """What is known about a set of weights (written as JSON beside the ``.pt``).

    Attributes
    ----------
    name : str
        Short name (``"synthetic"``).
    format : str
        :data:`FORMAT`.
    command : str
        Command line that trained the weights.
    dataset : str
        Training data set.
    iterations : int
        Training iterations.
    wall_time_s : float
        Training wall time.
    hardware : str
        Device and host description.
    validation_f1 : float or None
        Mean F1 on the held-out recordings (tuned post-processing).
    threshold, min_area : float or None
        Post-processing parameters tuned on the training set (``min_area``
        in px at ``um_per_px``).
    um_per_px, fps : float or None
        Pixel size and raw frame rate of the training data.
    model : dict
        :class:`~stnn.model.STNeuroNet` keyword arguments (``tf_compat``, ...).
    preprocess : dict
        Pre-processing settings (``target_fps``, ``sigma_um``, ``border_um``).
    extra : dict
        Anything else (loss history summary, seeds, versions).
    """

    name: str = ""
    format: str = FORMAT
    command: str = ""
    dataset: str = ""
    iterations: int = 0
    wall_time_s: float = 0.0
    hardware: str = ""
    validation_f1: float | None = None
    threshold: float | None = None
    min_area: float | None = None
    um_per_px: float | None = None
    fps: float | None = None
    model: dict = field(default_factory=dict)
    preprocess: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """Pretty JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsMetadata:
        """From a parsed JSON object; unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**kwargs, extra=extra)

    def min_area_for(self, um_per_px: float) -> float | None:
        """``min_area`` converted to px at another pixel size (scaled by pixel area)."""
        if self.min_area is None:
            return None
        if not self.um_per_px:
            return float(self.min_area)
        return float(self.min_area) * (float(self.um_per_px) / um_per_px) ** 2


def hardware_description(device: torch.device | str | None = None) -> str:
    """One line naming the device (GPU model or CPU) and the host."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        from stnn.precision import cpu_bf16_flags, cpu_model_name

        bf16 = "+".join(cpu_bf16_flags()) or "no native bf16"
        name = f"CPU {cpu_model_name()} ({torch.get_num_threads()} threads; {bf16})"
    return f"{name}; torch {torch.__version__}; {platform.system()} {platform.release()}"


def save_weights(model: torch.nn.Module, path: str | Path, metadata: WeightsMetadata | None = None) -> Path:
    """Write ``model.state_dict()`` to ``path`` (``.pt``) and the metadata JSON beside it.

    Returns
    -------
    Path
        The ``.pt`` path.
    """
    path = Path(path)
    if path.suffix != ".pt":
        path = path.with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, path)
    meta = metadata or WeightsMetadata()
    if not meta.name:
        meta.name = path.stem
    if not meta.model and hasattr(model, "tf_compat"):
        meta.model = {"tf_compat": bool(model.tf_compat)}
    path.with_suffix(".json").write_text(meta.to_json())
    return path


def available() -> list[str]:
    """Names of the weights shipped in :data:`WEIGHTS_DIR`."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve(name_or_path: str | Path) -> Path:
    """The ``.pt`` file of shipped weights ``name`` or of an explicit path.

    Raises
    ------
    InputError
        If nothing is found; the message says how to train weights.
    """
    text = str(name_or_path)
    p = Path(text).expanduser()
    looks_like_path = p.suffix == ".pt" or "/" in text or "\\" in text
    if looks_like_path:
        if p.is_file():
            return p
        raise InputError(
            "weights file not found", path=p, hint="train weights with: python -m stnn train --dataset NAME"
        )
    shipped = WEIGHTS_DIR / f"{text}.pt"
    if shipped.is_file():
        return shipped
    names = available()
    raise InputError(
        f"no shipped weights '{text}': train with python -m stnn train --dataset synthetic --out DIR, "
        "then pass --weights DIR/weights.pt",
        hint=f"shipped: {', '.join(names) if names else 'none'}",
    )


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsMetadata]:
    """Read a state_dict and its metadata (empty metadata when the JSON is absent)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise InputError(f"not a readable weights file ({type(exc).__name__}: {exc})", path=path) from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a training checkpoint also works
    if not isinstance(state, dict):
        raise InputError("weights file does not hold a state_dict", path=path)
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        try:
            meta = WeightsMetadata.from_dict(json.loads(meta_path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"unreadable weights metadata ({exc})", path=meta_path) from exc
    else:
        logger.warning("%s has no metadata file %s", path, meta_path.name)
        meta = WeightsMetadata(name=path.stem)
    return state, meta


def pretrained(
    name: str | Path = "synthetic", device: torch.device | str | None = None, *, return_metadata: bool = False
):
    """STNeuroNet with shipped (or given) weights, in eval mode.

    Parameters
    ----------
    name : str or Path
        Name of shipped weights (``stnn/weights/<name>.pt``) or a ``.pt`` path.
    device : torch.device or str, optional
        Where to put the model (default CPU).
    return_metadata : bool
        Also return the :class:`WeightsMetadata`.

    Returns
    -------
    STNeuroNet or (STNeuroNet, WeightsMetadata)

    Raises
    ------
    InputError
        If the weights do not exist or do not fit the network.
    """
    from stnn.model import STNeuroNet

    path = resolve(name)
    state, meta = load_weights(path)
    model_kwargs = {k: v for k, v in (meta.model or {}).items() if k in ("tf_compat", "pad_mode")}
    model = STNeuroNet(**model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"weights do not fit STNeuroNet ({str(exc).splitlines()[0]})", path=path) from exc
    model.to(device or "cpu").eval()
    return (model, meta) if return_metadata else model
