"""What mgtoolkit reads from a model folder: configurations, tokenizer files and tensors, nothing else.

A model folder (one the user gave, a Hugging Face cache snapshot, a download) is data written by
someone else. ppdiffusers and paddlenlp would also import Python from it (ppdiffusers:
``<component>/<library>.py`` named in ``model_index.json``, ``None.py`` or ``<_class_name[0]>.py``
at the top) and pick pickled weights on their own (``model_state.pdparams`` and its index, opened
with ``paddle.load``). So the libraries are only ever given a folder mgtoolkit built (see
:func:`mgtoolkit.models.weights.paddle_folder`), and what goes into it is decided here:

- :func:`read_model_index` is the one reader of ``model_index.json`` (the checks of
  :func:`read_config`, and a JSON object); :func:`listed_components` lists its parts as written.
- :func:`pipeline_components` checks ``model_index.json``: every component's library is
  ppdiffusers/diffusers, paddlenlp/transformers or a pipeline module of ppdiffusers, and its class is
  a class of that library; anything else is refused in one line naming the file and the component.
- :func:`is_data_file`: the files copied besides the weights (``.json``, ``.txt``, tokenizer models);
  never a ``.py``, never a pickle, never a weights index (ours are written afresh).
- :func:`check_links`: no file of the folder is a link leading outside it (a snapshot's links may
  lead into its repository's ``blobs``).
- :func:`shard_names`: a weights index lists plain file names of its own folder.
- :func:`check_cache`: the cache we build those folders in is not writable by other users.
- :func:`load_despite_stray_warnings`: a load that paddlenlp failed only because a warning from
  elsewhere in the process (an unclosed file collected by another thread) arrived meanwhile is
  made once more (:func:`stray_warnings`).

Nothing here imports paddle at module import.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

from ..errors import ModelUnavailableError

__all__ = [
    "DATA_SUFFIXES",
    "import_ppdiffusers_quietly",
    "MODEL_INDEX",
    "read_model_index",
    "listed_components",
    "pipeline_components",
    "library_class",
    "is_data_file",
    "check_links",
    "shard_names",
    "check_cache",
    "place",
    "strip_custom_code",
    "stray_warnings",
    "load_despite_stray_warnings",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DATA_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".vocab", ".bpe", ".jinja")
"""Files copied into the folder the libraries read, besides the weights we choose."""

# model_index.json library -> the module ppdiffusers takes the class from (its own mapping, 6.1).
_LIBRARIES = {
    "ppdiffusers": "ppdiffusers",
    "diffusers": "ppdiffusers",
    "diffusers_paddle": "ppdiffusers",
    "transformers": "ppdiffusers.transformers",
    "paddlenlp.transformers": "ppdiffusers.transformers",
    "ppdiffusers.transformers": "ppdiffusers.transformers",
    "paddlenlp": "paddlenlp",
}
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def _refuse(field: str, name: str, where: Path, problem: str, fix: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"{field}={name!r}: {where}: {problem}; {fix}.")


_NO_CODE = "mgtoolkit reads configurations, tokenizer files and tensors from a model, never its code"


MAX_CONFIG_BYTES = 64 << 20
"""The largest configuration file read (``model_index.json``, ``config.json``, ``*_config.json``)."""


def read_config(path: Path, *, field: str = "model", name: str = ""):
    """The JSON of a model's configuration file, or one :class:`ModelUnavailableError` line.

    Only a regular file (a link to ``/dev/zero`` or a FIFO would be read without end) of at most
    :data:`MAX_CONFIG_BYTES`, opened without blocking and checked on the open file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"more than the {MAX_CONFIG_BYTES:,} bytes a configuration may hold")
        return json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise _refuse(
            field, name or str(path.parent), path, f"cannot be read ({detail})", "download the model again"
        ) from None


MODEL_INDEX = "model_index.json"
"""The file that makes a folder a pipeline: its class and each component's ``[library, class]``."""


