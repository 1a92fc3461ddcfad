"""The process history: records results in order, without duplicates, bounded."""

from __future__ import annotations

import numpy as np

from mgtoolkit.notebook.history import History
from mgtoolkit.types import Clip, GenerationRequest


def _clip(seed: int) -> Clip:
    return Clip(
        waveform=np.zeros(4, np.float32),
        sample_rate=16000,
        seed=seed,
        request=GenerationRequest(prompt="x", seed=seed),
    )


def test_keeps_order_skips_duplicates_and_tells_listeners():
    history, told = History(), []
    history.subscribe(lambda: told.append(len(history)))
    a, b = _clip(1), _clip(2)
    history.add([a, b])
    history.add([b])
    assert history.clips == [a, b] and told == [2, 2]


def test_forgets_the_oldest_past_its_bound():
    history = History(max_clips=3)
    clips = [_clip(i) for i in range(5)]
    history.add(clips)
    assert history.clips == clips[2:]
