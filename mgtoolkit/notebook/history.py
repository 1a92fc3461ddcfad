"""What this process made: every clip from ``generate``, ``restyle`` and ``image_to_music``.

A plain list with listeners (the studio's gallery is one); no widgets, no model. It only records
results, so it never changes what a call makes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..types import Clip

__all__ = ["History", "HISTORY", "record"]

MAX_CLIPS = 200
"""The oldest clips are forgotten past this many (a 10 s clip holds about 640 kB)."""


class History:
    """Clips made since the kernel started, oldest first, and who wants to hear of new ones."""

    def __init__(self, max_clips: int = MAX_CLIPS) -> None:
        self.clips: list[Clip] = []
        self.max_clips = max_clips
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add(self, clips: Iterable[Clip]) -> None:
        """Append ``clips`` (a clip already recorded, the same object, is not added twice)."""
        with self._lock:
            known = {id(c) for c in self.clips}
            self.clips.extend(c for c in clips if id(c) not in known)
            del self.clips[: max(0, len(self.clips) - self.max_clips)]
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def clear(self) -> None:
        with self._lock:
            self.clips.clear()
        for listener in list(self._listeners):
            listener()

    def __len__(self) -> int:
        return len(self.clips)


HISTORY = History()
"""The history of this process (the studio shows it)."""


def record(clips: Clip | Iterable[Clip]) -> None:
    """Add a clip or clips to :data:`HISTORY`."""
    from ..types import Clip

    HISTORY.add([clips] if isinstance(clips, Clip) else clips)
