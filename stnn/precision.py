"""Numeric precision of STNeuroNet: what the hardware runs natively, and the user's choice.

``precision`` is one of ``'auto'``, ``'fp32'`` or ``'bf16'``:

* ``'auto'``: bfloat16 where it is native (a CPU with AVX-512 BF16 or AMX-BF16
  instructions, detected at run time; a CUDA GPU that supports bfloat16),
  float16 on an older CUDA GPU (the former AMP default), else float32;
* ``'fp32'``: float32 everywhere;
* ``'bf16'``: bfloat16; where it is not native (emulated bfloat16 is slower
  than float32, not faster) a warning is logged and float32 is used.

Choosing bfloat16 on a CPU without the instructions falls back rather than
refusing, so that one command line works across machines; the precision
actually used is reported (``Timings.precision``, ``stnn perf``).
"""

from __future__ import annotations

import functools
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from datasets.errors import InputError

__all__ = ["PRECISIONS", "cpu_model_name", "cpu_bf16_flags", "cpu_has_native_bf16", "resolve_precision",
           "precision_name", "autocast", "autocast_for"]

logger = logging.getLogger(__name__)

#: Accepted values of ``precision``.
PRECISIONS = ("auto", "fp32", "bf16")

_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_bf16_flags() -> tuple[str, ...]:
    """The bfloat16 instruction sets this CPU reports (``avx512_bf16``, ``amx_bf16``), detected at run time."""
    return tuple(f for f in _BF16_FLAGS if f in _cpuinfo_flags())


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions that oneDNN uses (AVX-512 BF16 or AMX-BF16).

    Asks torch's own CPU detection (``torch.cpu.get_capabilities``), else the
    ``/proc/cpuinfo`` flags; oneDNN must be available for either to matter.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    get_caps = getattr(torch.cpu, "get_capabilities", None)
    if get_caps is not None:
        try:
            caps = get_caps()
        except Exception:  # noqa: BLE001 - an introspection helper must not break inference
            caps = {}
        if any(flag in caps for flag in _BF16_FLAGS):
            return any(bool(caps.get(flag)) for flag in _BF16_FLAGS)
    return bool(_cpuinfo_flags() & set(_BF16_FLAGS))


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype the network's 3-D convolutions use for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {'auto', 'fp32', 'bf16'}
        See the module docstring.
    device : torch.device or str

    Returns
    -------
    torch.dtype
        float32, bfloat16 or (``'auto'`` on a CUDA GPU without bfloat16) float16.

    Raises
    ------
    InputError
        An unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if precision == "fp32":
        return torch.float32
    if dev.type == "cuda":
        native = _cuda_bf16()
        if precision == "auto":
            return torch.bfloat16 if native else torch.float16
    elif dev.type == "cpu":
        native = cpu_has_native_bf16()
        if precision == "auto":
            return torch.bfloat16 if native else torch.float32
    else:
        native = False
        if precision == "auto":
            return torch.float32
    if not native:
        _warn_once(dev)
        return torch.float32
    return torch.bfloat16


@functools.cache
def _warn_once(dev: torch.device) -> None:
    logger.warning(
        "precision 'bf16' asked for, but %s has no native bfloat16 (CPU: AVX-512 BF16 / AMX); using fp32",
        "this CPU" if dev.type == "cpu" else f"device {dev}",
    )


def precision_name(dtype: torch.dtype) -> str:
    """``'fp32'``, ``'bf16'`` or ``'fp16'``."""
    return _NAMES[dtype]


def autocast(device: torch.device | str, dtype: torch.dtype) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a null context for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def autocast_for(device: torch.device | str, amp: bool | None) -> AbstractContextManager:
    """Autocast as the ``amp`` switch asks: float32 when False, else the ``'auto'`` precision of ``device``."""
    dev = torch.device(device)
    return autocast(dev, torch.float32 if amp is False else resolve_precision("auto", dev))
