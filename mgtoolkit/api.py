"""The calls a notebook user makes: each task, with what it made added to the history.

The tasks (:mod:`mgtoolkit.tasks`) are pure: they turn arguments into clips and remember
nothing. These thin shells add each result to :data:`mgtoolkit.notebook.history.HISTORY`, the
list the studio's gallery shows, and are what ``mgtoolkit.generate`` & co. are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from .notebook.history import record
from .tasks import audio, image, text
from .tasks import extend as extend_task

__all__ = ["generate", "extend", "restyle", "variations", "image_to_music", "audio_to_music"]


P = ParamSpec("P")
R = TypeVar("R")


def _recorded(task: Callable[P, R], clips_of: Callable[[Any], Any] = lambda result: result) -> Callable[P, R]:
    @functools.wraps(task)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        result = task(*args, **kwargs)
        record(clips_of(result))
        return result

    return call


generate = _recorded(text.generate)
restyle = _recorded(audio.restyle)
extend = _recorded(extend_task.extend)
variations = _recorded(audio.variations)
image_to_music = _recorded(image.image_to_music, lambda story: story.clip)
audio_to_music = _recorded(audio.audio_to_music, lambda story: story.clip)
