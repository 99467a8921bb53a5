"""Small JSON files (manifests, info files): a clear error for a damaged one, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets.errors import InputError

__all__ = ["read_json", "write_json_atomic"]


def read_json(path: Path) -> dict:
    """A JSON object from a file; a clear error for a damaged file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


def write_json_atomic(path: Path, data) -> Path:
    """Write JSON through a temporary file and an atomic rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path
