"""CaImAn (Giovannucci et al. 2019, eLife) Batch CNMF and Online OnACID as methods.

CaImAn is not on PyPI (the PyPI package named ``caiman`` is an unrelated
MicroPython tool: never install it). It comes from conda-forge
(``conda install -c conda-forge caiman``) or its source tree, and needs an
older stack than the suite (numpy < 2, scipy < 1.17, TensorFlow < 2.16,
setuptools < 81), so it normally lives in its own environment. The adapters
then run in a worker process under that environment's interpreter, named by
``BENCH_PYTHON_CAIMAN_BATCH`` / ``BENCH_PYTHON_CAIMAN_ONLINE`` or the
``[python]`` table of ``$XDG_CONFIG_HOME/bench/config.toml`` (see
:mod:`methods.worker`). This module imports only numpy and the suite's own
``methods`` and ``datasets`` packages at load time, so that it imports under
that older stack; CaImAn itself is imported inside :meth:`segment`.

Two methods:

* ``caiman-batch`` (:class:`CaimanBatch`): ``CNMF.fit`` on patches
  (``greedy_roi`` initialisation), ``refit`` on the whole field of view, then
  ``estimates.evaluate_components`` (SNR, spatial correlation and, when
  ``use_cnn`` is true, CaImAn's CNN classifier); the accepted components are
  kept.
* ``caiman-online`` (:class:`CaimanOnline`): ``OnACID.fit_online`` with
  ``motion_correct=False`` (the benchmark's movies are registered), a
  ``bare`` initialisation on the first ``init_batch`` frames, then one pass
  over the remaining frames. (``init_method='cnmf'`` is not offered: in
  CaImAn 1.12.1 it fails without patches (``_prepare_object`` gets no
  ``lam``), and with patches it keeps every initial component unless a
  component evaluation follows, which OnACID does not run.) ``sniper_mode`` (CaImAn's online
  CNN) is off: its model files are not part of a source install.

Parameters derived from the recording (``default_params``):

* ``fr`` - the frame rate.
* ``decay_time`` - the indicator's transient decay time as CaImAn's
  documentation gives it: GCaMP6f 0.4 s (CaImAn's default), GCaMP6s 1.0 s;
  GCaMP6m, between the two, 0.7 s; 0.4 s when the indicator is unknown.
* ``gSig`` - CaImAn's "expected half-size of a neuron" in pixels: a 6 um soma
  radius, ``round(6 / um_per_px)`` (at least 2).
* Batch patches: ``rf`` (patch half-size) ``round(4 * gSig)`` so that a patch
  is about four neuron diameters wide (CaImAn's demos: ``gSig`` 4, ``rf`` 15),
  kept above ``2 * gSig + 1`` as CaImAn requires; ``rf = 0`` (no patches) when
  the frame is smaller than two patches. ``stride`` (overlap) ``round(1.5 *
  gSig)``. ``K`` components per patch from a density of one active neuron per
  25 x 25 um^2 (at least 2); with ``rf = 0``, ``K`` counts for the whole frame.
* Online: ``K`` initial components from one active neuron per 50 x 50 um^2
  of the frame; ``expected_comps`` (preallocated) one per 15 x 15 um^2;
  ``init_batch`` 200 frames, fewer for short movies.
* Common: ``p = 1`` (AR order), ``gnb = 2`` background components,
  ``merge_thr`` 0.85, ``method_init = 'greedy_roi'``.

Component acceptance: Batch ``min_SNR`` 2.0 and ``rval_thr`` 0.85 (the
``quality`` group; CaImAn's demo values); Online ``min_SNR`` 1.5 and
``rval_thr`` 0.85 (the ``online`` group: the thresholds for adding a new
component). ``use_cnn`` is true by default only when CaImAn's CNN model files
(``cnn_model.json`` and ``cnn_model.h5``) are found in ``$CAIMAN_DATA/model``
or ``~/caiman_data/model`` when the parameters are made; their folder is
passed as ``cnn_model_dir`` and linked into the worker's private CaImAn data
folder.

Stages. Batch: :meth:`CaimanBatch.prepare` runs fit, refit and
``estimates.evaluate_components`` and stores the footprints ``A`` with each
component's SNR, space correlation (and CNN probability); :meth:`CaimanBatch.finish`
applies CaImAn's own acceptance rule (``components_evaluation.select_components_from_metrics``:
above the upper threshold of at least one metric and the lower one of all)
with ``min_SNR``, ``rval_thr``, ``min_cnn_thr`` and ``cnn_lowest``, then cuts
the masks at ``mask_thr``: its whole leave-one-out grid shares one CNMF fit per
recording. Online: the thresholds decide which components OnACID adds while
it runs, so they are expensive; only ``mask_thr`` is cheap.

Movie files: the movie is written into a fresh folder under ``CAIMAN_TEMP``
(the worker's private folder; the system temporary folder outside a worker),
never into the project or HOME: for Batch as CaImAn's C-order memory map
(``caiman.paths.memmap_frames_filename`` names it, ``caiman.load_memmap``
reads it back), for Online as a float32 HDF5 dataset ``mov``, which OnACID
streams frame by frame (it reads ``.mmap`` files whole). The folder is
removed after the run. ``CAIMAN_DATA`` and ``CAIMAN_TEMP`` point into it
during the run when they are not set already.

Masks, as CaImAn's own comparisons make them
(``caiman/tests/comparison``): ``spatial.threshold_components`` with
``thr_method='max'`` and ``maxthr=mask_thr`` (0.2): 3 x 3 median filter, keep
pixels above ``mask_thr`` times the component's maximum, binary closing, and
the connected piece (8-connectivity) with the most energy.

Timings. Batch: ``init_s`` the CaImAn import and parameter set-up; ``io_s``
writing and mapping the movie file; ``process_s`` fit, refit, evaluation and
thresholding. Online (as in the papers, initialisation apart): ``init_s`` the
import, set-up and OnACID's own initialisation on the first ``init_batch``
frames (``OnACID.t_init``); ``process_s`` the per-frame processing
(``sum(OnACID.t_online)``) plus thresholding; ``io_s`` writing the HDF5 file
and the rest of ``fit_online`` (reading frames); ``n_frames`` the frames
processed online, ``T - init_batch``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Recording
from methods._compat import package_versions
from methods.base import Method, Segmentation, load_stage, save_stage
from methods.params import Param

__all__ = [
    "CaimanBatch",
    "CaimanOnline",
    "INSTALL_HINT",
    "DECAY_TIME_BY_INDICATOR",
    "NEURON_RADIUS_UM",
    "caiman_in_this_interpreter",
    "interpreter_has_caiman",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "CaImAn is not on PyPI (the PyPI package 'caiman' is an unrelated tool: do not install it). "
    "Build its own environment with `python -m bench setup caiman` (CaImAn 1.12.x from its source tree or "
    "published archive: headless, CPU TensorFlow, numpy<2), which also points the suite at it; or set "
    "BENCH_PYTHON_CAIMAN_BATCH / BENCH_PYTHON_CAIMAN_ONLINE to the python of an environment you built"
)

#: Transient decay time (s) per indicator, for CaImAn's ``decay_time``.
DECAY_TIME_BY_INDICATOR = {"gcamp6f": 0.4, "gcamp6m": 0.7, "gcamp6s": 1.0}
#: decay_time when the indicator is unknown (CaImAn's default, GCaMP6f).
DEFAULT_DECAY_TIME = 0.4
#: Soma radius of a cortical neuron, in micrometres (CaImAn's gSig is a half-size).
NEURON_RADIUS_UM = 6.0
#: Area per active neuron (um^2) used to size K per patch (Batch).
_UM2_PER_NEURON_PATCH = 25.0**2
#: Area per neuron (um^2) for Online's initial K and its preallocated expected_comps.
_UM2_PER_NEURON_INIT = 50.0**2
_UM2_PER_NEURON_EXPECTED = 15.0**2
#: CaImAn's batch CNN model files, relative to a model folder.
_CNN_FILES = ("cnn_model.json", "cnn_model.h5")
#: Seconds allowed for checking a configured interpreter (its import of TensorFlow is slow).
_PROBE_TIMEOUT_S = 180.0

_COMMON = {
    "fr": Param(float, low=0.0, low_open=True, stage="expensive", doc="frame rate (Hz)"),
    "decay_time": Param(float, low=0.0, high=10.0, low_open=True, stage="expensive",
                        doc="indicator transient decay time (s)"),
    "gSig": Param(int, low=1, high=100, stage="expensive", doc="expected neuron half-size (px)"),
    "p": Param(int, low=0, high=2, stage="expensive", doc="order of the autoregressive model of the traces"),
    "gnb": Param(int, low=1, high=10, stage="expensive", doc="number of global background components"),
    "merge_thr": Param(float, low=0.0, high=1.0, stage="expensive",
                       doc="correlation above which components are merged"),
    "mask_thr": Param(float, low=0.0, high=1.0, low_open=True, doc="mask = pixels above this fraction of the max"),
}

BATCH_PARAMS = {
    **_COMMON,
    # Batch evaluates its components after the fit: the acceptance thresholds are cheap.
    "min_SNR": Param(float, low=0.0, high=100.0, doc="transient SNR that accepts a component"),
    "rval_thr": Param(float, low=-1.0, high=1.0, doc="space correlation that accepts a component"),
    "K": Param(int, low=1, high=10000, stage="expensive", doc="components per patch (per frame when rf = 0)"),
    "rf": Param(int, low=0, high=10000, stage="expensive", doc="patch half-size (px); 0 = no patches"),
    "stride": Param(int, low=0, high=10000, stage="expensive", doc="overlap between patches (px)"),
    "method_init": Param(str, choices=("greedy_roi", "sparse_nmf"), stage="expensive", doc="initialisation"),
    "use_cnn": Param(bool, stage="expensive", doc="also require CaImAn's CNN classifier (needs its model files)"),
    "min_cnn_thr": Param(float, low=0.0, high=1.0, doc="CNN probability a component must reach"),
    "cnn_lowest": Param(float, low=0.0, high=1.0, doc="components below this CNN probability are rejected"),
    "cnn_model_dir": Param(str, stage="expensive", doc="folder with cnn_model.json and cnn_model.h5 ('' = none)"),
    "n_processes": Param(int, low=1, high=1024, stage="expensive",
                         doc="processes (1 = serial, fastest on few cores)"),
}

ONLINE_PARAMS = {
    **_COMMON,
    # OnACID applies them while it adds components, frame by frame: expensive.
    "min_SNR": Param(float, low=0.0, high=100.0, stage="expensive", doc="transient SNR a new component must reach"),
    "rval_thr": Param(float, low=-1.0, high=1.0, stage="expensive", doc="space correlation a new component must reach"),
    "K": Param(int, low=1, high=10000, stage="expensive", doc="components found by the initialisation"),
    "init_batch": Param(int, low=10, stage="expensive", doc="frames used to initialise"),
    "init_method": Param(str, choices=("bare",), stage="expensive", doc="initialisation of the first batch"),
    "expected_comps": Param(int, low=1, high=100000, stage="expensive",
                            doc="maximum number of components (preallocated)"),
    "max_num_added": Param(int, low=0, high=100, stage="expensive", doc="new components tried per frame"),
    "min_num_trial": Param(int, low=0, high=100, stage="expensive", doc="candidate components tested per frame"),
    "normalize": Param(bool, stage="expensive", doc="normalise each pixel by its noise level"),
    "epochs": Param(int, low=1, high=10, stage="expensive", doc="passes over the movie"),
}


# ---------------------------------------------------------------------------- availability
def caiman_in_this_interpreter() -> bool:
    """Whether the real CaImAn is importable here, without importing it (TensorFlow is slow).

    The PyPI impostor named ``caiman`` has no ``source_extraction`` subpackage.
    """
    try:
        spec = importlib.util.find_spec("caiman")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(loc) / "source_extraction" / "cnmf").is_dir() for loc in spec.submodule_search_locations)


def _probe_key(python: str) -> tuple[str, float]:
    # Not realpath: a virtual environment's python is a symlink to the base interpreter.
    path = os.path.abspath(python)
    try:
        return path, os.stat(path).st_mtime
    except OSError:
        return path, 0.0


@functools.lru_cache(maxsize=16)
def _probe(key: tuple[str, float]) -> tuple[bool, str]:
    python = key[0]
    code = (
        "import caiman.source_extraction.cnmf, caiman.source_extraction.cnmf.online_cnmf, caiman;"
        "print('CAIMAN_VERSION', getattr(caiman, '__version__', '?'))"
    )
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-caiman-probe-") as tmp:
        # CaImAn's import may create its data folder: keep it out of HOME.
        env.update(CAIMAN_DATA=tmp, CAIMAN_TEMP=tmp, MPLCONFIGDIR=tmp, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            r = subprocess.run(
                [python, "-c", code],
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT_S,
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"could not run {python}: {exc}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no error output"])[-1]
        return False, f"{python} cannot import caiman.source_extraction.cnmf ({last})"
    return True, ""


def interpreter_has_caiman(python: str) -> tuple[bool, str]:
    """Whether ``python`` imports the real CaImAn (checked once per interpreter file; slow: ~10-20 s)."""
    return _probe(_probe_key(python))


def _availability(method: str) -> tuple[bool, str]:
    from methods.worker import interpreter_for

    try:
        python = interpreter_for(method)
    except InputError as exc:
        return False, str(exc)
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        if caiman_in_this_interpreter():
            return True, ""
        return False, f"CaImAn is not importable in {sys.executable} and no CaImAn interpreter is configured. " + (
            INSTALL_HINT
        )
    ok, why = interpreter_has_caiman(python)
    if ok:
        return True, ""
    return False, f"{why}. {INSTALL_HINT}"


# ---------------------------------------------------------------------------- derived parameters
def _decay_time(recording: Recording) -> float:
    return DECAY_TIME_BY_INDICATOR.get((recording.indicator or "").strip().lower(), DEFAULT_DECAY_TIME)


def _gsig(recording: Recording) -> int:
    return max(2, int(round(NEURON_RADIUS_UM / float(recording.um_per_px))))


def _cnn_model_dir() -> str:
    """A folder holding CaImAn's batch CNN model files, or ''."""
    candidates = []
    if os.environ.get("CAIMAN_DATA"):
        candidates.append(Path(os.environ["CAIMAN_DATA"]) / "model")
    candidates.append(Path.home() / "caiman_data" / "model")
    for d in candidates:
        # An empty file is a failed download or a placeholder, not a model.
        if all((d / f).is_file() and (d / f).stat().st_size > 0 for f in _CNN_FILES):
            return str(d)
    return ""


