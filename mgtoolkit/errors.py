"""Errors that teach: each names the field, the value and the fix, in one line."""

from __future__ import annotations

from typing import Any

__all__ = [
    "MgtoolkitError",
    "InvalidInputError",
    "ModelUnavailableError",
    "GenerationCancelled",
    "MgtoolkitWarning",
]


class MgtoolkitError(Exception):
    """Base class of every error mgtoolkit raises on purpose."""


class MgtoolkitWarning(UserWarning):
    """Base class of mgtoolkit's notes to the user (a prompt cut short, a writer replaced, ...)."""


class InvalidInputError(MgtoolkitError, ValueError):
    """A request field has a value mgtoolkit cannot use.

    Parameters
    ----------
    field : str
        The argument's name, as the user typed it (``audio_length_in_s``).
    value : object
        The value that was given.
    problem : str
        What is wrong with it.
    fix : str
        What to do instead.

    Examples
    --------
    >>> str(InvalidInputError("num_inference_steps", 0, "must be at least 1", "pass e.g. 20"))
    'num_inference_steps=0: must be at least 1; pass e.g. 20.'
    """

    def __init__(self, field: str, value: Any, problem: str, fix: str):
        self.field, self.value, self.problem, self.fix = field, value, problem, fix
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{field}={shown}: {problem}; {fix}.")


class ModelUnavailableError(MgtoolkitError, OSError):
    """Weights could not be found locally nor fetched from a model hub."""


class GenerationCancelled(MgtoolkitError):
    """Raised inside a generation when the caller asked it to stop."""

    @classmethod
    def raise_if_set(cls, cancel: Any, when: str) -> None:
        """Raise ``GenerationCancelled("cancelled <when>")`` if the event ``cancel`` is set.

        Examples
        --------
        >>> import threading
        >>> GenerationCancelled.raise_if_set(threading.Event(), "before the first step")
        """
        if cancel is not None and cancel.is_set():
            raise cls(f"cancelled {when}")
