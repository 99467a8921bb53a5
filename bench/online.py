"""F1 against time into the recording, for online methods (how early they find the neurons).

An online method returns snapshots (``Segmentation.snapshots``: pairs of
seconds into the recording and the masks it had then).
:func:`score_snapshots` scores each snapshot against the full ground truth
(the neurons active anywhere in the recording, so early snapshots have low
recall by design) into rows of ``online.csv``; the report draws mean F1
against time per online method, with the batch methods' final F1 as
reference lines (:func:`online_section`, :func:`bench.figures.f1_vs_time`).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from datasets.masks import Masks

from .metrics import match
from .results import atomic_write_text

__all__ = [
    "ONLINE_COLUMNS",
    "score_snapshots",
    "write_online_csv",
    "read_online_csv",
    "f1_over_time",
    "batch_final_f1",
    "online_section",
]

ONLINE_COLUMNS = ("method", "recording", "grader", "t_s", "n_gt", "n_pred", "tp", "recall", "precision", "f1")
_INT = ("n_gt", "n_pred", "tp")
_FLOAT = ("t_s", "recall", "precision", "f1")


def score_snapshots(
    method: str,
    recording: str,
    snapshots: Sequence[tuple[float, Masks]],
    gt: Masks,
    *,
    grader: str = "default",
    rule: str = "stnn",
    iou: float = 0.5,
) -> list[dict]:
    """One row per snapshot: ``method, recording, grader, t_s, n_gt, n_pred, tp, recall, precision, f1``.

    Parameters
    ----------
    method, recording, grader : str
        Labels of the rows.
    snapshots : sequence of (float, Masks)
        Seconds into the recording and the masks at that time.
    gt : Masks
        The recording's ground truth (same frame as the masks).
    rule, iou : optional
        Matching, as :func:`bench.metrics.match`.

    Returns
    -------
    list of dict
        In time order.
    """
    rows = []
    for t_s, masks in sorted(snapshots, key=lambda s: s[0]):
        s = match(gt, masks, iou=iou, rule=rule)
        rows.append(
            {
                "method": method,
                "recording": recording,
                "grader": grader,
                "t_s": float(t_s),
                "n_gt": int(gt.n),
                "n_pred": int(masks.n),
                "tp": int(s.tp),
                "recall": float(s.recall),
                "precision": float(s.precision),
                "f1": float(s.f1),
            }
        )
    return rows


def write_online_csv(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows (sorted by method, recording, grader, time) atomically to ``path``."""
    rows = sorted(rows, key=lambda r: (r["method"], r["recording"], r["grader"], float(r["t_s"])))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ONLINE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in ONLINE_COLUMNS})
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def read_online_csv(path: str | Path) -> list[dict]:
    """Rows of an ``online.csv`` with numbers converted; ``[]`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in _INT:
            r[k] = int(r[k])
        for k in _FLOAT:
            r[k] = float(r[k]) if r[k] not in ("", None) else math.nan
    return rows


def f1_over_time(rows: Sequence[dict], grader: str) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per method: ``(t_s, mean F1, SD, recordings)`` at each snapshot time (times rounded to 0.1 s)."""
    by: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["grader"] == grader and math.isfinite(r["f1"]):
            by[r["method"]][round(r["t_s"], 1)].append(r["f1"])
    out = {}
    for m in sorted(by):
        out[m] = [
            (t, float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for t, v in sorted(by[m].items())
        ]
    return out


def batch_final_f1(results: Sequence[dict], grader: str, exclude: Iterable[str] = ()) -> dict[str, float]:
    """Mean final F1 per method of the results table (the reference lines), leaving out ``exclude``."""
    skip = set(exclude)
    by: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r["status"] == "ok" and r["grader"] == grader and r["method"] not in skip and math.isfinite(r["f1"]):
            by[r["method"]].append(r["f1"])
    return {m: float(np.mean(v)) for m, v in sorted(by.items())}


def online_section(online: Sequence[dict], results: Sequence[dict], grader: str) -> list[str]:
    """Markdown lines: mean F1 at each snapshot time per online method, and the batch methods' final F1."""
    curves = f1_over_time(online, grader)
    if not curves:
        return []
    batch = batch_final_f1(results, grader, exclude=curves)
    times = sorted({t for c in curves.values() for t, *_ in c})
    lines = [
        f"## F1 against time into the recording (ground truth: {grader})",
        "",
        "Online methods' masks at each time scored against the whole recording's ground truth "
        "(mean over recordings); batch methods' final F1 for reference.",
        "",
        "| method | " + " | ".join(f"{t:g} s" for t in times) + " |",
        "|---|" + "---|" * len(times),
    ]
    for m, c in curves.items():
        at = {t: f for t, f, *_ in c}
        lines.append(f"| {m} | " + " | ".join(f"{at[t]:.3f}" if t in at else "" for t in times) + " |")
    for m, f in batch.items():
        lines.append(f"| {m} (batch, final) | " + " | ".join("" for _ in times[:-1]) + f" | {f:.3f} |")
    return [*lines, ""]