def read_model_index(folder: Path, *, field: str = "model", name: str = "") -> dict:
    """The JSON object of ``folder/model_index.json``: every reader of that file goes through here.

    :func:`read_config`'s checks (a regular file, at most :data:`MAX_CONFIG_BYTES`, opened without
    blocking), and the whole is a JSON object.

    Raises
    ------
    ModelUnavailableError
        One line naming the file: unreadable, too large, not JSON, or not an object.
    """
    index = Path(folder) / MODEL_INDEX
    config = read_config(index, field=field, name=name or str(folder))
    if not isinstance(config, dict):
        raise _refuse(field, name or str(folder), index, "is not a JSON object", "download the model again")
    return config


def listed_components(index: dict) -> dict[str, tuple[str, str]]:
    """``component -> (library, class)`` as a read ``model_index.json`` lists them, unchecked: plain
    folder names with both entries given (optional parts left out as ``[null, null]`` are skipped).
    :func:`pipeline_components` is the checked form, for a folder the libraries will load."""
    return {
        part: (value[0], value[1])
        for part, value in index.items()
        if not part.startswith("_")
        and _PLAIN.match(part)
        and isinstance(value, list)
        and len(value) == 2
        and value[0]
        and value[1]
    }


def import_ppdiffusers_quietly():
    """ppdiffusers, imported quietly (its import warns about distutils)."""
    import warnings

    from ..runtime import import_paddle, quiet_model_logs

    import_paddle()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*distutils.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import ppdiffusers
    quiet_model_logs()
    return ppdiffusers


def library_class(library: str, class_name: str):
    """The class ``[library, class_name]`` names, as ppdiffusers would resolve it, or ``None``.

    Only the libraries of :data:`_LIBRARIES` and ppdiffusers' own pipeline modules (``audioldm2``)
    are looked in; ``Flax``/``...TokenizerFast`` spellings map to the paddle class as ppdiffusers
    maps them. Nothing is imported from a model folder.
    """
    import importlib

    if not (isinstance(library, str) and isinstance(class_name, str) and _PLAIN.match(class_name)):
        return None
    ppdiffusers = import_ppdiffusers_quietly()
    class_name = class_name[4:] if class_name.startswith("Flax") else class_name
    if class_name.endswith("Fast") and "tokenizer" in class_name.lower():
        class_name = class_name[:-4]
    if library in _LIBRARIES:
        module = importlib.import_module(_LIBRARIES[library])
    elif _PLAIN.match(library) and isinstance(
        getattr(ppdiffusers.pipelines, library, None), type(ppdiffusers)
    ):
        module = getattr(ppdiffusers.pipelines, library)
    else:
        return None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or _reads_pickles(cls):
        return None
    return cls


def _reads_pickles(cls) -> bool:
    """Whether the class opens a pickle of its folder itself (ErnieTinyTokenizer's ``word_dict``,
    ``dict.wordseg.pickle``, goes to ``pickle.load``): such a class is refused like a foreign one."""
    files = getattr(cls, "resource_files_names", None)
    names = files.values() if isinstance(files, dict) else ()
    return any(isinstance(n, str) and n.endswith((".pickle", ".pkl")) for n in names)


def pipeline_components(folder: Path, *, field: str = "model", name: str = "") -> dict[str, tuple[str, str]]:
    """``component -> (library, class)`` of ``folder/model_index.json``, checked.

    Raises
    ------
    ModelUnavailableError
        One line naming ``model_index.json`` and the component, when a pipeline or component names
        code of its own (a ``_class_name`` list, a library that is not ppdiffusers/diffusers,
        paddlenlp/transformers or a ppdiffusers pipeline module, a class that library lacks) or a
        component name that is not a plain folder name.
    """
    index = folder / MODEL_INDEX
    fix = f"{_NO_CODE}: pass a folder whose model_index.json names ppdiffusers/transformers classes only"
    config = read_model_index(folder, field=field, name=name)
    pipeline = config.get("_class_name")
    if not isinstance(pipeline, str):
        raise _refuse(
            field, name or str(folder), index, f"_class_name {pipeline!r} names a custom pipeline module", fix
        )
    out = {}
    for part, value in config.items():
        if part.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2 or (value[0] is None and value[1] is None):
            continue  # an optional component left out ([null, null])
        library, class_name = value
        if not (isinstance(part, str) and _PLAIN.match(part)):
            raise _refuse(
                field, name or str(folder), index, f"component {part!r} is not a plain folder name", fix
            )
        if library_class(library, class_name) is None:
            raise _refuse(
                field,
                name or str(folder),
                index,
                f"component {part!r} names {library!r}/{class_name!r}, which is not a class of ppdiffusers, "
                "paddlenlp or transformers that reads only data (a module of the folder's own, or a "
                "tokenizer that unpickles its files?)",
                fix,
            )
        out[part] = (library, class_name)
    return out


