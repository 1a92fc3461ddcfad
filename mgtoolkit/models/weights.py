"""Weights as they are published, made into the folder the libraries read: the entry point.

A ``model=`` (or ``captioner=``/``writer=``/``clap=``) value ends up as a folder on disk: a folder
the user gave, a snapshot in the Hugging Face cache, or a download. That folder may hold paddle
weights (``save_pretrained`` of ppdiffusers/paddlenlp: safetensors with ``np``/``pd`` metadata) or
torch weights as the hubs ship them (``diffusion_pytorch_model.safetensors``, ``model.safetensors``
with ``pt`` metadata, or pickled ``.bin``), and anything else its publisher put there (``.py``
files, pickles beside the safetensors). :func:`paddle_folder` returns the folder ppdiffusers and
paddlenlp are given, always one mgtoolkit built (see :mod:`mgtoolkit.models.model_files` for what
goes in): paddle safetensors linked, anything else converted once, as safetensors, with pickles read
only through :mod:`mgtoolkit.models.safe_pickle`. Nothing is ever written into the source folder.

The parts: :mod:`~mgtoolkit.models.locate` (where weights are), :mod:`~mgtoolkit.models.fetch`
(downloads), :mod:`~mgtoolkit.models.formats` (what a folder holds),
:mod:`~mgtoolkit.models.convert` (torch to paddle), :mod:`~mgtoolkit.models.store` (the entries
in the cache); this module reads the tensors and puts an entry together, and keeps the names the
rest of mgtoolkit uses.

paddle, ppdiffusers and paddlenlp are imported inside functions only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_root
from ..errors import ModelUnavailableError
from .convert import (
    _fit,
    _import_ppdiffusers,
    _is_diffusers_model,
    _paddle_config,
    _paddle_tokenizer_config,
    _part_classes,
    _skeleton,
    _tie_heads,
    _to_paddle,
    component_class,
)
from .fetch import _ALLOW, FetchResult, fetch, fetch_repo
from .formats import WeightFile, _damaged, _safetensors_format, folder_format, weight_files
from .locate import disk_size, find_hf_snapshot, hf_cache_dir, locate, presence
from .store import (
    CONVERTER_VERSION,
    MANIFEST,
    _entry_ok,
    _sha256,
    _slug,
    _walk,
    conversions_done,
    converted_root,
    source_key,
    write_entry,
)

__all__ = [
    "CONVERTER_VERSION",
    "MANIFEST",
    "conversions_done",
    "hf_cache_dir",
    "find_hf_snapshot",
    "locate",
    "weight_files",
    "folder_format",
    "paddle_folder",
    "check_cache_root",
    "converted_root",
    "source_key",
    "component_class",
    "fetch",
    "fetch_repo",
    "FetchResult",
    "disk_size",
    "presence",
    "WeightFile",
    "_ALLOW",
    "_import_ppdiffusers",
]


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as numpy (bfloat16 widened to float32, exactly), by name.

    Read by :mod:`mgtoolkit.io.safetensors_io` (checked header, plain file reads); a damaged file is one
    :class:`ModelUnavailableError` line naming it.
    """
    from ..io.safetensors_io import read_file

    return read_file(path)


def _read_safetensors_raw(path: Path) -> dict[str, np.ndarray]:
    """:func:`_read_safetensors` (kept for callers of the former hand-written reader)."""
    return _read_safetensors(path)


def _read_tensors(weights: WeightFile, allow_unsafe: bool | None) -> dict[str, np.ndarray]:
    from .safe_pickle import read_pdparams, read_torch_bin

    state: dict[str, np.ndarray] = {}
    for path in weights.paths:
        if not path.is_file():
            raise _damaged(path, "the file is missing (a partial download?)")
        if weights.container == "safetensors":
            state.update(_read_safetensors(path))
        elif weights.framework == "torch":
            state.update(read_torch_bin(path, allow_unsafe=allow_unsafe))
        else:
            state.update(read_pdparams(path, allow_unsafe=allow_unsafe))
    return state