def _common_defaults(recording: Recording) -> dict[str, Any]:
    return {
        "fr": float(recording.fps),
        "decay_time": _decay_time(recording),
        "gSig": _gsig(recording),
        "p": 1,
        "gnb": 2,
        "merge_thr": 0.85,
        "mask_thr": 0.2,
    }


def _check_frame(method: str, p: dict[str, Any], shape: tuple[int, int]) -> None:
    g = p["gSig"]
    if 2 * g + 1 > min(shape):
        raise InputError(
            f"method '{method}': parameter 'gSig' = {g} px makes a neuron ({2 * g + 1} px) larger than "
            f"the {shape[0]}x{shape[1]} frame",
            hint="check the recording's pixel size (um_per_px)",
        )


class _Caiman(Method):
    requirements = ("caiman",)
    #: Seconds a harness should allow one recording by default.
    default_timeout_s = 4 * 3600.0

    def is_available(self) -> tuple[bool, str]:
        return _availability(self.name)

    def check_consistency(self, recording: Recording, p: dict[str, Any]) -> None:
        _check_frame(self.name, p, recording.frame_shape)
        self._check(recording, p)

    def _check(self, recording: Recording, p: dict[str, Any]) -> None:  # pragma: no cover - overridden
        pass


# ---------------------------------------------------------------------------- Batch
class CaimanBatch(_Caiman):
    """CaImAn Batch: CNMF on patches, refit, component evaluation."""

    name = "caiman-batch"
    description = "CaImAn Batch 1.x: CNMF (greedy_roi, patches) + refit + component evaluation (conda-forge caiman)"
    parameters = BATCH_PARAMS
    staged = True

    def default_params(self, recording: Recording) -> dict[str, Any]:
        p = _common_defaults(recording)
        g = p["gSig"]
        h, w = recording.frame_shape
        rf = max(int(round(4 * g)), 2 * g + 2)
        if 2 * rf + 1 >= min(h, w):  # a patch would cover the frame: no patches
            rf, stride = 0, 0
            area_um2 = h * w * float(recording.um_per_px) ** 2
        else:
            stride = int(round(1.5 * g))
            area_um2 = (2 * rf + 1) ** 2 * float(recording.um_per_px) ** 2
        cnn_dir = _cnn_model_dir()
        p.update(
            K=max(2, int(round(area_um2 / _UM2_PER_NEURON_PATCH))),
            rf=rf,
            stride=stride,
            method_init="greedy_roi",
            min_SNR=2.0,
            rval_thr=0.85,
            use_cnn=bool(cnn_dir),
            min_cnn_thr=0.99,
            cnn_lowest=0.1,
            cnn_model_dir=cnn_dir,
            n_processes=1,
        )
        return p

    def param_grid(self, recording: Recording) -> dict[str, list]:
        # All cheap: one CNMF per recording, then CaImAn's acceptance and the mask cut per point.
        return {"min_SNR": [1.5, 2.0, 2.5], "mask_thr": [0.1, 0.2, 0.3]}

    def _check(self, recording: Recording, p: dict[str, Any]) -> None:
        rf, g = p["rf"], p["gSig"]
        if rf:
            if rf <= 2 * g + 1:
                raise InputError(
                    f"method '{self.name}': parameter 'rf' must be > 2*gSig+1 = {2 * g + 1} (or 0 for no patches), "
                    f"got {rf}"
                )
            if p["stride"] >= rf:
                raise InputError(
                    f"method '{self.name}': parameter 'stride' (patch overlap) must be < rf = {rf}, got {p['stride']}"
                )
        if p["use_cnn"]:
            d = Path(p["cnn_model_dir"]) if p["cnn_model_dir"] else None
            if d is None or not all((d / f).is_file() for f in _CNN_FILES):
                raise InputError(
                    f"method '{self.name}': parameter 'use_cnn' is true but CaImAn's CNN model files "
                    f"({', '.join(_CNN_FILES)}) are not in cnn_model_dir={p['cnn_model_dir']!r}",
                    hint="run `caimanmanager install` in the CaImAn environment and set cnn_model_dir to "
                    "~/caiman_data/model, or use_cnn=false",
                )

    def prepare(self, recording: Recording, params: dict[str, Any], out: Path) -> dict[str, Any]:
        """CNMF fit and refit, then CaImAn's quality metrics of every component (not yet the acceptance)."""
        p = self.check_params(recording, params)
        with _caiman_folders(p.get("cnn_model_dir") if p["use_cnn"] else None) as run_dir:
            t0 = time.perf_counter()
            cm, cnmf, _ = _import_caiman(self.name)
            opts = cnmf.params.CNMFParams(params_dict=_batch_params_dict(p))
            dview = None
            if p["n_processes"] > 1:
                _, dview, _ = cm.cluster.setup_cluster(backend="multiprocessing", n_processes=p["n_processes"])
            init_s = time.perf_counter() - t0
            try:
                t1 = time.perf_counter()
                fname = _write_c_memmap(cm, recording, run_dir)
                yr, dims, n_t = cm.load_memmap(fname)
                images = np.reshape(yr.T, [n_t, *dims], order="F")
                io_s = time.perf_counter() - t1

                t2 = time.perf_counter()
                cnm = cnmf.CNMF(p["n_processes"], params=opts, dview=dview)
                cnm.fit(images)
                cnm2 = cnm.refit(images, dview=dview)
                est = cnm2.estimates
                n_found = 0 if est.A is None else est.A.shape[1]
                metrics: dict[str, np.ndarray] = {}
                if n_found:
                    # Computes SNR_comp, r_values (and cnn_preds): finish() applies the thresholds.
                    est.evaluate_components(images, cnm2.params, dview=dview)
                    metrics = {"snr": est.SNR_comp, "r_values": est.r_values}
                    if p["use_cnn"] and getattr(est, "cnn_preds", None) is not None and len(est.cnn_preds):
                        metrics["cnn_preds"] = est.cnn_preds
                process_s = time.perf_counter() - t2
                del images, yr
            finally:
                if dview is not None:
                    cm.stop_server(dview=dview)
        info = {"init_s": init_s, "process_s": process_s, "io_s": io_s, "n_frames": int(n_t), "n_found": n_found,
                "versions": _versions(cm)}
        _save_stage(out, est.A if n_found else None, tuple(int(d) for d in dims), info, metrics)
        log.info("caiman-batch: %d components after refit", n_found)
        return info

    def finish(self, recording: Recording, params: dict[str, Any], stage: Path) -> Segmentation:
        """CaImAn's own acceptance rule on the stored metrics, then the masks at ``mask_thr``."""
        p = self.check_params(recording, params)
        t0 = time.perf_counter()
        a, dims, info, metrics = _load_stage(stage)
        _, cnmf, threshold_components = _import_caiman(self.name)
        if a is None:
            keep = np.zeros(0, int)
        else:
            from caiman.components_evaluation import select_components_from_metrics

            quality = cnmf.params.CNMFParams(params_dict=_batch_params_dict(p)).quality
            keep, _, _ = select_components_from_metrics(
                a, dims, p["gSig"], metrics["r_values"], metrics["snr"],
                r_values_min=p["rval_thr"], r_values_lowest=quality["rval_lowest"],
                min_SNR=p["min_SNR"], min_SNR_reject=quality["SNR_lowest"],
                thresh_cnn_min=p["min_cnn_thr"], thresh_cnn_lowest=p["cnn_lowest"],
                use_cnn=p["use_cnn"] and "cnn_preds" in metrics, predictions=metrics.get("cnn_preds"),
            )
            keep = np.asarray(keep, dtype=int)
        masks = _components_to_masks(threshold_components, a, dims, keep, p["mask_thr"])
        log.info("caiman-batch: %d of %d components accepted, %d masks", len(keep), info["n_found"], len(masks))
        return Segmentation.from_stage(masks, p, info, time.perf_counter() - t0)