def is_data_file(rel: str) -> bool:
    """Whether ``rel`` (a path in a model folder) is copied as it is: a configuration or tokenizer
    file; never code, pickles, weights or a weights index (:func:`shard_names` reads those)."""
    path = PurePosixPath(rel)
    return (
        path.suffix in DATA_SUFFIXES
        and not path.name.endswith(".index.json")
        and not any(part.startswith(".") for part in path.parts)
    )


def _trust_root(folder: Path) -> Path:
    """Where links in ``folder`` may lead: the folder, or a cache snapshot's whole repository."""
    real = folder.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def check_links(folder: Path, files, *, field: str = "model", name: str = "") -> None:
    """Refuse, in one line, a file of ``files`` (paths under ``folder``) that resolves outside it."""
    root = _trust_root(folder)
    for path in files:
        real = Path(path).resolve()
        if real != root and root not in real.parents:
            raise _refuse(
                field,
                name or str(folder),
                Path(path),
                f"is a link to {real}, outside the model folder",
                "copy the model's own files into the folder (a model reads nothing outside its folder)",
            )


def shard_names(index: Path, weight_map) -> tuple[str, ...]:
    """The shard file names a weights index lists, each a plain name in the index's own folder.

    Raises
    ------
    ModelUnavailableError
        One line naming the index and the entry, for a path (``../x``, ``/abs``, ``sub/x``).
    """
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelUnavailableError(
            f"{index}: its weight_map is empty or not a mapping; download the model again."
        )
    names = set()
    for value in weight_map.values():
        if not (isinstance(value, str) and _FILE.match(value) and value not in (".", "..")):
            raise ModelUnavailableError(
                f"{index}: lists the shard {value!r}, which is not a file name in the index's own folder; "
                "a weights index may only name files beside it: download the model again."
            )
        names.add(value)
    return tuple(sorted(names))


def check_cache(root: Path, *, field: str = "model", name: str = "") -> None:
    """Refuse a cache folder others may write into: world-writable, another user's (its owner
    writes there whatever its mode; root's is trusted), or another user's and group-writable.
    Whatever is in it (converted weights, tiny models) is read back as trusted."""
    try:
        info = root.stat()
    except FileNotFoundError:
        return
    mode, owner = stat.S_IMODE(info.st_mode), info.st_uid
    ours = owner == os.geteuid()
    if mode & 0o002 or (not ours and (owner != 0 or mode & 0o020)):
        who = "every user" if mode & 0o002 else "its group" if mode & 0o020 else f"its owner (uid {owner})"
        raise ModelUnavailableError(
            f"{field}={name!r}: the mgtoolkit cache {root} can be written by {who} (mode {mode:o}, owner uid "
            f"{owner}), so the weights read back from it could be someone else's; point MGTOOLKIT_CACHE at a "
            f"folder of your own (mgtoolkit creates it 0700), or make this one yours only (chmod 700 {root})."
        )


def place(source: Path, target: Path) -> None:
    """Put ``source``'s content at ``target`` without copying where possible: a hard link, else a
    symbolic link to its real path (already checked to be inside the model folder), else a copy."""
    real = source.resolve()
    try:
        os.link(real, target)
        return
    except OSError:
        pass
    try:
        os.symlink(real, target)
    except OSError:
        shutil.copyfile(real, target)


