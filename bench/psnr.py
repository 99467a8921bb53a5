"""Detection against peak signal-to-noise ratio (the paper's Eq. 9 and Fig. 4E).

For every ground-truth neuron: its trace with overlapping neurons separated
by linear regression, minus 0.7 x the neuropil (an annulus of 5 um around
the mask, other neurons' pixels excluded), minus a 60 s moving-median
baseline; PSNR = peak ΔF / noise SD over inactive intervals. The share of
GT neurons each method detects is then reported per PSNR bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from datasets.records import Recording
from datasets.traces import annulus_masks, demix, moving_median, peak_snr, region_traces

__all__ = ["PSNRConfig", "neuron_psnr", "detection_by_bin", "DEFAULT_BINS"]

#: PSNR bin edges of the report (the last bin is open).
DEFAULT_BINS = (0.0, 3.0, 5.0, 8.0, 12.0, 20.0, np.inf)


@dataclass(frozen=True)
class PSNRConfig:
    """Parameters of the PSNR analysis (the paper's values)."""

    neuropil_coef: float = 0.7
    annulus_um: float = 5.0
    baseline_s: float = 60.0
    chunk: int = 512


def neuron_psnr(recording: Recording, grader: str = "default", config: PSNRConfig = PSNRConfig()) -> np.ndarray:
    """PSNR of every GT neuron of ``recording`` (one pass over the movie).

    Returns
    -------
    (N,) array, NaN for neurons without an inactive interval or an empty mask.
    """
    masks = recording.ground_truth(grader)
    if masks.n == 0:
        return np.zeros(0)
    ring = annulus_masks(masks, um_per_px=recording.um_per_px, width_um=config.annulus_um)
    n_ring = np.asarray(ring.sum(axis=1), dtype=np.float64).ravel()
    # Mask sums and annulus means in one read of the movie.
    weights = sp.vstack([sp.csr_matrix(masks.matrix, dtype=np.float64),
                         sp.diags(1.0 / np.maximum(n_ring, 1)) @ sp.csr_matrix(ring, dtype=np.float64)])
    both = region_traces(recording.movie, weights, config.chunk)
    sums, neuropil = both[: masks.n], both[masks.n :]
    f = demix(sums, masks) - config.neuropil_coef * neuropil
    base = moving_median(f, int(round(config.baseline_s * recording.fps)))
    out = peak_snr(f - base, recording.fps)
    out[masks.areas == 0] = np.nan
    return out


def detection_by_bin(psnr: np.ndarray, detected: np.ndarray, bins: Sequence[float] = DEFAULT_BINS) -> list[dict]:
    """Share of neurons detected in each PSNR bin.

    Parameters
    ----------
    psnr : (N,) array
        PSNR per GT neuron (NaN ignored).
    detected : (N,) bool array
        Whether each GT neuron was matched.
    bins : sequence of float
        Bin edges; a neuron with ``edges[k] <= psnr < edges[k + 1]`` is in bin k.

    Returns
    -------
    list of dict with ``lo``, ``hi``, ``n``, ``detected`` and ``share`` (NaN for empty bins).
    """
    psnr = np.asarray(psnr, float)
    detected = np.asarray(detected, bool)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (psnr >= lo) & (psnr < hi)
        n = int(sel.sum())
        k = int(detected[sel].sum())
        out.append({"lo": float(lo), "hi": float(hi), "n": n, "detected": k, "share": k / n if n else float("nan")})
    return out
