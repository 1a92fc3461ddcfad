"""What the speed-ups share: the usable cores, pieces of a batch or of time, giving memory back.

numpy-free and paddle-free at import; :func:`stitch` imports paddle when called.
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = [
    "usable_cores",
    "give_back_free_memory",
    "chunks",
    "vocoder_receptive_frames",
    "time_windows",
    "stitch",
]


def usable_cores() -> int:
    """Cores this process may run on (``OMP_NUM_THREADS`` caps it when set)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", cores))
    except ValueError:
        cap = cores
    return max(1, min(cores, cap))


def give_back_free_memory() -> None:
    """Return the heap pages freed while loading to the system (glibc only; else nothing)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, stop) ranges covering ``range(n)`` as evenly as possible."""
    parts = max(1, min(parts, n))
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def vocoder_receptive_frames(config: Any) -> int:
    """Mel frames on either side that can reach one output sample of the HiFi-GAN vocoder.

    Every convolution is "same"-padded, so the reach of each layer is half its (dilated) kernel,
    counted at that layer's sample rate and divided back to mel frames; the sum over layers, rounded
    up, bounds how far one output sample looks. A few frames are added for safety.
    """
    reach = (7 - 1) / 2  # conv_pre, kernel 7, at the frame rate
    rate = 1
    kernels, dilations = config.resblock_kernel_sizes, config.resblock_dilation_sizes
    for up, up_kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
        reach += up_kernel / rate  # transposed conv: at most its kernel, in input samples
        rate *= up
        block = max(
            sum((k - 1) // 2 * (d + 1) for d in dil) for k, dil in zip(kernels, dilations, strict=True)
        )
        reach += block / rate
    reach += (7 - 1) / 2 / rate  # conv_post
    return int(math.ceil(reach)) + 4


def time_windows(frames: int, parts: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(lo, hi, a, b)`` per piece: frames ``lo:hi`` are its own, ``a:b`` what it is given."""
    return [(lo, hi, max(0, lo - margin), min(frames, hi + margin)) for lo, hi in chunks(frames, parts)]


def stitch(waves: list, windows: list[tuple[int, int, int, int]], hop: int):
    """Join the vocoded windows, keeping from each only the samples of its own frames."""
    import paddle

    frames = windows[-1][1]
    kept = []
    for (lo, hi, a, _), wave in zip(windows, waves, strict=True):
        start = (lo - a) * hop
        stop = None if hi == frames else (hi - a) * hop  # the last piece keeps the tail past the frames
        kept.append(wave[:, start:stop])
    return paddle.concat(kept, axis=1)
