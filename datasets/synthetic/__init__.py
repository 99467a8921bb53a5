"""Simulated two-photon movies with exact ground truth of the *active* neurons.

The default data set of the suite (no real movie can be downloaded on the
machines it runs on). The simulator follows NAOMi (Song et al. 2021) where it
gives numbers: somata with irregular borders and dark nuclei (some overlapping
in projection), bursty log-normal firing, GCaMP6f/6s kinetics with Hill
saturation, silent neurons, correlated neuropil with slow activity, neurites,
out-of-focus cells, dark vessels, vignetting, bleaching, shot and read noise,
and optional residual motion. A soma is ground truth when one of its
transients reaches the paper's d' threshold in the noisy movie.

Modules: ``params`` (:class:`SimulationParams`), ``anatomy`` (static field of
view), ``activity`` (spikes to fluorescence), ``simulate`` (streaming frames),
``truth`` (d', PSNR), ``store`` (on-disk layouts), ``providers`` (registered
data sets).
"""

from datasets.synthetic.params import INDICATORS, Indicator, SimulationParams
from datasets.synthetic.providers import (
    DEFAULT_PARAMS,
    NEUROFINDER_PARAMS,
    TINY_PARAMS,
    SyntheticDefault,
    SyntheticNeurofinder,
    SyntheticProvider,
    SyntheticTiny,
)
from datasets.synthetic.simulate import SimulationResult, simulate
from datasets.synthetic.store import write_recording

__all__ = [
    "Indicator",
    "INDICATORS",
    "SimulationParams",
    "SimulationResult",
    "simulate",
    "write_recording",
    "SyntheticProvider",
    "SyntheticDefault",
    "SyntheticNeurofinder",
    "SyntheticTiny",
    "DEFAULT_PARAMS",
    "NEUROFINDER_PARAMS",
    "TINY_PARAMS",
]