def paddle_folder(
    folder: str | Path,
    *,
    name: str,
    field: str = "model",
    model_class: Any = None,
    allow_unsafe: bool | None = None,
) -> Path:
    """The folder paddle's ``from_pretrained`` is given for ``folder``: always one built by mgtoolkit.

    It holds the model's configurations and tokenizer files (``auto_map`` removed) and the weights
    chosen here as safetensors, nothing else: no ``.py`` (ppdiffusers would import
    ``<component>/<library>.py`` or ``None.py``), no pickle and no pickle index (ppdiffusers and
    paddlenlp would open ``model_state.pdparams`` with ``paddle.load``, ahead of the safetensors in
    some cases). Paddle safetensors are linked into it (hard links where the file system allows,
    else links to their checked real paths); torch weights and every pickle are read through
    :mod:`mgtoolkit.models.safe_pickle` and written converted.

    Parameters
    ----------
    folder : str or Path
        A pipeline folder (with ``model_index.json``) or one model's folder (``config.json``).
    name : str
        What the user called the model (names the cache entry and the errors).
    field : str
        ``"model"``, ``"captioner"``, ``"writer"`` or ``"clap"``: the argument named in errors.
    model_class : type, optional
        For a one-model folder, the paddle class (else taken from ``config.json``'s architectures).
    allow_unsafe : bool or None
        Passed to the pickle readers of :mod:`mgtoolkit.models.safe_pickle`.

    Returns
    -------
    Path
        The entry in :func:`converted_root` (made now if it is not there or no longer matches its
        manifest).

    Raises
    ------
    ModelUnavailableError
        One line: a component naming code of its own in ``model_index.json``, a file linking outside
        the folder, a weights index naming files elsewhere, a crafted pickle, a cache others can
        write into, damaged or missing files.
    """
    from .config_sizes import check_sizes
    from .model_files import check_cache, check_links

    folder = Path(folder)
    parts = _check_complete(folder, name, field)
    check_links(folder, [folder / p for p in parts] + [p for _, p in _walk(folder)], field=field, name=name)
    check_sizes(folder, _walk(folder), field=field, name=name)  # before anything is built from them
    _check_defaults(folder, model_class, field=field, name=name)
    kind = folder_format(folder)
    if kind == "empty":
        raise ModelUnavailableError(
            f"{field}={name!r}: {folder} holds no weights (no .safetensors, .bin or .pdparams files): a partial "
            "download? Download the model again (python -m mgtoolkit fetch NAME) or pass the complete folder."
        )
    for root in (cache_root(), converted_root()):
        check_cache(root, field=field, name=name)
    label = folder.name if os.path.isdir(name) else name  # a folder: its own name, not its whole path
    entry = converted_root() / f"{_slug(label)}-{source_key(folder)}"
    if _entry_ok(entry):
        return entry
    linked = kind == "paddle"

    def fill(staging: Path) -> dict[str, dict]:
        return _convert_into(folder, staging, model_class=model_class, allow_unsafe=allow_unsafe, link=linked)

    return write_entry(folder, entry, fill, name=name, field=field, linked=linked, allow_unsafe=allow_unsafe)


def _check_defaults(folder: Path, model_class, *, field: str, name: str) -> None:
    """The sizes each component's class fills in where its configuration is silent, checked too."""
    from .config_sizes import check_defaults

    if not (folder / "model_index.json").is_file() and not isinstance(model_class, type):
        return  # a one-model folder without a class: nothing is built from its defaults here
    check_defaults(folder, _part_classes(folder, model_class), field=field, name=name)


def check_cache_root(*, field: str = "model", name: str = "") -> None:
    """Refuse a cache other users can write into (tiny models are read from it as they are)."""
    from .model_files import check_cache

    check_cache(cache_root(), field=field, name=name)


def _check_complete(folder: Path, name: str, field: str) -> list[str]:
    """The component folders of a pipeline (``["."]`` for one model's folder), checked."""
    from .model_files import pipeline_components

    if not folder.is_dir():
        raise ModelUnavailableError(f"{field}={name!r}: {folder} is not a folder; pass the model's folder.")
    if (folder / "model_index.json").is_file():
        parts = pipeline_components(folder, field=field, name=name)
        missing = [p for p in parts if not (folder / p).is_dir()]
        if missing:
            raise ModelUnavailableError(
                f"{field}={name!r}: {folder} lacks the component folder(s) {', '.join(missing)} that "
                "model_index.json names (a partial download?); download the model again "
                "(python -m mgtoolkit fetch NAME) or copy the whole folder."
            )
        return list(parts)
    if not (folder / "config.json").is_file():
        raise ModelUnavailableError(
            f"{field}={name!r}: {folder} holds neither model_index.json nor config.json, so it is not a "
            "model folder; pass the folder that contains them."
        )
    return ["."]


