"""Build a tiny model once: in a private staging folder, seeded, renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ...config import cache_root, private_dir

__all__ = ["built_once"]


def built_once(
    name: str,
    build: Callable[[Path], None],
    *,
    seed: int,
    root: Path | None = None,
    marker: str = "config.json",
) -> Path:
    """``root / name`` (default the cache), made once by ``build(folder)`` with paddle seeded to ``seed``.

    Built in a private staging folder and renamed into place once ``marker`` is written, so a
    half-built model is never seen and two concurrent builds leave one; the caller's random stream is
    left as it was.
    """
    target = (root or cache_root()) / name
    if (target / marker).is_file():
        return target
    from ...runtime import import_paddle, quiet_model_logs

    paddle = import_paddle()
    quiet_model_logs()
    private_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))  # 0700, like the cache
    state = paddle.get_rng_state()  # building must not disturb the caller's random stream
    try:
        paddle.seed(seed)
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / marker).is_file():  # not a concurrent build that won
                raise
    finally:
        paddle.set_rng_state(state)
        shutil.rmtree(staging, ignore_errors=True)
    return target
