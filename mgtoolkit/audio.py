"""Audio files: safe names, atomic no-overwrite writes, WAV + JSON sidecar, WAV bytes.

numpy and soundfile only; no paddle.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .types import Clip

__all__ = ["safe_stem", "to_pcm16", "wav_bytes", "save_clip", "write_atomic", "free_stem"]

MAX_STEM = 60


def safe_stem(text: str, *, max_len: int = MAX_STEM, default: str = "clip") -> str:
    """A file-name stem made from free text: ASCII letters, digits, ``-`` and ``_`` only.

    Examples
    --------
    >>> safe_stem("Smooth jazz / piano: relaxed..")
    'smooth-jazz-piano-relaxed'
    >>> safe_stem("../../etc/passwd")
    'etc-passwd'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9_]+", "-", ascii_text.lower()).strip("-_")
    stem = stem[:max_len].rstrip("-")
    return stem or default


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Float samples (clipped to [-1, 1]) as int16 PCM."""
    wave = np.nan_to_num(np.asarray(waveform, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)


def wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit PCM WAV file in memory."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, to_pcm16(waveform), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through a temporary file in the same folder; refuse to overwrite.

    ``write(tmp)`` fills the temporary file; it is then linked into place, which fails if
    ``path`` appeared meanwhile. An error or interrupt leaves no partial file behind.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".mg-", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        try:
            os.link(tmp, path)  # atomic and refuses to replace an existing file
        except OSError as exc:
            if path.exists():
                raise FileExistsError(f"{path} exists; mgtoolkit never overwrites") from exc
            os.replace(tmp, path)  # filesystems without hard links
    finally:
        tmp.unlink(missing_ok=True)
    return path


def free_stem(folder: Path, stem: str, suffixes: tuple[str, ...] = (".wav", ".json")) -> str:
    """``stem``, or ``stem-1``, ``stem-2``, ... whichever has none of ``suffixes`` taken."""
    candidate, n = stem, 0
    while any((folder / f"{candidate}{s}").exists() for s in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def ensure_writable_dir(out_dir: str | os.PathLike, field: str = "out_dir") -> Path:
    """Create ``out_dir`` if needed and check that files can be written there."""
    folder = Path(out_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            field,
            str(out_dir),
            f"cannot be created ({exc.strerror or exc})",
            "choose a folder you can write to",
        ) from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInputError(
            field, str(out_dir), "is not a writable folder", "choose a folder you can write to"
        ) from None
    return folder


def save_clip(clip: Clip, out_dir: str | os.PathLike = "outputs", *, name: str | None = None) -> Path:
    """Write ``clip`` as ``<stem>.wav`` (16-bit PCM) plus ``<stem>.json``; return the WAV path."""
    folder = ensure_writable_dir(out_dir)
    base = safe_stem(name) if name else f"{safe_stem(clip.prompt)}_seed{clip.seed}"
    metadata = clip.metadata()
    for _ in range(100):  # another writer may take a name between the check and the link
        stem = free_stem(folder, base)
        wav, sidecar = folder / f"{stem}.wav", folder / f"{stem}.json"
        try:
            write_atomic(wav, lambda tmp: tmp.write_bytes(wav_bytes(clip.waveform, clip.sample_rate)))
        except FileExistsError:
            continue
        try:
            metadata["file"] = wav.name
            write_atomic(sidecar, lambda tmp: tmp.write_text(_to_json(metadata), encoding="utf-8"))
        except BaseException:
            wav.unlink(missing_ok=True)  # keep WAV and sidecar together or not at all
            raise
        return wav
    raise FileExistsError(f"could not find a free file name for {base!r} in {folder}")


def _to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)
