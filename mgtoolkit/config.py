"""Every ``MGTOOLKIT_*`` setting in one place, the cache folder, and how seeds are drawn.

The environment gives defaults only: each setting is read when asked for (never cached, never
written), and every function that uses one also takes it as an argument. Nothing here imports
paddle.

| variable | meaning | default |
|---|---|---|
| ``MGTOOLKIT_MODEL`` | the text-to-audio model when ``model=None`` | ``audioldm-s-full-v2`` |
| ``MGTOOLKIT_DEVICE`` | ``auto``, ``cpu`` or ``gpu`` | ``auto`` |
| ``MGTOOLKIT_CACHE`` | tiny models, converted weights, exported predictors | ``~/.cache/mgtoolkit`` |
| ``MGTOOLKIT_OPTIMIZE`` | ``0`` turns every CPU speed-up off | ``1`` |
| ``MGTOOLKIT_COMPILE`` | oneDNN predictors: ``auto``, ``0``, ``1`` or ``unet,vae,vocoder`` | ``auto`` |
| ``MGTOOLKIT_LOW_MEMORY`` | only the running stage's weights in memory: ``auto`` (under 4 GB), ``1``, ``0`` | ``auto`` |
| ``MGTOOLKIT_DTYPE`` | ``auto`` (float16 on a GPU; on a CPU bfloat16 where it pays, see ``load_model``), ``float32``, ``bfloat16``, ``float16`` | ``auto`` |
| ``MGTOOLKIT_CAPTIONER`` | the image chain's captioner | ``blip2`` (``tiny`` with the tiny model) |
| ``MGTOOLKIT_WRITER`` | the image chain's prompt writer | ``qwen2-0.5b`` (``tiny`` with the tiny model) |
| ``MGTOOLKIT_VERBOSE`` | ``1`` keeps paddlenlp's and ppdiffusers' log chatter | off |
| ``MGTOOLKIT_NO_THREAD_TUNING`` | ``1`` leaves ``OMP_NUM_THREADS`` and MKL settings alone | off |
| ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` | ``1`` reads ``.bin``/``.pdparams`` pickles with the full unpickler (code in them runs) | off |
| ``MGTOOLKIT_VOCODER_PIECE`` | mel frames per piece the vocoder predictor runs over (``0``: whole) | ``256`` |
| ``MGTOOLKIT_TRIM`` | ``0`` keeps the heap pages the VAE and vocoder predictors freed | ``1`` |

Examples
--------
>>> setting("MGTOOLKIT_COMPILE", environ={})
'auto'
>>> flag("MGTOOLKIT_OPTIMIZE", environ={"MGTOOLKIT_OPTIMIZE": "off"})
False
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

VERSION = "0.1.0"
"""mgtoolkit's version (``mgtoolkit.__version__``), written into every sidecar."""

__all__ = ["VERSION", "DEFAULTS", "setting", "flag", "cache_root", "private_dir", "draw_seed", "SEED_MAX"]

DEFAULTS: dict[str, str] = {
    "MGTOOLKIT_MODEL": "audioldm-s-full-v2",
    "MGTOOLKIT_DEVICE": "auto",
    "MGTOOLKIT_CACHE": "",
    "MGTOOLKIT_OPTIMIZE": "1",
    "MGTOOLKIT_COMPILE": "auto",
    "MGTOOLKIT_LOW_MEMORY": "auto",
    "MGTOOLKIT_DTYPE": "auto",
    "MGTOOLKIT_CAPTIONER": "",
    "MGTOOLKIT_WRITER": "",
    "MGTOOLKIT_VERBOSE": "",
    "MGTOOLKIT_NO_THREAD_TUNING": "",
    "MGTOOLKIT_ALLOW_UNSAFE_PICKLE": "",
    "MGTOOLKIT_VOCODER_PIECE": "256",
    "MGTOOLKIT_TRIM": "1",
}
"""Every variable mgtoolkit reads, with its default (``""``: decided by the code that asks)."""

SEED_MAX = 2**32 - 1
"""The largest seed (numpy's generators and the sidecars take any ``0 <= seed <= SEED_MAX``)."""

_FALSE = ("", "0", "false", "no", "off", "none")


def setting(name: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The value of ``name`` from the environment (stripped), or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} is not an mgtoolkit setting; known: {', '.join(DEFAULTS)}")
    env = os.environ if environ is None else environ
    return (env.get(name) or "").strip() or DEFAULTS[name]


def flag(name: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """``setting(name)`` read as on/off (``0``, ``false``, ``no``, ``off`` and empty are off)."""
    return setting(name, environ=environ).lower() not in _FALSE


def cache_root(*, environ: Mapping[str, str] | None = None) -> Path:
    """``$MGTOOLKIT_CACHE`` or ``~/.cache/mgtoolkit`` (not created here)."""
    return Path(setting("MGTOOLKIT_CACHE", environ=environ) or Path.home() / ".cache" / "mgtoolkit")


def private_dir(path: str | Path) -> Path:
    """Create the folder ``path`` and its missing parents readable by their owner only (0700).

    Every folder of the cache is made through this: weights, converted copies and predictors in it
    are read back as trusted, so nobody else may write, or read, there. Folders that already exist
    are left as they are (``MGTOOLKIT_CACHE`` may point into a shared place).

    Examples
    --------
    >>> import tempfile
    >>> oct(private_dir(Path(tempfile.mkdtemp()) / "a" / "b").stat().st_mode & 0o777)
    '0o700'
    """
    path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: not ours to change
            continue
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask; make it exact
    path = missing[0] if missing else path
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder; set MGTOOLKIT_CACHE to a folder")
    return path


def draw_seed(count: int = 1) -> int:
    """A fresh random seed such that ``seed + count - 1`` is still a valid seed.

    The one place seeds are drawn: every call that takes ``seed=None`` uses it and records what it
    drew, so the clip can be made again.

    Examples
    --------
    >>> 0 <= draw_seed(4) <= SEED_MAX - 3
    True
    """
    return secrets.randbelow(SEED_MAX - max(1, count) + 2)
