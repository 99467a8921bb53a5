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

__all__ = ["Param", "validate", "expensive_part", "check_settings"]


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
    stage : {"cheap", "expensive"}
        Which stage of a staged method the parameter changes: grid points that
        differ only in cheap parameters share one cached expensive stage
        (e.g. STNeuroNet's probability maps).
    optional : bool
        Whether None is accepted (meaning "the method's own choice", e.g. the
        threshold tuned with the weights).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    doc: str = ""
    low_open: bool = False
    stage: str = "cheap"
    optional: bool = False

    def __post_init__(self) -> None:
        if self.stage not in ("cheap", "expensive"):
            raise ValueError(f"Param.stage must be 'cheap' or 'expensive', got {self.stage!r}")

    def allowed(self) -> str:
        """The allowed values, in words (for messages)."""
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[self.kind]
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"<= {self.high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return kind + (f" {bounds}" if bounds else "") + (" (or None)" if self.optional else "")

    def check(self, method: str, name: str, value: Any) -> Any:
        """The value converted to ``kind``, or an InputError."""
        where = f"method '{method}': parameter '{name}'"
        if value is None and self.optional:
            return None
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


def expensive_part(spec: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that change a staged method's expensive stage (its cache key)."""
    return {k: v for k, v in params.items() if k in spec and spec[k].stage == "expensive"}


def check_settings(method: str, config_cls: type, settings: Mapping[str, Any], extra: tuple[str, ...] = ()) -> dict:
    """Training settings checked against a config dataclass: unknown keys and invalid values refused.

    Lists (from TOML/JSON) become tuples where the dataclass default is a
    tuple; ``extra`` keys are accepted without checking (the caller's own).
    """
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    allowed = sorted([*fields, *extra])
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise InputError(
            f"method '{method}': unknown training setting(s) {', '.join(map(repr, unknown))}",
            hint=closest(unknown[0], allowed) or f"known: {', '.join(allowed)}",
        )
    s = {k: (tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v)
         for k, v in settings.items() if k in fields}
    try:
        config_cls(**s)
    except TypeError as exc:
        raise InputError(f"method '{method}': invalid training settings ({exc})") from exc
    return {**s, **{k: settings[k] for k in extra if k in settings}}
