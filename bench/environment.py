"""Hardware and software of a run, recorded once beside its results."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["environment", "hardware_summary"]

_PACKAGES = ("numpy", "scipy", "torch", "h5py", "scikit-image", "suite2p", "hnccorr", "caiman", "stnn-bench")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def environment() -> dict:
    """CPU model, core and thread counts, GPU, OS, Python and library versions."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "threads": {v: os.environ[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if v in os.environ},
        "gpu": _gpu(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def hardware_summary(env: dict) -> str:
    """One line for the results table, e.g. ``'2 x Intel Xeon ... ; no GPU'``."""
    gpu = env.get("gpu") or "no GPU"
    return f"{env.get('cpus_usable')} x {env.get('cpu')}; {gpu}"