def _batch_params_dict(p: dict[str, Any]) -> dict:
    return {
        "data": {"fr": p["fr"], "decay_time": p["decay_time"]},
        "init": {"K": p["K"], "gSig": [p["gSig"]] * 2, "method_init": p["method_init"], "nb": p["gnb"]},
        "patch": {
            "rf": p["rf"] or None,
            "stride": p["stride"] if p["rf"] else None,
            "only_init": True,
            "n_processes": p["n_processes"],
        },
        "preprocess": {"p": p["p"]},
        "temporal": {"p": p["p"]},
        "merging": {"merge_thr": p["merge_thr"]},
        "quality": {
            "min_SNR": p["min_SNR"],
            "rval_thr": p["rval_thr"],
            "use_cnn": p["use_cnn"],
            "min_cnn_thr": p["min_cnn_thr"],
            "cnn_lowest": p["cnn_lowest"],
        },
    }


# ---------------------------------------------------------------------------- Online
class CaimanOnline(_Caiman):
    """CaImAn Online: OnACID on registered frames (no motion correction)."""

    name = "caiman-online"
    description = "CaImAn Online 1.x: OnACID, bare initialisation, no motion correction (conda-forge caiman)"
    parameters = ONLINE_PARAMS
    staged = True

    def default_params(self, recording: Recording) -> dict[str, Any]:
        p = _common_defaults(recording)
        h, w = recording.frame_shape
        area_um2 = h * w * float(recording.um_per_px) ** 2
        p.update(
            K=max(2, int(round(area_um2 / _UM2_PER_NEURON_INIT))),
            init_batch=int(min(200, max(10, recording.n_frames // 5))),
            init_method="bare",
            expected_comps=max(200, int(round(area_um2 / _UM2_PER_NEURON_EXPECTED))),
            max_num_added=5,
            min_num_trial=10,
            normalize=True,
            epochs=1,
            min_SNR=1.5,
            rval_thr=0.85,
        )
        return p

    def param_grid(self, recording: Recording) -> dict[str, list]:
        # One OnACID per min_SNR (it decides which components are added); the mask cut is cheap.
        return {"min_SNR": [1.0, 1.5, 2.5], "mask_thr": [0.1, 0.2, 0.3]}

    def _check(self, recording: Recording, p: dict[str, Any]) -> None:
        if p["init_batch"] >= recording.n_frames:
            raise InputError(
                f"method '{self.name}': parameter 'init_batch' must be < the recording's {recording.n_frames} frames, "
                f"got {p['init_batch']}"
            )

    def prepare(self, recording: Recording, params: dict[str, Any], out: Path) -> dict[str, Any]:
        """OnACID over the movie; its components' footprints are the stage."""
        p = self.check_params(recording, params)
        with _caiman_folders(None) as run_dir:
            t0 = time.perf_counter()
            cm, cnmf, _ = _import_caiman(self.name)
            from caiman.source_extraction.cnmf.online_cnmf import OnACID

            setup_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            fname = _write_hdf5(recording, run_dir / "movie.h5")
            write_s = time.perf_counter() - t1

            t2 = time.perf_counter()
            opts = cnmf.params.CNMFParams(params_dict=_online_params_dict(p, fname))
            cnm = OnACID(params=opts)
            setup_s += time.perf_counter() - t2
            t3 = time.perf_counter()
            cnm.fit_online()
            fit_s = time.perf_counter() - t3
            t_init = float(cnm.t_init)
            t_frames = float(np.sum(cnm.t_online)) if len(cnm.t_online) else 0.0
            est = cnm.estimates
            n_found = 0 if est.A is None else est.A.shape[1]
            dims = tuple(int(d) for d in est.dims) if n_found else tuple(recording.frame_shape)
        info = {
            # As in the papers: initialisation apart from the per-frame processing.
            "init_s": setup_s + t_init,
            "process_s": t_frames,
            "io_s": write_s + max(0.0, fit_s - t_init - t_frames),
            "n_frames": int(recording.n_frames - p["init_batch"]),
            "n_found": n_found,
            "versions": _versions(cm),
        }
        _save_stage(out, est.A if n_found else None, dims, info, {})
        log.info("caiman-online: %d components", n_found)
        return info

    def finish(self, recording: Recording, params: dict[str, Any], stage: Path) -> Segmentation:
        """Every OnACID component, as a mask at ``mask_thr``."""
        p = self.check_params(recording, params)
        t0 = time.perf_counter()
        a, dims, info, _ = _load_stage(stage)
        _, _, threshold_components = _import_caiman(self.name)
        keep = np.arange(0 if a is None else a.shape[1])
        masks = _components_to_masks(threshold_components, a, dims, keep, p["mask_thr"])
        log.info("caiman-online: %d components, %d masks", info["n_found"], len(masks))
        return Segmentation.from_stage(masks, p, info, time.perf_counter() - t0)


def _online_params_dict(p: dict[str, Any], fname: Path) -> dict:
    return {
        "data": {"fnames": [str(fname)], "fr": p["fr"], "decay_time": p["decay_time"], "var_name_hdf5": "mov"},
        "init": {"K": p["K"], "gSig": [p["gSig"]] * 2, "nb": p["gnb"]},
        "preprocess": {"p": p["p"]},
        "temporal": {"p": p["p"]},
        "merging": {"merge_thr": p["merge_thr"]},
        "online": {
            "motion_correct": False,
            "init_batch": p["init_batch"],
            "init_method": p["init_method"],
            "expected_comps": p["expected_comps"],
            "max_num_added": p["max_num_added"],
            "min_num_trial": p["min_num_trial"],
            "min_SNR": p["min_SNR"],
            "rval_thr": p["rval_thr"],
            "normalize": p["normalize"],
            "epochs": p["epochs"],
            "sniper_mode": False,
            "ds_factor": 1,
            "show_movie": False,
            "save_online_movie": False,
        },
        "quality": {"min_SNR": p["min_SNR"], "rval_thr": p["rval_thr"], "use_cnn": False},
    }


# ---------------------------------------------------------------------------- shared run helpers
@contextlib.contextmanager
def _caiman_folders(cnn_model_dir: str | None) -> Iterator[Path]:
    """A fresh run folder under CAIMAN_TEMP (else the system temp), removed afterwards.

    CAIMAN_DATA and CAIMAN_TEMP are pointed into it while they are unset or
    missing, so that CaImAn never writes into HOME. With ``cnn_model_dir``,
    the model files are linked into ``$CAIMAN_DATA/model``, where CaImAn
    looks for them.
    """
    base = os.environ.get("CAIMAN_TEMP")
    if not (base and os.path.isdir(base)):
        base = None
    run_dir = Path(tempfile.mkdtemp(prefix="caiman-run-", dir=base))
    saved = {k: os.environ.get(k) for k in ("CAIMAN_DATA", "CAIMAN_TEMP")}
    try:
        if not (saved["CAIMAN_TEMP"] and os.path.isdir(saved["CAIMAN_TEMP"])):
            os.environ["CAIMAN_TEMP"] = str(run_dir)
        if not saved["CAIMAN_DATA"]:
            os.environ["CAIMAN_DATA"] = str(run_dir / "caiman_data")
        if cnn_model_dir:
            model = Path(os.environ["CAIMAN_DATA"]) / "model"
            model.mkdir(parents=True, exist_ok=True)
            for f in _CNN_FILES:
                target = model / f
                if not target.exists():
                    target.symlink_to(Path(cnn_model_dir) / f)
        yield run_dir
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(run_dir, ignore_errors=True)


def _import_caiman(method: str):
    """``caiman``, ``caiman.source_extraction.cnmf`` and ``threshold_components``, or a clear error."""
    try:
        import caiman as cm
        import caiman.source_extraction.cnmf as cnmf
        from caiman.source_extraction.cnmf.spatial import threshold_components
    except ModuleNotFoundError as exc:
        raise InputError(
            f"method '{method}': cannot import CaImAn in {sys.executable}: {exc}", hint=INSTALL_HINT
        ) from exc
    return cm, cnmf, threshold_components


def _chunk_frames(shape: tuple[int, int], target_bytes: int = 2**27) -> int:
    return max(1, int(target_bytes // max(1, shape[0] * shape[1] * 4)))


def _write_c_memmap(cm, recording: Recording, folder: Path) -> str:
    """The movie as CaImAn's C-order memory map, written chunk by chunk (bounded memory).

    CaImAn's layout: float32 ``Yr`` of shape (pixels, T) in C order, pixels
    flattened in Fortran order of (H, W); the file name carries the
    dimensions (``caiman.paths.memmap_frames_filename``).
    """
    n_t = recording.n_frames
    h, w = recording.frame_shape
    name = cm.paths.memmap_frames_filename("Yr", (h, w), n_t, "C")
    path = folder / name
    yr = np.memmap(path, dtype=np.float32, mode="w+", shape=(h * w, n_t), order="C")
    start = 0
    for chunk in recording.movie.chunks(_chunk_frames((h, w))):
        n = len(chunk)
        yr[:, start : start + n] = np.asarray(chunk, dtype=np.float32).reshape(n, -1, order="F").T
        start += n
    yr.flush()
    del yr
    return str(path)


def _write_hdf5(recording: Recording, path: Path) -> Path:
    """The movie as a float32 (T, H, W) HDF5 dataset ``mov``, chunked per frame."""
    import h5py

    h, w = recording.frame_shape
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("mov", shape=(recording.n_frames, h, w), dtype=np.float32, chunks=(1, h, w))
        start = 0
        for chunk in recording.movie.chunks(_chunk_frames((h, w))):
            ds[start : start + len(chunk)] = np.asarray(chunk, dtype=np.float32)
            start += len(chunk)
    return path


def _save_stage(out: Path, a, dims: tuple[int, int], info: dict, metrics: dict[str, np.ndarray]) -> None:
    """The expensive stage's result: footprints ``a`` (pixels x components, sparse CSC), metrics, timings."""
    import scipy.sparse as sp

    arrays = {f"metric_{k}": np.asarray(v, dtype=float) for k, v in metrics.items()}
    if a is not None:
        a = sp.csc_matrix(a)
        arrays.update(a_data=a.data, a_indices=a.indices, a_indptr=a.indptr, a_shape=np.asarray(a.shape))
    save_stage(out, {**info, "dims": list(dims)}, arrays)


def _load_stage(stage: Path):
    """``(a or None, dims, info, metrics)`` as :func:`_save_stage` wrote them."""
    import scipy.sparse as sp

    info, arrays = load_stage(stage, "CaImAn")
    a = None
    if "a_data" in arrays:
        a = sp.csc_matrix((arrays["a_data"], arrays["a_indices"], arrays["a_indptr"]), shape=tuple(arrays["a_shape"]))
    metrics = {k.removeprefix("metric_"): v for k, v in arrays.items() if k.startswith("metric_")}
    return a, tuple(int(d) for d in info["dims"]), info, metrics


def _components_to_masks(threshold_components, a, dims: tuple[int, int], keep: np.ndarray, thr: float) -> Masks:
    """Binary masks of the components ``keep`` of ``a`` (pixels in Fortran order), as CaImAn's comparisons make them."""
    if len(keep) == 0:
        return Masks.empty(dims)
    import scipy.sparse as sp

    a_keep = sp.csc_matrix(a)[:, keep]
    a_thr = sp.csc_matrix(threshold_components(a_keep, dims, medw=None, thr_method="max", maxthr=thr))
    coords = []
    for i in range(a_thr.shape[1]):
        col = a_thr[:, i]
        flat = col.indices[col.data > 0]
        if flat.size:
            rows, cols = np.unravel_index(flat, dims, order="F")
            coords.append((rows, cols))
    return Masks.from_coordinates(coords, dims) if coords else Masks.empty(dims)


def _versions(cm) -> dict[str, str]:
    versions = {"caiman": str(getattr(cm, "__version__", "unknown"))}
    versions.update(
        package_versions("numpy", "scipy", "tensorflow", "tensorflow-cpu", "opencv-python", "opencv-python-headless")
    )
    return versions