_PATH_KEYS = re.compile(r"(_file|_files|_path|_dir|_dict|_model_file)$")
"""Keys of a configuration whose value is a file the library opens (``vocab_file``, ``word_dict``)."""


def _names_a_file(key, value) -> bool:
    """Whether a configuration entry hands the library a file path: a resource name
    (``vocab_file``, ``word_dict``, ``name_or_path``) with a text value, or text that is an absolute
    path or a relative one naming something on this machine."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return any(_names_a_file(key, v) for v in value)
    if not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value:
        return False
    if isinstance(key, str) and (_PATH_KEYS.search(key) or key in ("name_or_path", "_name_or_path")):
        return True
    if isinstance(key, str) and key.endswith("_token"):
        return False  # a token ("</s>"), never opened
    if value.startswith(("/", "~", "\\")) or os.path.isabs(value):
        return True
    return any(c in value for c in "/\\.") and os.path.lexists(value)


def strip_custom_code(path: Path) -> None:
    """Remove from a copied JSON configuration what would make a library run or open something the
    folder did not hold: ``auto_map`` (classes in the folder's own ``.py`` files: the libraries' own
    class for the model type is used, as transformers does without trust_remote_code) and, in a
    ``*config.json``, every entry naming a file (``vocab_file``,
    ``word_dict``, an absolute path): paddlenlp's tokenizers open such a path as given, wherever it
    leads (ErnieTinyTokenizer ``pickle.load``s its ``word_dict``), and without it take the file of
    that name in the folder we built."""
    if path.name.endswith("config.json"):
        config = read_config(path)
    else:  # vocabularies, tokenizer.json: read as they are by the libraries; only configs name code
        try:
            config = (
                json.loads(path.read_text(encoding="utf-8"))
                if path.stat().st_size <= MAX_CONFIG_BYTES
                else None
            )
        except (OSError, ValueError, RecursionError):
            return
    if not isinstance(config, dict):
        return
    drop = {"auto_map"} & set(config)
    if path.name.endswith("config.json"):
        drop |= {k for k, v in config.items() if _names_a_file(k, v)}
    if drop:
        for key in drop:
            del config[key]
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Warnings from elsewhere that paddlenlp takes for load errors.
# ---------------------------------------------------------------------------------------------
_LOAD_ERRORS = "Error(s) in loading state_dict"
_STRAY = re.compile(r"unclosed\b|Enable tracemalloc")  # what a ResourceWarning says


def stray_warnings(exc: BaseException) -> list[str]:
    """The messages of paddlenlp's ``Error(s) in loading state_dict`` when every one of them is a
    warning from elsewhere in the process (a ``ResourceWarning``: ``unclosed file ...``), else ``[]``.

    paddlenlp records every warning raised anywhere in the process while it copies the weights into
    a model (``warnings.catch_warnings(record=True)`` after ``warnings.resetwarnings()``, which also
    lifts Python's default ignoring of ``ResourceWarning``) and reports them as load errors: an
    unclosed file collected by another thread (a panel's, the user's) at that moment fails a sound
    model.

    Examples
    --------
    >>> stray_warnings(RuntimeError("Error(s) in loading state_dict for M:\\n\\tunclosed file <x>"))
    ['unclosed file <x>']
    >>> stray_warnings(RuntimeError("Error(s) in loading state_dict for M:\\n\\tError size mismatch"))
    []
    """
    text = str(exc)
    if not isinstance(exc, RuntimeError) or _LOAD_ERRORS not in text:
        return []
    messages = [m.strip() for m in text.split(":\n\t", 1)[-1].split("\n\t") if m.strip()]
    found = ":\n\t" in text and messages and all(_STRAY.match(m) for m in messages)
    return messages if found else []


def load_despite_stray_warnings(load: Callable[[], T]) -> T:
    """``load()``, made once more if paddlenlp failed it only on :func:`stray_warnings`."""
    try:
        return load()
    except RuntimeError as exc:
        stray = stray_warnings(exc)
        if not stray:
            raise
        log.warning(
            "mgtoolkit: a warning from elsewhere in this process (%s) stopped a load; loading again",
            stray[0][:160],
        )
    return load()
