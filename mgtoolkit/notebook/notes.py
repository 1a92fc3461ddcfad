"""A panel's notes: mgtoolkit's own warnings raised by the task a panel runs, caught for that panel.

``warnings.catch_warnings`` changes process-wide state, so a worker thread that used it swallowed
the warnings of every other cell and panel while it ran. :func:`capture_notes` instead routes, by
thread, only the warnings raised on the calling thread: mgtoolkit's own
(:class:`~mgtoolkit.errors.MgtoolkitWarning`) go to the panel; a third party's raised there are
kept out of the panel and logged at debug level; every other thread's warnings are shown as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import MgtoolkitWarning

__all__ = ["capture_notes"]

log = logging.getLogger(__name__)
_CAPTURES: dict[int, list[str]] = {}
_LOCK = threading.Lock()
_previous: Any = None


@contextlib.contextmanager
def capture_notes() -> Iterator[list[str]]:
    """Collect the text of each mgtoolkit warning raised on this thread inside the block.

    Examples
    --------
    >>> import warnings
    >>> with capture_notes() as notes:
    ...     warnings.warn(MgtoolkitWarning("the prompt was cut"))
    >>> notes
    ['the prompt was cut']
    """
    _install()
    notes: list[str] = []
    key = threading.get_ident()
    _CAPTURES[key] = notes
    try:
        yield notes
    finally:
        _CAPTURES.pop(key, None)


def _install() -> None:
    """Put :func:`_route` in front of ``warnings.showwarning`` (again, if something replaced it)."""
    global _previous
    with _LOCK:
        if warnings.showwarning is not _route:
            _previous = warnings.showwarning
            warnings.showwarning = _route
        # each call's note is news: shown every time, not once per source line
        warnings.filterwarnings("always", category=MgtoolkitWarning)


def _route(message, category, filename, lineno, file=None, line=None) -> None:
    notes = _CAPTURES.get(threading.get_ident())
    if notes is None:
        _previous(message, category, filename, lineno, file, line)
    elif issubclass(category, MgtoolkitWarning):
        text = str(message).strip().split("\n")[0]
        if text not in notes:
            notes.append(text)
    else:
        log.debug("kept out of a panel: %s:%s: %s: %s", filename, lineno, category.__name__, message)
