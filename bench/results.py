"""The tidy results table: one row per (method, recording, fold, grader).

Stored as CSV (readable everywhere, diff-able in git); every write goes to a
temporary file renamed over the old one, so a killed run never leaves a
half-written table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from datasets.errors import InputError

__all__ = ["COLUMNS", "BASE_COLUMNS", "NUMERIC", "write_table", "read_table", "atomic_write_text"]

#: Columns every results table has (older tables have only these).
BASE_COLUMNS = (
    "run_id",
    "dataset",
    "recording",
    "split",
    "fold",
    "method",
    "params",
    "params_hash",
    "tuned_on",
    "tune_mean_f1",
    "grader",
    "n_gt",
    "n_pred",
    "tp",
    "recall",
    "precision",
    "f1",
    "nf_combined",
    "init_s",
    "process_s",
    "frames",
    "frames_per_s",
    "peak_memory_mb",
    "status",
    "error",
    "versions",
    "hardware",
)
#: Columns added since: the weights each row used, training, the crop, I/O time.
COLUMNS = BASE_COLUMNS + (
    "io_s",
    "weights",
    "weights_key",
    "train_s",
    "train_iterations",
    "train_device",
    "crop",
)
NUMERIC = {
    "fold": int,
    "n_gt": int,
    "n_pred": int,
    "tp": int,
    "frames": int,
    "tune_mean_f1": float,
    "recall": float,
    "precision": float,
    "f1": float,
    "nf_combined": float,
    "init_s": float,
    "process_s": float,
    "frames_per_s": float,
    "peak_memory_mb": float,
    "io_s": float,
    "train_s": float,
    "train_iterations": int,
}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def write_table(rows: Iterable[dict], path: Path) -> Path:
    """Write rows (dicts keyed by :data:`COLUMNS`) as CSV, atomically."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def read_table(path: Path, required: Sequence[str] = BASE_COLUMNS) -> list[dict]:
    """Read a results table, converting numeric columns; empty cells become NaN (floats) or None.

    Raises
    ------
    InputError
        If the file is missing or lacks required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("results table not found", path=path, hint="run 'python -m bench run --out DIR' first")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise InputError(f"not a results table: lacks column(s) {shown}", path=path)
            return [_typed_row(path, reader.line_num, raw) for raw in reader]
    except UnicodeDecodeError as exc:
        raise InputError(f"not a text CSV file (byte {exc.start} is not UTF-8)", path=path) from exc
    except csv.Error as exc:
        raise InputError(f"damaged CSV file ({exc})", path=path) from exc


def _typed_row(path: Path, line: int, raw: dict) -> dict:
    """One CSV row with numeric columns converted; a short or long row (a half-written table) is refused."""
    if None in raw or any(v is None for v in raw.values()):
        fields = len(raw) - (None in raw)
        raise InputError(f"line {line} does not have the header's {fields} fields (a half-written or edited table)",
                         path=path)
    row: dict = dict(raw)
    for col, typ in NUMERIC.items():
        if col in row:
            v = row[col]
            try:
                row[col] = (float("nan") if typ is float else None) if v == "" else typ(float(v))
            except (ValueError, OverflowError):
                raise InputError(f"line {line}: column {col} holds {v[:40]!r}, not a number", path=path) from None
    return row
