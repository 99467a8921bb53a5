"""HNCcorr (Spaen et al. 2019, eNeuro; PyPI ``hnccorr`` 2020.5) as a method.

HNCcorr segments cells one candidate seed at a time by a parametric minimum
cut on a correlation-similarity graph of a patch around the seed. As in its
published usage, it runs on a temporally averaged movie: every
``average_frames`` consecutive frames are averaged into one. Its authors
averaged 10 frames of Neurofinder's 7 Hz movies, 1.4 s; the default keeps
those 1.4 s at the recording's rate (:data:`AVERAGE_S`): 10 frames at 7 Hz,
42 at 30 Hz.

Parameters derived from the recording (:meth:`HNCcorr.default_params`), with
the neuron diameter ``d = 12 um / um_per_px`` (HNCcorr's defaults, 80 / 40 /
200 px cells and a 31 px patch, correspond to d ~ 10 px, i.e. Neurofinder's
~1.15 um pixels):

* ``postprocessor_preferred_cell_size`` = pi d^2 / 4; ``..._min_...`` half and
  ``..._max_...`` 2.5 times that;
* ``patch_size`` ~ 3 d (odd, >= 15), ``negative_seed_circle_radius`` ~ d,
  ``seeder_grid_size`` ~ d / 2, ``seeder_exclusion_padding`` ~ 0.4 d;
* ``percentage_of_seeds`` 0.4 (HNCcorr's default).

Installation traps (handled here or documented for the installer):

* its dependency ``sparsecomputation`` requires the deprecated ``sklearn``
  placeholder, which refuses to install unless
  ``SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True`` is set (or install
  hnccorr, closure-problem, pseudoflow and sparsecomputation with
  ``--no-deps`` plus scikit-learn and networkx);
* it calls ``np.product``, removed in numpy 2: the adapter points the ``np``
  of HNCcorr's own modules at a numpy stand-in with that alias
  (:func:`methods._compat.patch_numpy_aliases`), leaving numpy itself alone.

HNCcorr prints a line per candidate; the adapter swallows that output and
logs a summary. It is slow (pure-Python graph code, roughly 0.5-1 s per seed
on one core): :attr:`HNCcorr.default_timeout_s` is what a harness should
allow per recording by default.

Timings: ``init_s`` the import and configuration; ``io_s`` reading and
averaging the movie; ``process_s`` ``HNCcorr.segment``; ``n_frames`` the
frames of the original movie.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import math
import time
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.records import Recording
from methods._compat import package_versions, patch_numpy_aliases
from methods.base import Method, Segmentation
from methods.params import Param

__all__ = ["HNCcorr", "INSTALL_HINT", "average_frames"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True pip install ".[hnccorr]"  '
    "(or: pip install --no-deps hnccorr closure-problem pseudoflow sparsecomputation "
    "&& pip install scikit-learn networkx)"
)
NEURON_DIAMETER_UM = 12.0
#: CPU seconds per pixel pair of one seed's patch, and per pair and averaged frame (:meth:`HNCcorr.estimate_s`).
S_PER_PAIR = 2.8e-7
S_PER_PAIR_FRAME = 6.1e-10
#: Seconds of movie averaged into one frame (HNCcorr's published 10 frames at Neurofinder's 7 Hz).
AVERAGE_S = 1.4

#: Parameters passed through to ``HNCcorrConfig``.
CONFIG_KEYS = (
    "percentage_of_seeds",
    "postprocessor_min_cell_size",
    "postprocessor_max_cell_size",
    "postprocessor_preferred_cell_size",
    "patch_size",
    "negative_seed_circle_radius",
    "seeder_grid_size",
    "seeder_exclusion_padding",
)

PARAMS = {
    "average_frames": Param(int, low=1, doc="consecutive frames averaged into one"),
    "percentage_of_seeds": Param(float, low=0.0, high=1.0, low_open=True, doc="fraction of candidate seeds tried"),
    "postprocessor_min_cell_size": Param(int, low=1, doc="smallest cell (px)"),
    "postprocessor_max_cell_size": Param(int, low=1, doc="largest cell (px)"),
    "postprocessor_preferred_cell_size": Param(int, low=1, doc="typical cell (px)"),
    "patch_size": Param(int, low=5, doc="odd side of the square patch around a seed (px)"),
    "negative_seed_circle_radius": Param(int, low=1, doc="radius of the circle of negative seeds (px)"),
    "seeder_grid_size": Param(int, low=1, doc="one seed kept per grid block of this side (px)"),
    "seeder_exclusion_padding": Param(int, low=0, doc="pixels around a found cell excluded as seeds"),
}


def average_frames(recording: Recording, n: int) -> np.ndarray:
    """The movie with every ``n`` consecutive frames averaged (the last block may be shorter), float32."""
    t = recording.n_frames
    h, w = recording.frame_shape
    out = np.empty((math.ceil(t / n), h, w), np.float32)
    chunk = max(n, (2**26 // max(1, h * w * 4)) // n * n)  # a multiple of n frames, ~64 MB
    k = 0
    for start in range(0, t, chunk):
        frames = recording.movie.read(start, min(t, start + chunk)).astype(np.float32, copy=False)
        for s in range(0, len(frames), n):
            out[k] = frames[s : s + n].mean(axis=0)
            k += 1
    return out


class HNCcorr(Method):
    """HNCcorr: correlation-graph cuts around candidate seeds, on 10-frame averages."""

    name = "hnccorr"
    description = "HNCcorr 2020.5: combinatorial cell identification (PyPI hnccorr); slow"
    requirements = ("hnccorr",)
    #: Seconds the harness may allow one recording by default (HNCcorr is slow).
    default_timeout_s = 1800.0
    #: Minutes per 256x256 recording on 2 cores: too slow for the 15-minute default run.
    in_default_run = False
    parameters = PARAMS

    def is_available(self) -> tuple[bool, str]:
        missing = [
            m
            for m in ("hnccorr", "sparsecomputation", "closure", "pseudoflow", "sklearn", "networkx")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            return False, f"missing Python package(s): {', '.join(missing)}; install with: {INSTALL_HINT}"
        return True, ""

    def default_params(self, recording: Recording) -> dict[str, Any]:
        d = NEURON_DIAMETER_UM / float(recording.um_per_px)
        pref = max(4, round(math.pi * d * d / 4))
        patch = max(15, 2 * round(1.45 * d) + 1)
        return {
            "average_frames": max(1, round(AVERAGE_S * float(recording.fps))),
            "percentage_of_seeds": 0.4,
            "postprocessor_min_cell_size": max(1, round(pref / 2)),
            "postprocessor_max_cell_size": round(2.5 * pref),
            "postprocessor_preferred_cell_size": pref,
            "patch_size": patch,
            "negative_seed_circle_radius": min(max(2, round(0.96 * d)), (patch - 1) // 2 - 1),
            "seeder_grid_size": max(1, round(d / 2)),
            "seeder_exclusion_padding": max(0, round(0.4 * d)),
        }

    def estimate_s(self, recording: Recording, params: dict[str, Any]) -> float:
        """Estimated CPU seconds of ``HNCcorr.segment`` (one BLAS thread).

        ``seeds x seconds_per_seed``. Seeds: HNCcorr's seeder keeps the best
        pixel of each ``seeder_grid_size`` block, then the top
        ``percentage_of_seeds`` of them (an upper bound: seeds inside cells
        already found are skipped). A seed compares every pair of the
        ``n = patch_size ** 2`` pixels of its patch: ``n ** 2 x (a + b x
        averaged frames)``, with ``a`` = :data:`S_PER_PAIR` and ``b`` =
        :data:`S_PER_PAIR_FRAME` fitted to CPU seconds on a 96 x 96 crop of
        ``synthetic`` syn07, 14 seeds of a 45 px patch (18.3 s with 60
        averaged frames, 24.6 s with 240), and checked on ``synthetic-tiny``
        tiny00, 31 px patch, 160 seeds: 35.9 s measured, 46 s estimated.
        Measured on the 2-core Intel Xeon development machine under load
        (wall times were 3-4 times the CPU times, so the model counts CPU seconds).
        """
        p = {**self.default_params(recording), **params}
        h, w = recording.frame_shape
        g = max(1, int(p["seeder_grid_size"]))
        seeds = float(p["percentage_of_seeds"]) * math.ceil(h / g) * math.ceil(w / g)
        frames = math.ceil(recording.n_frames / max(1, int(p["average_frames"])))
        pairs = float(int(p["patch_size"]) ** 2) ** 2
        return seeds * pairs * (S_PER_PAIR + S_PER_PAIR_FRAME * frames)

    def param_grid(self, recording: Recording) -> dict[str, list]:
        pref = self.default_params(recording)["postprocessor_preferred_cell_size"]
        return {
            "percentage_of_seeds": [0.3, 0.5],
            "postprocessor_min_cell_size": [max(1, round(0.3 * pref)), max(1, round(0.5 * pref))],
        }

    def check_consistency(self, recording: Recording, p: dict[str, Any]) -> None:
        lo, pref, hi = (p[f"postprocessor_{k}_cell_size"] for k in ("min", "preferred", "max"))
        if not lo <= pref <= hi:
            raise InputError(
                f"method '{self.name}': parameters 'postprocessor_min_cell_size' <= "
                f"'postprocessor_preferred_cell_size' <= 'postprocessor_max_cell_size' must hold, "
                f"got {lo}, {pref}, {hi}"
            )
        if p["patch_size"] % 2 == 0:
            raise InputError(f"method '{self.name}': parameter 'patch_size' must be odd, got {p['patch_size']}")
        if p["negative_seed_circle_radius"] > (p["patch_size"] - 1) // 2 - 1:
            raise InputError(
                f"method '{self.name}': parameter 'negative_seed_circle_radius' must be < patch_size / 2 - 1 "
                f"(the circle must lie inside the patch), got {p['negative_seed_circle_radius']} "
                f"with patch_size {p['patch_size']}"
            )
        if min(recording.frame_shape) < p["patch_size"]:
            raise InputError(
                f"method '{self.name}': parameter 'patch_size' ({p['patch_size']}) exceeds the frame "
                f"({recording.frame_shape[0]}x{recording.frame_shape[1]})",
                hint="use a smaller patch_size",
            )

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        p = self.check_params(recording, params)
        t0 = time.perf_counter()
        import hnccorr  # imports all its submodules

        patch_numpy_aliases("hnccorr")
        config = hnccorr.HNCcorrConfig(**{k: p[k] for k in CONFIG_KEYS})
        model = hnccorr.HNCcorr.from_config(config)
        init_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        data = average_frames(recording, p["average_frames"])
        io_s = time.perf_counter() - t1

        t2 = time.perf_counter()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            model.segment(hnccorr.Movie(recording.name, data))
        process_s = time.perf_counter() - t2
        regions = model.segmentations_to_list()
        log.info("hnccorr: %d cells from %d candidates in %.1f s", len(regions), len(model.candidates), process_s)

        coords = []
        for region in regions:
            pix = np.asarray(region["coordinates"], dtype=np.int64).reshape(-1, 2)
            if len(pix):
                coords.append((pix[:, 0], pix[:, 1]))
        masks = Masks.from_coordinates(coords, recording.frame_shape) if coords else Masks.empty(recording.frame_shape)
        return Segmentation(
            masks=masks,
            params=p,
            init_s=init_s,
            process_s=process_s,
            io_s=io_s,
            n_frames=recording.n_frames,
            versions=package_versions("hnccorr", "sparsecomputation", "closure-problem", "pseudoflow", "numpy"),
        )
