"""Saved outputs as a method: ``files:PATTERN`` reads one mask file per recording.

Published results (e.g. the STNeuroNet and SUNS authors' output masks) then
enter the same tables as methods run here. ``PATTERN`` is a path with
``{recording}`` standing for the recording's name, e.g.
``files:published/ST_{recording}.mat``; any format of
:func:`datasets.maskio.load_masks` is read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from datasets.errors import InputError
from datasets.maskio import load_masks
from datasets.records import Recording
from methods.base import Method, Segmentation

__all__ = ["SavedMasks"]


class SavedMasks(Method):
    """Masks read from files, one per recording.

    Parameters
    ----------
    pattern : str
        Path with ``{recording}`` for the recording name.

    Parameters of ``segment``: ``var`` (variable to read) and ``axes``
    (permutation of the stored array to (N, rows, cols)) for files whose
    orientation the format default does not give.
    """

    name = "files"
    needs_argument = True  # not part of "--methods all"
    needs_movie = False
    description = "saved masks read from files (files:PATTERN, {recording} = recording name)"

    def __init__(self, pattern: str | None = None):
        self.pattern = pattern

    def is_available(self) -> tuple[bool, str]:
        if not self.pattern:
            return True, "give a pattern: files:PATH/{recording}.mat"
        return True, ""

    def path_for(self, recording: Recording) -> Path:
        if not self.pattern:
            raise InputError("method 'files' needs a pattern", hint="use files:PATH/{recording}.mat")
        try:
            path = Path(self.pattern.format(recording=recording.name))
        except (KeyError, IndexError) as exc:
            raise InputError(
                f"method 'files': bad pattern {self.pattern!r}", hint="only {recording} may be used"
            ) from exc
        # In a worker, a relative pattern means the folder the run was started from.
        origin = os.environ.get("BENCH_ORIGIN_CWD")
        return path if path.is_absolute() or not origin else Path(origin) / path

    def segment(self, recording: Recording, params: dict[str, Any]) -> Segmentation:
        unknown = set(params) - {"var", "axes"}
        if unknown:
            raise InputError(f"method 'files' has no parameter(s) {sorted(unknown)}", hint="parameters: var, axes")
        path = self.path_for(recording)
        start = time.perf_counter()
        axes = params.get("axes")
        loaded = load_masks(
            path, var=params.get("var"), axes=tuple(axes) if axes else None, frame=recording.frame_shape
        )
        return Segmentation(
            masks=loaded.masks,
            params={"path": str(path), "var": loaded.variable, "axes": list(loaded.axes) if loaded.axes else None},
            io_s=time.perf_counter() - start,
            n_frames=recording.n_frames,
        )
