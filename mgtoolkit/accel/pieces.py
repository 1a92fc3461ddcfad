"""What the speed-ups share: the usable cores, pieces of a batch or of time, giving memory back.

numpy-free and paddle-free at import; :func:`stitch` imports paddle when called.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "usable_cores",
    "give_back_free_memory",
    "chunks",
    "vocoder_receptive_frames",
    "time_windows",
    "stitch",
    "memory_limit_bytes",
    "fingerprint",
]

FINGERPRINT_FORMAT = 1  # bump when what is exported or stashed changes: old cache folders are then ignored


def usable_cores() -> int:
    """Cores this process may run on (``OMP_NUM_THREADS`` caps it when set)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", cores))
    except ValueError:
        cap = cores
    return max(1, min(cores, cap))


def blas_on_all_cores() -> None:
    """Set paddle's BLAS/OpenMP thread count for the calling thread to :func:`usable_cores`.

    Everything mgtoolkit runs changes that count: the split worker threads take one each, and a
    oneDNN predictor's run leaves the caller on one. Dygraph stages in the calling thread (prompt
    encoding above all) then sum their multi-threaded GEMMs in another order, and the same seed
    gives another waveform (8e-9 on the full-size CLAP embedding between a first and a second
    call). Setting it at split time and after each such run keeps every call bit-identical.
    """
    from paddle.base import core

    core.set_num_threads(usable_cores())


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


def _cgroup_files(self_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[str, ...]:
    """The memory-limit files of this process's cgroup and its ancestors (v2 and v1)."""
    groups = []
    try:
        for line in Path(self_cgroup).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                groups.append((root, "memory.max", path))
            elif "memory" in controllers.split(","):
                groups.append((f"{root}/memory", "memory.limit_in_bytes", path))
    except (OSError, ValueError):
        pass
    files = [f"{root}/memory.max", f"{root}/memory/memory.limit_in_bytes"]
    for base, name, path in groups:
        parts = [p for p in path.split("/") if p]
        files += [f"{base}/{'/'.join(parts[:n])}/{name}".replace("//", "/") for n in range(1, len(parts) + 1)]
    return tuple(dict.fromkeys(files))


def memory_limit_bytes(
    *, meminfo: str = "/proc/meminfo", cgroup_files: tuple[str, ...] | None = None
) -> int | None:
    """The memory this process may use: the machine's, or its cgroup's (v2 or v1, and their
    parents') limit when lower. ``None`` where neither can be read (not Linux).
    """
    if cgroup_files is None:
        cgroup_files = _cgroup_files()
    limits = []
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path in cgroup_files:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) if limits else None


def fingerprint(kind: str, module: Any, extra: str = "") -> str:
    """A short hash naming ``module``'s export: versions, class, config and sampled weights.

    Every tensor contributes its name, shape, dtype and about 1,024 evenly spaced values, so other
    weights (a fine-tune, a merged LoRA) give another name without hashing every byte.
    """
    import paddle
    import ppdiffusers

    h = hashlib.sha256()
    config = getattr(module, "config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    config_json = json.dumps(config, sort_keys=True, default=str)
    for part in (
        str(FINGERPRINT_FORMAT),
        paddle.__version__,
        ppdiffusers.__version__,
        type(module).__name__,
        config_json,
        extra,
    ):
        h.update(part.encode())
    with paddle.no_grad():
        for name, tensor in sorted(module.state_dict().items()):
            h.update(f"{name}{list(tensor.shape)}{tensor.dtype}".encode())
            flat = tensor.reshape([-1])
            step = max(1, int(flat.shape[0]) // 1024)
            h.update(flat[::step].numpy().tobytes())
    return f"{kind}-{h.hexdigest()[:20]}"
