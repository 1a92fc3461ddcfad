"""Audio in and out: reading what users give, writing WAV + JSON sidecars, WAV bytes for players.

Reading: a path, bytes, ``(array, sr)`` or a Clip becomes mono float32 at the model's rate
(:func:`load_audio`); bad input raises a one-line :class:`InvalidInputError` naming ``audio``.
Writing: safe names, atomic no-overwrite writes (:func:`save_clip`). numpy, soundfile and librosa
only; no paddle.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import struct
import tempfile
import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidInputError
from ..i18n import romanize

__all__ = [
    "load_audio",
    "MIN_AUDIO_S",
    "SILENCE_PEAK",
    "safe_stem",
    "default_stem",
    "to_pcm16",
    "wav_bytes",
    "smpl_chunk",
    "audio_data_uri",
    "player_html",
    "save_clip",
    "write_atomic",
    "free_stem",
    "audio_header",
    "check_audio_header",
]


class SavableClip(Protocol):
    """What :func:`save_clip` needs of a clip (``mgtoolkit.Clip`` has it)."""

    waveform: np.ndarray
    sample_rate: int
    seed: int

    @property
    def prompt(self) -> str: ...

    def metadata(self) -> dict[str, Any]: ...


MAX_STEM = 60


def safe_stem(text: str, *, max_len: int = MAX_STEM, default: str = "clip") -> str:
    """A file-name stem made from free text: ASCII letters, digits, ``-`` and ``_`` only (Chinese
    in pinyin).

    Examples
    --------
    >>> safe_stem("Smooth jazz / piano: relaxed..")
    'smooth-jazz-piano-relaxed'
    >>> safe_stem("../../etc/passwd")
    'etc-passwd'
    >>> safe_stem("轻松的爵士钢琴")
    'qing-song-de-jue-shi-gang-qin'
    >>> safe_stem("CON")  # a device name on Windows, whatever the extension
    'con_'
    """
    ascii_text = unicodedata.normalize("NFKD", romanize(text)).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9_]+", "-", ascii_text.lower()).strip("-_")
    stem = stem[:max_len].rstrip("-")
    stem = stem or default
    return f"{stem}_" if stem in _WINDOWS_RESERVED else stem


_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "conin", "conout"]
    + [f"{port}{n}" for port in ("com", "lpt") for n in range(10)]
)
"""Names Windows keeps for devices (``CON``, ``COM1``...), with any extension: a stem never is one."""


def default_stem(clip: Any) -> str:
    """``<prompt>_seed<seed>``; a conformed clip adds its grid as sample packs do:
    ``funky-drum-loop_120bpm_Am_4bars_seed7`` (``clip.extra["conform"]["label"]``)."""
    label = ((getattr(clip, "extra", None) or {}).get("conform") or {}).get("label") or ""
    label = re.sub(r"[^A-Za-z0-9_]+", "", str(label))
    return f"{safe_stem(clip.prompt)}_{label + '_' if label else ''}seed{clip.seed}"


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Float samples (clipped to [-1, 1]) as int16 PCM."""
    wave = np.nan_to_num(np.asarray(waveform, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)


def wav_bytes(waveform: np.ndarray, sample_rate: int, *, loop: tuple[int, int] | None = None) -> bytes:
    """A complete 16-bit PCM WAV file in memory; with ``loop=(start, end)`` samples (end
    exclusive), a ``smpl`` chunk that makes samplers and DAWs loop that span."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, to_pcm16(waveform), int(sample_rate), format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    if loop is None:
        return data
    data += smpl_chunk(int(sample_rate), int(loop[0]), int(loop[1]))
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]  # the RIFF size covers the new chunk


def smpl_chunk(sample_rate: int, start: int, end: int) -> bytes:
    """A RIFF ``smpl`` chunk with one forward loop over samples ``start`` to ``end`` (exclusive).

    The layout is the MIDI Sample Dump / RIFF one: a 36-byte header (no maker, sample period in
    ns, unity note 60, one loop) and a 24-byte loop record whose end is the last sample played.

    Examples
    --------
    >>> len(smpl_chunk(16000, 0, 16000))
    68
    """
    header = struct.pack("<IIIIiIIII", 0, 0, round(1e9 / sample_rate), 60, 0, 0, 0, 1, 0)
    record = struct.pack(
        "<IIIIII", 0, 0, start, max(start, end - 1), 0, 0
    )  # id, forward, start, end, fraction, for ever
    return b"smpl" + struct.pack("<I", len(header + record)) + header + record


def audio_data_uri(waveform: np.ndarray, sample_rate: int) -> str:
    """A ``data:audio/wav;base64,...`` URI holding a 16-bit WAV of ``waveform``."""
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(waveform, sample_rate)).decode("ascii")


def player_html(waveform: np.ndarray, sample_rate: int, caption: str) -> str:
    """An ``<audio>`` player with a caption, self-contained (no IPython, no matplotlib)."""
    return (
        f'<figure class="mgtoolkit-clip"><audio controls aria-label="{html.escape(caption)}" '
        f'src="{audio_data_uri(waveform, sample_rate)}">'
        f"</audio><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would stick: follow the umask like open()
        try:
            os.link(tmp, path)  # atomic and refuses to replace an existing file
        except OSError as exc:
            if path.exists():
                raise FileExistsError(f"{path} exists; mgtoolkit never overwrites") from exc
            os.replace(tmp, path)  # filesystems without hard links
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    """The process's umask: from ``/proc`` where there is one, else by setting it and putting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def save_clip(clip: SavableClip, out_dir: str | os.PathLike = "outputs", *, name: str | None = None) -> Path:
    """Write ``clip`` as ``<stem>.wav`` (16-bit PCM) plus ``<stem>.json``; return the WAV path."""
    folder = ensure_writable_dir(out_dir)
    base = safe_stem(name) if name else default_stem(clip)
    metadata = clip.metadata()
    loop = _loop_points(clip)
    for _ in range(100):  # another writer may take a name between the check and the link
        stem = free_stem(folder, base)
        wav, sidecar = folder / f"{stem}.wav", folder / f"{stem}.json"
        try:
            write_atomic(wav, lambda tmp: tmp.write_bytes(_clip_wav(clip, loop)))
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


def _clip_wav(clip: SavableClip, loop: tuple[int, int] | None) -> bytes:
    if loop is None:
        return wav_bytes(clip.waveform, clip.sample_rate)
    return wav_bytes(clip.waveform, clip.sample_rate, loop=loop)


def _loop_points(clip: Any) -> tuple[int, int] | None:
    """``(start, end)`` samples of a loop clip (``clip.extra["loop"]``), else ``None``."""
    loop = (getattr(clip, "extra", None) or {}).get("loop")
    if not loop:
        return None
    return int(loop.get("start_sample", 0)), int(loop.get("end_sample", np.shape(clip.waveform)[-1]))


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


# ---------------------------------------------------------------------------------------------
# Reading what users give.
# ---------------------------------------------------------------------------------------------
MIN_AUDIO_S = 0.5
"""Shortest clip accepted, in seconds."""

SILENCE_PEAK = 1e-4
"""Clips whose loudest sample is below this are treated as silent."""

_FIX = "pass a WAV/FLAC/OGG/MP3 file path, its bytes, (samples, sample_rate) or a Clip"


def load_audio(
    audio: Any,
    sample_rate: int,
    *,
    min_s: float = MIN_AUDIO_S,
    max_s: float | None = None,
    field: str = "audio",
) -> np.ndarray:
    """Read, check and resample a clip to mono float32 at ``sample_rate``.

    Parameters
    ----------
    audio : str, Path, bytes, file object, (numpy.ndarray, int) or Clip
        The sound. Arrays are ``(samples,)`` or ``(samples, channels)`` / ``(channels, samples)``;
        channels are averaged.
    sample_rate : int
        The rate to return (the model's).
    min_s, max_s : float
        Accepted duration range in seconds (``max_s=None``: no upper limit).
    field : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray
        Mono float32 samples at ``sample_rate``, finite, not silent.

    Raises
    ------
    InvalidInputError
        Missing, empty, corrupt or non-audio input; silent, too short or too long clips.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(44100) / 44100
    >>> load_audio((np.sin(2 * np.pi * 440 * t), 44100), 16000).shape
    (16000,)
    """
    wave, rate = _decode(audio, field, max_s)
    wave = _mono(wave, field)
    duration = wave.shape[0] / rate
    if duration < min_s:
        raise InvalidInputError(
            field, f"{duration:.2f} s of audio", f"is shorter than {min_s:g} s", "pass a longer clip"
        )
    _check_length(duration, max_s, field)
    if not np.isfinite(wave).all():
        raise InvalidInputError(
            field, "samples with NaN/inf", "has non-finite samples", "pass finite samples"
        )
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise InvalidInputError(
            field, f"{duration:.2f} s of audio", "is silent", "pass a clip with some sound in it"
        )
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def audio_header(data: bytes | Path) -> Any | None:
    """What the header of ``data`` (bytes or a file) says (``soundfile.info``: frames, rate,
    channels, format), read without decoding a sample; ``None`` if libsndfile does not know it."""
    import soundfile as sf

    try:
        return sf.info(str(data) if isinstance(data, Path) else io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any reader error means "not a format libsndfile reads"
        return None


def check_audio_header(
    data: bytes, *, max_s: float, max_channels: int, field: str = "audio", shown: str = "the file"
) -> Any:
    """Refuse audio by its header, before decoding: unknown format, no frames, an odd sample rate,
    more than ``max_channels`` channels or longer than ``max_s`` seconds. Returns the header.

    A few hundred kilobytes of FLAC can claim ten minutes of eight channels: its header says so,
    and decoding it would take hundreds of megabytes. Nothing is decoded here.

    Examples
    --------
    >>> check_audio_header(wav_bytes(np.zeros(1600), 16000), max_s=1, max_channels=2).duration
    0.1
    """
    info = audio_header(data)
    if info is None:
        raise InvalidInputError(field, shown, "is not an audio file this app can read", _FIX)
    if int(info.frames) <= 0 or not 0 < int(info.channels):
        raise InvalidInputError(field, shown, "holds no sound", "pass a clip with sound in it")
    if not 1000 <= int(info.samplerate) <= 384000:
        raise InvalidInputError(
            field, shown, f"says its sample rate is {info.samplerate} Hz", "export it at 16-48 kHz"
        )
    if int(info.channels) > max_channels:
        raise InvalidInputError(
            field,
            shown,
            f"has {info.channels} channels, more than the {max_channels} taken here: mix it down first",
            "export it in mono or stereo",
        )
    seconds = info.frames / info.samplerate
    if seconds > max_s:
        raise InvalidInputError(
            field,
            shown,
            f"is {seconds:.1f} s long, longer than this app's {max_s:g} s: trim it first",
            f"trim it to at most {max_s:g} s",
        )
    return info


def _check_length(duration: float, max_s: float | None, field: str) -> None:
    if max_s is not None and duration > max_s:
        raise InvalidInputError(
            field,
            f"{duration:.1f} s of audio",
            f"is longer than the model's {max_s:g} s",
            f"trim it to at most {max_s:g} s",
        )


def _refuse_long(source: bytes | Path, max_s: float | None, field: str) -> None:
    """Refuse a file whose header says it is longer than ``max_s`` (nothing decoded)."""
    if max_s is None:
        return
    info = audio_header(source)
    if info is not None and info.samplerate > 0:
        _check_length(info.frames / info.samplerate, max_s, field)


def _decode(audio: Any, field: str, max_s: float | None = None) -> tuple[np.ndarray, int]:
    """Samples and their rate, from any accepted kind of input."""
    if audio is None:
        raise InvalidInputError(field, audio, "is missing", _FIX)
    if hasattr(audio, "waveform") and hasattr(audio, "sample_rate"):  # a Clip
        return np.asarray(audio.waveform, dtype=np.float32), int(audio.sample_rate)
    if isinstance(audio, tuple):
        return _from_pair(audio, field)
    if isinstance(audio, np.ndarray):
        raise InvalidInputError(
            field,
            f"array of shape {audio.shape}",
            "has no sample rate",
            "pass (samples, sample_rate), e.g. (y, 16000)",
        )
    return _read_file(audio, field, max_s)


def _from_pair(pair: tuple, field: str) -> tuple[np.ndarray, int]:
    if len(pair) != 2:
        raise InvalidInputError(field, f"tuple of {len(pair)} items", "is not (samples, sample_rate)", _FIX)
    samples, rate = pair
    if isinstance(samples, (int, float)) and not isinstance(rate, (int, float)):
        samples, rate = rate, samples  # accept (sr, samples) as scipy.io.wavfile.read returns it
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 384000:
        raise InvalidInputError(
            field,
            f"sample rate {rate!r}",
            "is not a sample rate in Hz",
            "pass (samples, sample_rate) with e.g. 16000",
        )
    wave = np.asarray(samples)
    if wave.dtype.kind not in "fiu" or wave.size == 0:
        raise InvalidInputError(
            field, f"array of {wave.dtype} {wave.shape}", "holds no audio samples", "pass numeric samples"
        )
    if wave.dtype.kind in "iu":  # PCM integers to [-1, 1]
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    return wave.astype(np.float32), int(rate)


def _read_file(audio: Any, field: str, max_s: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    shown = f"{len(audio)} bytes" if isinstance(audio, (bytes, bytearray)) else str(audio)[:60]
    path = None
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
    elif isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        if not path.is_file():
            raise InvalidInputError(field, str(audio), "is not an existing file", _FIX)
        _refuse_long(path, max_s, field)  # before reading it into memory
        data = path.read_bytes()
    elif hasattr(audio, "read"):
        data = audio.read()
    else:
        raise InvalidInputError(field, audio, f"is a {type(audio).__name__}, not audio", _FIX)
    if not data:
        raise InvalidInputError(field, shown, "is empty (zero bytes)", "upload the file again; " + _FIX)
    _refuse_long(data, max_s, field)  # before decoding it
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return _read_with_librosa(path, shown, field)
    if wave.size == 0:
        raise InvalidInputError(field, shown, "holds no samples", "pass a clip with sound in it")
    return wave, int(rate)


def _read_with_librosa(path: Path | None, shown: str, field: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile does not know (m4a, ...) through librosa's audioread fallback."""
    problem = "is corrupt or not an audio file soundfile/librosa can read"
    if path is None:
        raise InvalidInputError(field, shown, problem, _FIX)
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, rate = librosa.load(str(path), sr=None, mono=False)
    except Exception:  # noqa: BLE001 - any decoder failure means: not usable audio
        raise InvalidInputError(field, shown, problem, _FIX) from None
    if wave.size == 0:
        raise InvalidInputError(field, shown, "holds no samples", "pass a clip with sound in it")
    return wave.T, int(rate)


def _mono(wave: np.ndarray, field: str) -> np.ndarray:
    """Average channels; the channel axis is the short one of a 2-D array."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1 if wave.shape[1] <= wave.shape[0] else 0)
    if wave.ndim != 1:
        raise InvalidInputError(
            field,
            f"array of shape {wave.shape}",
            "is not mono or stereo samples",
            "pass (samples,) or (samples, channels)",
        )
    return wave