def _convert_into(
    folder: Path, staging: Path, *, model_class, allow_unsafe, link: bool = False
) -> dict[str, dict]:
    """Copy the configuration and tokenizer files, then link (``link``) or convert each component's
    weights; return the manifest's files. Nothing else of the folder is written."""
    from .model_files import is_data_file, strip_custom_code

    if link and not (folder / "model_index.json").is_file():
        classes: dict[str, tuple[Any, str]] = {".": (None, "the model")}  # no class needed to link
    else:
        classes = _part_classes(folder, model_class)
    written: dict[str, dict] = {}
    for rel, path in _walk(folder):  # configurations, tokenizers, schedulers: copied
        if not is_data_file(rel):
            continue
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staging / rel)
        strip_custom_code(staging / rel)
        if link:  # paddle's own files: as they are
            pass
        elif Path(rel).name == "config.json":
            _paddle_config(staging / rel)
        elif Path(rel).name == "tokenizer_config.json":
            _paddle_tokenizer_config(staging / rel)
        written[rel] = {}
    for part, (cls, class_name) in classes.items():
        weights = weight_files(folder / part) if (folder / part).is_dir() else None
        if weights is None:
            continue
        target = staging / part
        target.mkdir(parents=True, exist_ok=True)
        if link:
            outs = _link_component(weights, target)
        else:
            outs = [_convert_component(folder / part, target, cls, class_name, weights, allow_unsafe)]
        for out in outs:
            written[(Path(part) / out.name).as_posix()] = {}
    for rel in written:
        stat = (staging / rel).stat()
        written[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(staging / rel)}
    return written


def _link_component(weights: WeightFile, target: Path) -> list[Path]:
    """Paddle safetensors placed into ``target`` under their own names (a shard index rewritten
    from the checked shard names); every file's header is read first, so a damaged one is named."""
    from .model_files import place

    for path in weights.paths:
        if not path.is_file():
            raise _damaged(path, "the file is missing (a partial download?)")
        _safetensors_format(path)
    if len(weights.paths) == 1:
        out = target / weights.paths[0].name
        place(weights.paths[0], out)
        return [out]
    index = weights.index
    from .model_files import read_config

    weight_map = read_config(index)["weight_map"]  # checked by weight_files: a mapping of plain names
    outs = [target / index.name]
    outs[0].write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1), encoding="utf-8")
    for path in weights.paths:
        place(path, target / path.name)
        outs.append(target / path.name)
    return outs


def _convert_component(
    sub: Path, target: Path, cls, class_name: str, weights: WeightFile, allow_unsafe
) -> Path:
    """One component: read (safely), convert names and layouts if torch, check, write safetensors."""
    if cls is None:
        raise ModelUnavailableError(
            f"{sub}: ppdiffusers has no class {class_name!r} (named in model_index.json); the pipeline needs a "
            "newer ppdiffusers or the folder is not an AudioLDM-family pipeline."
        )
    state = _read_tensors(weights, allow_unsafe)
    try:
        skeleton = _skeleton(cls, target)  # from the copied (paddle-spelled) configuration
        if weights.framework == "torch":
            state = _to_paddle(cls, skeleton, state)
            _tie_heads(skeleton, state)
        state = _fit(skeleton, state, sub, class_name)
        diffusers_model = _is_diffusers_model(cls)
        out = target / ("diffusion_paddle_model.safetensors" if diffusers_model else "model.safetensors")
        _save_streaming(state, out, metadata={"format": "pd" if diffusers_model else "np"})
    except (ModelUnavailableError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the libraries raise anything on a crafted config or dtype
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        detail = "".join(c if c.isprintable() else "?" for c in detail)
        raise ModelUnavailableError(
            f"{sub}: the weights do not convert to {class_name} ({detail}); the folder holds another model, "
            "a damaged file or tensors of a kind models do not use: download the model again."
        ) from None
    return out


def _save_streaming(state: dict[str, np.ndarray], path: Path, *, metadata: dict[str, str]) -> None:
    """Write ``state`` as safetensors tensor by tensor, emptying ``state`` as it goes, so that the
    conversion never holds a second copy of the weights (a whole-dict writer holding contiguous
    copies of the transposed views took 2x a component at the peak: 1.2 GB more for CLAP, beside a
    low-memory AudioLDM in a 2 GB Binder)."""
    from ..io.safetensors_io import _NAMES, write

    def little(value: np.ndarray) -> np.dtype:
        return np.dtype(value.dtype).newbyteorder("<")

    def name_of(key: str, value: np.ndarray) -> str:
        try:
            return _NAMES[little(value).str]
        except KeyError:
            raise ValueError(f"tensor {key!r} is {value.dtype}, which models do not use") from None

    entries = {key: (name_of(key, v), v.shape) for key, v in state.items()}

    def chunks():
        for key in list(state):
            value = state.pop(key)
            yield np.ascontiguousarray(value, dtype=little(value)).reshape(-1)

    write(path, entries, chunks(), metadata=metadata)
