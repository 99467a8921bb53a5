"""Reading ``.npy`` files, pickled object arrays included, without running code from them.

Suite2p's ``stat.npy`` is a pickled object array of dicts, so it cannot be
read with ``allow_pickle=False``; but an ordinary unpickler calls whatever
global a file names (``os.system``, ``builtins.eval``...), so a crafted mask
file would run code when scored or registered. :class:`RestrictedUnpickler`
resolves only an allow-list of globals: numpy arrays, dtypes and scalars with
the helpers numpy's own pickles name, and the plain builtin types (dict,
list, tuple, str, bytes, numbers, bool; None needs no global). Anything else
is refused with an :class:`~datasets.errors.InputError` naming the file and
the global, before it is ever imported or called.

Every ``.npy`` read of a user file in the project goes through
:func:`load_npy`, which also turns empty, truncated and non-``.npy`` files
into one-line errors.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from datasets.errors import InputError

__all__ = ["RestrictedUnpickler", "load_npy", "restricted_load"]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` limited to the one use protocol-2 pickles make of it: bytes stored as latin-1 text."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin-1")


def _numpy_helpers() -> dict[tuple[str, str], Callable[..., Any]]:
    """The reconstruction helpers of numpy's pickles, under both their numpy 1 and numpy 2 module names."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    helpers = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}
    allowed: dict[tuple[str, str], Callable[..., Any]] = {}
    for pkg in ("numpy.core", "numpy._core"):
        for name, fn in helpers.items():
            allowed[(f"{pkg}.multiarray", name)] = fn
        allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


_BUILTINS = {t.__name__: t for t in (dict, list, tuple, str, bytes, int, float, complex, bool)}
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    **_numpy_helpers(),
    **{("builtins", name): t for name, t in _BUILTINS.items()},
    ("_codecs", "encode"): _latin1_encode,
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(self.qualname)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array/dtype/scalar helpers and plain builtin types.

    The allow-list maps each permitted (module, name) to the object itself, so
    a refused name is never imported.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = ("builtins" if module == "__builtin__" else module, name)
        try:
            return _ALLOWED[key]
        except KeyError:
            raise ForbiddenGlobal(*key) from None


def restricted_load(stream: BinaryIO, path: str | Path) -> Any:
    """Unpickle one object from ``stream`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    InputError
        Naming ``path`` and the refused global, or saying the pickle is damaged.
    """
    try:
        return RestrictedUnpickler(stream, encoding="latin1").load()
    except ForbiddenGlobal as exc:
        raise InputError(
            f"refused to unpickle '{exc.qualname}': only numpy arrays, dtypes, scalars and plain dicts, lists, "
            "tuples, strings and numbers may be loaded from a pickle (the file may be crafted to run code)",
            path=path,
        ) from None
    except Exception as exc:  # noqa: BLE001 - damaged pickles raise many types
        raise InputError(f"damaged pickled data ({type(exc).__name__}: {exc})", path=path) from exc


def load_npy(path: str | Path, *, allow_objects: bool = False) -> np.ndarray:
    """Read a ``.npy`` file; object arrays only with ``allow_objects``, and then through the allow-list.

    Parameters
    ----------
    path : str or Path
        The file.
    allow_objects : bool
        Read pickled object arrays (Suite2p ``stat.npy``) with
        :class:`RestrictedUnpickler`; otherwise they are refused.

    Raises
    ------
    InputError
        For an empty, truncated or non-``.npy`` file, an object array when
        not allowed, or a pickle naming a global outside the allow-list.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=path) from exc
    if not data:
        raise InputError("empty file (0 bytes), not a .npy array", path=path)
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/EOFError/SyntaxError for bad headers
        raise InputError(f"not a .npy file or a damaged header ({exc})", path=path) from exc
    if not dtype.hasobject:
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - truncated data raises ValueError
            raise InputError(f"truncated or damaged .npy file ({exc})", path=path) from exc
    if not allow_objects:
        raise InputError(
            "holds pickled Python objects, not a numeric array",
            path=path,
            hint="save masks as a numeric (N, rows, cols) or label array; Suite2p ROI files must be named stat.npy",
        )
    array = restricted_load(stream, path)
    if not isinstance(array, np.ndarray):
        raise InputError(f"the pickled data is a {type(array).__name__}, not an array", path=path)
    return array
