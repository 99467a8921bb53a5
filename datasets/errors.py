"""Errors raised for bad user input.

Every error that a person can fix (a missing file, a wrong variable name, an
impossible parameter) is an :class:`InputError`. The CLIs catch it and print
its message as one line with exit code 2; library callers get an ordinary
``ValueError`` subclass they can catch.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "naming"]


class InputError(ValueError):
    """A problem with user input, worded for the person who can fix it.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or Path, optional
        The file or folder concerned; it is named first in the message.
    hint : str, optional
        How to fix it; appended to the message.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.hint = hint
        text = message if self.path is None else f"{self.path}: {message}"
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


def naming(exc: InputError, flag: str, path: str | Path) -> InputError:
    """``exc`` reworded to start with the command-line flag (and file) it came from, e.g. ``--pred stat.npy: ...``.

    Loaders name the file they read; the CLI adds which of its inputs that
    was, so that "--gt" and "--pred" errors are told apart.
    """
    text = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    return InputError(f"{flag} {text}".strip())
