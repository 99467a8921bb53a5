"""Speed and memory of STNeuroNet inference on a random movie (the paper's "Speed" measure).

Frames per second = binned frames / processing time, excluding reading and
writing files (the movie is generated in memory) and excluding
initialisation (model transfer, first batch prefetch; reported apart). Two
rates are reported: the network alone (forward passes) and the whole
pipeline (pre-processing + network + post-processing). The network is
randomly initialised, which does not change its cost; post-processing time
depends on how many regions the maps hold, so it is only indicative.

The random movie is generated at the binned rate (``fps`` = 6 Hz, so no
binning happens) to keep its memory at ``frames x size^2 x 2`` bytes; at
30 Hz the pre-processing would also sum five raw frames per binned frame.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .fuse import inference_copy
from .infer import _resolve_device, segment
from .model import STNeuroNet
from .precision import resolve_precision
from .tiling import plan_tiles
from .weights import hardware_description

__all__ = ["PerfResult", "perf"]

logger = logging.getLogger(__name__)


@dataclass
class PerfResult:
    """Measured rates (binned frames per second) and peak memory."""

    size: int
    frames: int
    device: str
    hardware: str
    windows_per_batch: int
    precision: str
    network_fps: float
    pipeline_fps: float
    init_s: float
    preprocess_s: float
    network_s: float
    postprocess_s: float
    n_windows: int
    threads: int
    preprocess_cpu_s: float
    network_cpu_s: float
    peak_memory_mib: float
    memory_kind: str
    movie_mib: float
    tile: int = 0
    n_tiles: int = 1
    tile_margin: int = 0
    tile_source: str = ""
    tile_margin_source: str = ""
    weights: str = "random"
    margin_probe_s: float = 0.0

    def as_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    def summary(self) -> str:
        """Lines for people."""
        return (
            f"STNeuroNet {self.size}x{self.size}, {self.frames} binned frames on {self.hardware}\n"
            f"  network alone : {self.network_fps:8.2f} frames/s ({self.network_s:.1f} s, {self.n_windows} windows, "
            f"{self.windows_per_batch} per batch, {self.precision})\n"
            f"  whole pipeline: {self.pipeline_fps:8.2f} frames/s (pre-processing {self.preprocess_s:.1f} s, "
            f"post-processing {self.postprocess_s:.2f} s; init {self.init_s:.2f} s excluded)\n"
            f"  CPU time      : network {self.network_cpu_s:.1f} s, pre-processing {self.preprocess_cpu_s:.1f} s "
            f"({self.threads} threads; wall-clock rates suffer when other processes share the cores)\n"
            f"  peak memory   : {self.peak_memory_mib:.0f} MiB ({self.memory_kind}; the movie itself is "
            f"{self.movie_mib:.0f} MiB)\n"
            f"  tiles         : "
            + (f"{self.n_tiles} of {self.tile} px, margin {self.tile_margin} px" if self.tile else "none (whole frame)")
            + f" ({self.tile_source})"
            + (
                f"\n  tile margin   : {self.tile_margin_source}; probe {self.margin_probe_s:.1f} s (in the pipeline)"
                if self.tile
                else ""
            )
            + f"\n  weights       : {self.weights}"
        )


def _rss_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def perf(
    size: int = 488,
    frames: int = 1200,
    device: torch.device | str | None = None,
    *,
    windows_per_batch: int = 1,
    amp: bool | None = None,
    fps: float = 6.0,
    seed: int = 0,
    warmup: bool = True,
    precision: str = "auto",
    tile: int | str | None = "auto",
    tile_margin: str | int = "auto",
    weights: str | None = None,
) -> PerfResult:
    """Time :func:`stnn.infer.segment` on a random ``(frames, size, size)`` uint16 movie.

    Parameters
    ----------
    size : int
        Frame side (488: the padded ABO frame).
    frames : int
        Binned frames.
    device : torch.device or str, optional
        Default: CUDA if available.
    windows_per_batch : int
        Windows per forward pass.
    amp : bool, optional
        ``False`` forces float32 (as ``precision='fp32'``).
    fps : float
        Frame rate of the generated movie (6 Hz: no binning).
    seed : int
        Movie and network seed.
    warmup : bool
        Run one untimed window first (cuDNN autotuning, oneDNN kernel
        creation, lazy allocations).
    precision : {'auto', 'fp32', 'bf16'}
        Network precision (:mod:`stnn.precision`); the one used is reported.
        Run one untimed window first (cuDNN autotuning, lazy allocations), on a tile when tiled.
    tile : int, 'auto' or None
        Spatial tiles (see :func:`stnn.infer.segment`).
    tile_margin : 'auto', 'exact' or int
        Overlap of tiles (see :func:`stnn.infer.segment`). A random network
        reaches as far as its receptive field, so ``'auto'`` measures a
        useful margin only with trained ``weights``.
    weights : str, optional
        Shipped weights name or ``.pt`` path; default a randomly initialised
        network (the same cost per frame).

    Returns
    -------
    PerfResult
    """
    dev = _resolve_device(device)
    rng = np.random.default_rng(seed)
    movie = rng.integers(50, 150, size=(frames, size, size), dtype=np.uint16)
    torch.manual_seed(seed)
    if weights is None:
        model = STNeuroNet().to(dev).eval()
    else:
        from .weights import pretrained

        model = pretrained(weights, device=dev)
    dtype = torch.float32 if amp is False else resolve_precision(precision, dev)
    if warmup:
        # On the shape the network will see: the whole frame, or one tile.
        plan = plan_tiles(
            (size, size), model, tile, device=dev, frames=120, windows_per_batch=windows_per_batch, margin=tile_margin
        )
        side = plan.tile or size
        net = inference_copy(model, dtype, dev)
        with torch.inference_mode():
            net(torch.randn(windows_per_batch, 1, min(120, frames), side, side, device=dev))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        del net
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    res = segment(
        movie,
        model,
        fps=fps,
        um_per_px=0.78,
        device=dev,
        windows_per_batch=windows_per_batch,
        amp=amp,
        threshold=0.5,
        precision=precision,
        tile=tile,
        tile_margin=tile_margin,
    )
    tm = res.timings
    if dev.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(dev) / 2**20, "torch.cuda.max_memory_allocated"
    else:
        peak, kind = _rss_peak_mib(), "process peak RSS (ru_maxrss)"
    return PerfResult(
        size=size,
        frames=frames,
        device=str(dev),
        hardware=hardware_description(dev),
        windows_per_batch=windows_per_batch,
        precision=tm.precision,
        network_fps=tm.network_fps,
        pipeline_fps=tm.fps,
        init_s=tm.init_s,
        preprocess_s=tm.preprocess_s,
        network_s=tm.network_s,
        postprocess_s=tm.postprocess_s,
        n_windows=tm.n_windows,
        threads=torch.get_num_threads(),
        preprocess_cpu_s=tm.preprocess_cpu_s,
        network_cpu_s=tm.network_cpu_s,
        peak_memory_mib=peak,
        memory_kind=kind,
        movie_mib=movie.nbytes / 2**20,
        tile=tm.tile,
        n_tiles=tm.n_tiles,
        tile_margin=tm.tile_margin,
        tile_source=tm.tile_source,
        tile_margin_source=tm.tile_margin_source,
        weights="random" if weights is None else str(weights),
        margin_probe_s=tm.margin_probe_s,
    )


def _main() -> None:  # pragma: no cover - convenience: python -m stnn.perf
    logging.basicConfig(level=logging.INFO)
    t = time.perf_counter()
    print(perf(size=64, frames=240, device="cpu").summary(), f"\n({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":  # pragma: no cover
    _main()
