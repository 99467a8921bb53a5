"""Parameter validation for method adapters.

An adapter declares its parameters once as :class:`Param` specs; the
:func:`validate` call merges user values over the recording's defaults and
raises :class:`~datasets.errors.InputError` naming the method and the
parameter for an unknown name, a wrong type or a value out of range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.errors import InputError
from datasets.registry import closest

__all__ = ["Param", "validate"]


@dataclass(frozen=True)
class Param:
    """One parameter: its type, bounds or choices, and a one-line description.

    Attributes
    ----------
    kind : type
        ``bool``, ``int``, ``float`` or ``str``. An ``int`` is accepted for a
        ``float``; a ``bool`` is never accepted as a number, nor a float with a
        fractional part as an ``int``.
    low, high : float, optional
        Inclusive bounds for numbers.
    choices : tuple, optional
        Allowed values.
    doc : str
        What it does.
    low_open : bool
        Whether ``low`` itself is excluded (``> low`` instead of ``>= low``).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    doc: str = ""
    low_open: bool = False

    def check(self, method: str, name: str, value: Any) -> Any:
        """The value converted to ``kind``, or an InputError."""
        where = f"method '{method}': parameter '{name}'"
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"{where} must be true or false, got {value!r}")
            value = bool(value)
        elif self.kind in (int, float):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InputError(f"{where} must be a number, got {type(value).__name__} {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f"{where} must be finite, got {value!r}")
            if self.kind is int:
                if value != int(value):
                    raise InputError(f"{where} must be a whole number, got {value!r}")
                value = int(value)
        elif self.kind is str:
            if not isinstance(value, str):
                raise InputError(f"{where} must be a string, got {type(value).__name__} {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise InputError(f"{where} must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}")
        if self.high is not None and value > self.high:
            raise InputError(f"{where} must be <= {self.high:g}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise InputError(
                f"{where} must be one of {', '.join(map(repr, self.choices))}, got {value!r}",
                hint=closest(str(value), [str(c) for c in self.choices]),
            )
        return value


def validate(method: str, spec: Mapping[str, Param], defaults: Mapping[str, Any], params: Mapping[str, Any] | None):
    """Defaults overlaid with ``params``, each value checked against ``spec``.

    Parameters
    ----------
    method : str
        Method name, used in messages.
    spec : mapping of str to Param
        Every accepted parameter.
    defaults : mapping
        Values for parameters not given (from ``default_params``).
    params : mapping or None
        Values given by the user or the tuner.

    Returns
    -------
    dict
        Every parameter of ``spec`` present in ``defaults`` or ``params``, checked.

    Raises
    ------
    InputError
        Unknown parameter name, wrong type, or value out of range.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InputError(f"method '{method}': parameters must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InputError(
            f"method '{method}' has no parameter(s) {', '.join(map(repr, unknown))}",
            hint=closest(unknown[0], sorted(spec)),
        )
    merged = {**defaults, **params}
    return {name: spec[name].check(method, name, merged[name]) for name in spec if name in merged}
