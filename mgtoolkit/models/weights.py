"""Weights as they are published: find them, tell their format from the files, convert once.

A ``model=`` (or ``captioner=``/``writer=``) value ends up as a folder on disk: a folder the user
gave, a snapshot in the Hugging Face cache (``models--owner--name/snapshots/<rev>``, found by hub
id, also offline), or a download. That folder may hold paddle weights (``save_pretrained`` of
ppdiffusers/paddlenlp: safetensors with ``np``/``pd`` metadata) or torch weights as the hubs ship
them (diffusers/transformers: ``diffusion_pytorch_model.safetensors``, ``model.safetensors`` with
``pt`` metadata, or pickled ``.bin``). :func:`paddle_folder` returns a folder paddle loads as it is:
the folder itself when it already is one, else a paddle-format copy converted once into
``config.cache_root()/converted/<name>-<key>/``.

The conversion is ppdiffusers'/paddlenlp's own mathematics, driven here: paddlenlp's name mappings
(``_get_name_mappings``) where the class has them, else ppdiffusers'
``convert_pytorch_state_dict_to_paddle`` (transpose each ``nn.Linear`` weight, rename batch-norm
statistics). Pickles are read only through :mod:`mgtoolkit.models.safe_pickle`; the copy is written
as safetensors (never pickle) into a temporary folder renamed into place, with a manifest holding
the sha256 of every file written. Nothing is ever written into the source folder.

paddle, ppdiffusers and paddlenlp are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_root, private_dir
from ..errors import ModelUnavailableError

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
    "converted_root",
    "source_key",
    "component_class",
    "fetch",
    "fetch_repo",
    "FetchResult",
    "disk_size",
    "presence",
]

CONVERTER_VERSION = 1
"""Part of every cache key: bump it when the conversion changes, so old copies are rebuilt."""

MANIFEST = "mgtoolkit-converted.json"
_STAGING_PREFIX = ".staging-"
_STALE_STAGING_S = 6 * 3600
_COUNTER = {"conversions": 0}

# Weight files by how they are read and what they hold, in the order they are preferred.
_TORCH_SAFE = ("diffusion_pytorch_model.safetensors", "model.safetensors")
_PADDLE_SAFE = ("diffusion_paddle_model.safetensors", "model.safetensors")
_TORCH_PICKLE = ("diffusion_pytorch_model.bin", "pytorch_model.bin")
_PADDLE_PICKLE = ("model_state.pdparams", "diffusion_paddle_model.pdparams")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pdparams", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx")


def conversions_done() -> int:
    """How many torch-to-paddle conversions this process has run (a later load of the same weights
    reads the cached copy and does not add one)."""
    return _COUNTER["conversions"]


# --- Where weights are ---------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def find_hf_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder of ``repo_id`` in the Hugging Face cache (``refs/main`` first), or ``None``.

    Examples
    --------
    >>> find_hf_snapshot("nobody/nothing", Path("/nonexistent")) is None
    True
    """
    repo = (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text(encoding="utf-8").strip()
        if pinned.is_dir() and any(pinned.iterdir()):
            return pinned
    candidates = [p for p in snapshots.iterdir() if p.is_dir() and any(p.iterdir())]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _ppdiffusers_cache() -> Path:
    home = os.environ.get("PPNLP_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "paddlenlp"
    )
    return Path(home).expanduser()


def locate(source: str, *, marker: str = "model_index.json") -> Path | None:
    """A local folder holding ``source``: the folder itself, its Hugging Face cache snapshot, or
    PaddleNLP's download of it; ``None`` when it is nowhere on this machine.

    ``marker`` is the file that says the folder is complete (``model_index.json`` for a pipeline,
    ``config.json`` for a captioner or writer).
    """
    if os.path.isdir(source):
        return Path(source)
    snapshot = find_hf_snapshot(source)
    if snapshot is not None and (snapshot / marker).is_file():
        return snapshot
    for root in (_ppdiffusers_cache() / "ppdiffusers", _ppdiffusers_cache() / "models", _ppdiffusers_cache()):
        folder = root / source
        if (folder / marker).is_file():
            return folder
    return None


# --- What a folder holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFile:
    """The weights of one component: ``framework`` ``"torch"`` or ``"paddle"``; ``container``
    ``"safetensors"`` or ``"pickle"``; ``paths``: one file or the shards an index lists."""

    framework: str
    container: str
    paths: tuple[Path, ...]


def _safetensors_format(path: Path) -> str | None:
    """The ``format`` in a safetensors header (``pt``, ``np``, ``pd``) or ``None``, read without
    loading tensors; raises :class:`ModelUnavailableError` when the header is damaged."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(fh.read(size))
        return (header.get("__metadata__") or {}).get("format")
    except (OSError, ValueError) as exc:
        raise _damaged(path, exc) from None


def _index_shards(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise _damaged(index, exc) from None
    return tuple(index.parent / name for name in sorted(set(weight_map.values())))


def weight_files(folder: Path) -> WeightFile | None:
    """The weights of the component in ``folder`` (safetensors preferred over pickles), or ``None``.

    A ``model.safetensors`` is torch when its header says ``pt`` (as transformers writes it) and
    paddle otherwise (paddlenlp writes ``np``, ppdiffusers ``pd``).
    """
    for name in _TORCH_SAFE + _PADDLE_SAFE:
        path = folder / name
        if path.is_file():
            framework = "torch" if _safetensors_format(path) == "pt" or "pytorch" in name else "paddle"
            return WeightFile(framework, "safetensors", (path,))
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = _index_shards(index)
            framework = "torch" if "pytorch" in name or _safetensors_format(shards[0]) == "pt" else "paddle"
            return WeightFile(framework, "safetensors", shards)
    for names, framework in ((_TORCH_PICKLE, "torch"), (_PADDLE_PICKLE, "paddle")):
        for name in names:
            if (folder / name).is_file():
                return WeightFile(framework, "pickle", (folder / name,))
            if (folder / f"{name}.index.json").is_file():
                return WeightFile(framework, "pickle", _index_shards(folder / f"{name}.index.json"))
    return None


def _components(folder: Path) -> dict[str, tuple[str, str]]:
    """``name -> (library, class)`` of a pipeline folder's ``model_index.json``."""
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] and value[1]
    }


def folder_format(folder: str | Path) -> str:
    """``"paddle"`` when paddle loads the folder as it is (safetensors everywhere), ``"convert"``
    when some component holds torch weights or pickles, ``"empty"`` when no weights are there."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        found = [weight_files(folder / name) for name in _components(folder) if (folder / name).is_dir()]
    else:
        found = [weight_files(folder)]
    found = [f for f in found if f is not None]
    if not found:
        return "empty"
    plain = all(f.framework == "paddle" and f.container == "safetensors" for f in found)
    return "paddle" if plain else "convert"


# --- Reading one component's tensors -------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as numpy (bfloat16 widened to float32, exactly)."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                value = fh.get_tensor(key)  # bfloat16 where ml_dtypes is loaded (paddle loads it)
                out[key] = value.astype(np.float32) if value.dtype.name == "bfloat16" else value
        return out
    except (TypeError, ValueError) as exc:
        if "bf16" not in str(exc).lower() and "bfloat16" not in str(exc).lower():
            raise _damaged(path, exc) from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise _damaged(path, exc) from None
    return _read_safetensors_raw(path)


_RAW_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
               "U8": "u1", "BOOL": "?", "BF16": "<u2"}  # fmt: skip


def _read_safetensors_raw(path: Path) -> dict[str, np.ndarray]:
    """The safetensors layout read by hand (numpy has no bfloat16): 8-byte header size, JSON, data."""
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        size = int(np.frombuffer(raw[:8].tobytes(), "<u8")[0])
        header = json.loads(raw[8 : 8 + size].tobytes())
        header.pop("__metadata__", None)
        out = {}
        for key, info in header.items():
            start, end = info["data_offsets"]
            data = np.frombuffer(raw[8 + size + start : 8 + size + end].tobytes(), _RAW_DTYPES[info["dtype"]])
            if info["dtype"] == "BF16":
                data = (data.astype(np.uint32) << 16).view(np.float32)
            out[key] = data.reshape(info["shape"])
        return out
    except (OSError, ValueError, KeyError) as exc:
        raise _damaged(path, exc) from None


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


# --- Building an empty module to convert against -------------------------------------------------


def _import_ppdiffusers():
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


def component_class(library: str, class_name: str):
    """The paddle class for a ``model_index.json`` entry (``["diffusers", "UNet2DConditionModel"]``,
    ``["transformers", "ClapTextModelWithProjection"]``, ``["audioldm2", "AudioLDM2ProjectionModel"]``)."""
    import importlib

    ppdiffusers = _import_ppdiffusers()
    from ppdiffusers import transformers as pp_transformers

    for module in (ppdiffusers, pp_transformers):
        if hasattr(module, class_name):
            return getattr(module, class_name)
    try:
        return getattr(importlib.import_module(f"ppdiffusers.pipelines.{library}"), class_name)
    except (ImportError, AttributeError):
        return None


def _is_diffusers_model(cls) -> bool:
    from ppdiffusers import ModelMixin

    return isinstance(cls, type) and issubclass(cls, ModelMixin)


def _skeleton(cls, folder: Path):
    """An instance of ``cls`` configured from ``folder`` with lazily created (unallocated) weights."""
    from ..runtime import import_paddle

    paddle = import_paddle()
    if _is_diffusers_model(cls):
        with paddle.LazyGuard():
            return cls.from_config(cls.load_config(str(folder)))
    from paddlenlp.transformers.model_utils import no_init_weights

    config = cls.config_class.from_pretrained(str(folder))
    try:
        with no_init_weights(_enable=True), paddle.LazyGuard():  # as paddlenlp's low_cpu_mem_usage load
            return cls(config)
    except (NotImplementedError, RuntimeError, ValueError):  # a model whose __init__ computes on weights
        with no_init_weights(_enable=True):
            return cls(config)


def _name_mappings(cls, skeleton) -> list | None:
    getter = getattr(cls, "_get_name_mappings", None)
    if getter is None:
        return None
    try:
        return list(getter(skeleton.config))
    except (NotImplementedError, AttributeError, KeyError, TypeError):
        return None


def _to_paddle(cls, skeleton, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch names and layouts to paddle's, with the libraries' own conversion rules: paddlenlp's
    name mappings of the model, or of each sub-model that has them (BLIP-2's OPT), then
    ppdiffusers' rule (transpose ``nn.Linear`` weights) for every tensor left."""
    out: dict[str, np.ndarray] = {}
    if not _is_diffusers_model(cls):
        parts = [("", skeleton)] if _name_mappings(cls, skeleton) else list(skeleton.named_children())
        for prefix, part in parts:
            mappings = _name_mappings(type(part), part) or []
            prefix = f"{prefix}." if prefix else ""
            used = set()
            for mapping in mappings:
                source = prefix + mapping.source_name
                if source in state:
                    out[prefix + mapping.target_name] = mapping.run(
                        {mapping.source_name: state[source]}, mapping.source_name
                    )
                    used.add(source)
            for key in used:
                del state[key]
    from ppdiffusers.models.modeling_pytorch_paddle_utils import convert_pytorch_state_dict_to_paddle

    state = convert_pytorch_state_dict_to_paddle(skeleton, state)
    out.update(state)
    return {k: v for k, v in out.items() if "position_ids" not in k}


def _fit(skeleton, state: dict[str, np.ndarray], where: Path, class_name: str) -> dict[str, np.ndarray]:
    """Check ``state`` covers the module's parameters with their shapes; reshape 0-d/1-element ones."""
    tensors = skeleton.state_dict()
    wanted = {k: tuple(v.shape) for k, v in tensors.items()}
    shared: dict[str, list[str]] = {}  # one tensor under several names (T5's shared embedding)
    for key, value in tensors.items():
        shared.setdefault(getattr(value, "name", key), []).append(key)
    present = {k for names in shared.values() if any(n in state for n in names) for k in names}
    missing = [k for k in wanted if k not in state and k not in present and not _may_be_missing(k, skeleton)]
    wrong = [k for k in wanted if k in state and int(np.prod(state[k].shape)) != int(np.prod(wanted[k]))]
    if missing or wrong:
        problem = f"{len(missing)} of its {len(wanted)} tensors are missing" if missing else ""
        if wrong:
            problem += ("; " if problem else "") + f"{len(wrong)} have other shapes"
        raise ModelUnavailableError(
            f"{where}: the weights do not fit {class_name} ({problem}, e.g. {(missing + wrong)[:3]}): the "
            "folder holds another model or a different version of it; check model_index.json/config.json "
            "against the files, or download the model again."
        )
    for key, shape in wanted.items():
        if key in state and tuple(state[key].shape) != shape:
            state[key] = state[key].reshape(shape)
    return state


def _tie_heads(skeleton, state: dict[str, np.ndarray]) -> None:
    """Fill an output head a checkpoint left out because it is tied to the input embedding
    (transformers drops ``lm_head.weight`` of a tied OPT; paddlenlp's BLIP-2 keeps its own copy)."""
    tensors = skeleton.state_dict()
    names = {getattr(v, "name", k): k for k, v in tensors.items()}
    for key in tensors:
        head = key.rpartition(".")[0]
        if key in state or not head.endswith("lm_head"):
            continue
        owner = skeleton
        for part in head.split(".")[:-1]:
            owner = getattr(owner, part)
        if not getattr(getattr(owner, "config", None), "tie_word_embeddings", False):
            continue
        try:
            embedding = names[owner.get_input_embeddings().weight.name]
        except (AttributeError, KeyError, NotImplementedError):
            continue
        if embedding in state:
            value = state[embedding]
            state[key] = value if tuple(value.shape) == tuple(tensors[key].shape) else value.T


def _may_be_missing(key: str, skeleton) -> bool:
    """Tensors a checkpoint may leave out: position ids (rebuilt), a tied output embedding."""
    if "position_ids" in key or key.endswith("num_batches_tracked"):
        return True
    tied = getattr(getattr(skeleton, "config", None), "tie_word_embeddings", False)
    return bool(tied) and key.endswith("lm_head.weight")


# --- Converting a folder -------------------------------------------------------------------------


def converted_root() -> Path:
    """Where converted copies live: ``config.cache_root()/converted``."""
    return cache_root() / "converted"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[-60:] or "model"


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in Path(rel).parts):
            yield rel, path


def source_key(folder: Path) -> str:
    """A short hash of what the folder holds (names, sizes, modification times; symlinks followed),
    the folder's real path and :data:`CONVERTER_VERSION`: any change gives a new key."""
    digest = hashlib.sha256(f"{CONVERTER_VERSION}\0{folder.resolve()}".encode())
    for rel, path in _walk(folder):
        stat = path.stat()
        digest.update(f"\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_ok(entry: Path) -> bool:
    """The copy is complete and unchanged: every file of the manifest is there with its size and
    modification time, or, where those moved, its sha256."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        for rel, rec in manifest["files"].items():
            stat = (entry / rel).stat()
            if stat.st_size != rec["size"]:
                return False
            if stat.st_mtime_ns != rec["mtime_ns"] and _sha256(entry / rel) != rec["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def paddle_folder(
    folder: str | Path,
    *,
    name: str,
    field: str = "model",
    model_class: Any = None,
    allow_unsafe: bool | None = None,
) -> Path:
    """A folder paddle's ``from_pretrained`` loads with no conversion and no pickle.

    Parameters
    ----------
    folder : str or Path
        A pipeline folder (with ``model_index.json``) or one model's folder (``config.json``).
    name : str
        What the user called the model (names the cache entry and the errors).
    field : str
        ``"model"``, ``"captioner"`` or ``"writer"``: the argument named in errors.
    model_class : type, optional
        For a one-model folder, the paddle class (else taken from ``config.json``'s architectures).
    allow_unsafe : bool or None
        Passed to the pickle readers of :mod:`mgtoolkit.models.safe_pickle`.

    Returns
    -------
    Path
        ``folder`` itself when it already holds paddle safetensors only; otherwise the converted copy
        in :func:`converted_root` (made now if it is not there or no longer matches its manifest).
    """
    folder = Path(folder)
    _check_complete(folder, name, field)
    kind = folder_format(folder)
    if kind == "empty":
        raise ModelUnavailableError(
            f"{field}={name!r}: {folder} holds no weights (no .safetensors, .bin or .pdparams files): a partial "
            "download? Download the model again (python -m mgtoolkit fetch NAME) or pass the complete folder."
        )
    if kind == "paddle":
        return folder
    label = folder.name if os.path.isdir(name) else name  # a folder: its own name, not its whole path
    entry = converted_root() / f"{_slug(label)}-{source_key(folder)}"
    if _entry_ok(entry):
        return entry
    return _convert(folder, entry, name=name, field=field, model_class=model_class, allow_unsafe=allow_unsafe)


def _check_complete(folder: Path, name: str, field: str) -> None:
    if not folder.is_dir():
        raise ModelUnavailableError(f"{field}={name!r}: {folder} is not a folder; pass the model's folder.")
    index = folder / "model_index.json"
    if index.is_file():
        try:
            parts = _components(folder)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"{field}={name!r}: {index} cannot be read ({exc}); download the model again."
            ) from None
        missing = [p for p in parts if not (folder / p).is_dir()]
        if missing:
            raise ModelUnavailableError(
                f"{field}={name!r}: {folder} lacks the component folder(s) {', '.join(missing)} that "
                "model_index.json names (a partial download?); download the model again "
                "(python -m mgtoolkit fetch NAME) or copy the whole folder."
            )
    elif not (folder / "config.json").is_file():
        raise ModelUnavailableError(
            f"{field}={name!r}: {folder} holds neither model_index.json nor config.json, so it is not a "
            "model folder; pass the folder that contains them."
        )


def _convert(folder: Path, entry: Path, *, name: str, field: str, model_class, allow_unsafe) -> Path:
    """Write the paddle copy of ``folder`` into a staging folder, then rename it to ``entry``."""
    root = private_dir(converted_root())
    _clear_stale_staging(root)
    _check_space(folder, root, name, field)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{entry.name}-", dir=root))
    try:
        files = _convert_into(folder, staging, model_class=model_class, allow_unsafe=allow_unsafe)
        manifest = {
            "version": CONVERTER_VERSION,
            "source": str(folder.resolve()),
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "allow_unsafe_pickle": bool(allow_unsafe),
            "files": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if _entry_ok(entry):  # another process finished the same copy meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            return entry
        if entry.exists():  # a stale or damaged copy: replace it
            shutil.rmtree(entry)
        try:
            os.rename(staging, entry)
        except OSError:
            if not _entry_ok(entry):  # not a concurrent conversion that won
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ModelUnavailableError):
            raise
        raise ModelUnavailableError(
            f"{field}={name!r}: converting {folder} to paddle format in {root} failed ({exc}); nothing was "
            "kept. Free disk space there or set MGTOOLKIT_CACHE to a folder with room, and load again."
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _COUNTER["conversions"] += 1
    _drop_older_copies(root, entry, str(folder.resolve()))
    return entry


def _convert_into(folder: Path, staging: Path, *, model_class, allow_unsafe) -> dict[str, dict]:
    """Copy the non-weight files and convert each component's weights; return the manifest's files."""
    if (folder / "model_index.json").is_file():
        parts = {p: component_class(*lib_cls) for p, lib_cls in _components(folder).items()}
        classes = {p: (cls, _components(folder)[p][1]) for p, cls in parts.items()}
    else:
        classes = {".": (model_class or _architecture_class(folder), "the model")}
    written: dict[str, dict] = {}
    for rel, path in _walk(folder):  # configurations, tokenizers, schedulers: copied
        if rel.endswith(_WEIGHT_SUFFIXES) or rel.endswith(".index.json"):
            continue
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staging / rel)
        if Path(rel).name == "config.json":
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
        out = _convert_component(folder / part, target, cls, class_name, weights, allow_unsafe)
        written[(Path(part) / out.name).as_posix()] = {}
    for rel in written:
        stat = (staging / rel).stat()
        written[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(staging / rel)}
    return written


_TOKENIZERS = {"GPT2Tokenizer": "GPTTokenizer"}


def _paddle_tokenizer_config(path: Path) -> None:
    """Name the tokenizer class as paddlenlp has it (``GPT2Tokenizer`` is its ``GPTTokenizer``; the
    ``...Fast`` classes of transformers read the same files as the slow ones)."""
    from paddlenlp import transformers

    config = json.loads(path.read_text(encoding="utf-8"))
    name = config.get("tokenizer_class")
    if not isinstance(name, str) or hasattr(transformers, name):
        return
    plain = _TOKENIZERS.get(name.removesuffix("Fast"), name.removesuffix("Fast"))
    if hasattr(transformers, plain):
        config["tokenizer_class"] = plain
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _paddle_config(path: Path) -> None:
    """Spell a transformers ``config.json`` as paddlenlp reads it: OPT's ``ffn_dim`` is paddlenlp's
    ``intermediate_size`` (paddlenlp's own default would otherwise win in nested configs, BLIP-2's)."""
    config = json.loads(path.read_text(encoding="utf-8"))

    def fix(node):
        if isinstance(node, dict):
            if "ffn_dim" in node and "intermediate_size" not in node:
                node["intermediate_size"] = node["ffn_dim"]
            for value in node.values():
                fix(value)

    fix(config)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _architecture_class(folder: Path):
    from paddlenlp import transformers

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for arch in config.get("architectures") or []:
        if hasattr(transformers, arch):
            return getattr(transformers, arch)
    raise ModelUnavailableError(
        f"{folder}: config.json names no model class paddlenlp knows ({config.get('architectures')}); "
        "pass a folder of a supported captioner or writer."
    )


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
    skeleton = _skeleton(cls, target)  # from the copied (paddle-spelled) configuration
    if weights.framework == "torch":
        state = _to_paddle(cls, skeleton, state)
        _tie_heads(skeleton, state)
    state = _fit(skeleton, state, sub, class_name)
    diffusers_model = _is_diffusers_model(cls)
    out = target / ("diffusion_paddle_model.safetensors" if diffusers_model else "model.safetensors")
    _save_streaming(state, out, metadata={"format": "pd" if diffusers_model else "np"})
    return out


def _save_streaming(state: dict[str, np.ndarray], path: Path, *, metadata: dict[str, str]) -> None:
    """Write ``state`` as safetensors tensor by tensor, emptying ``state`` as it goes, so that the
    conversion never holds a second copy of the weights (``save_file`` of contiguous copies of the
    transposed views held 2x a component at the peak: 1.2 GB more for CLAP, beside a low-memory
    AudioLDM in a 2 GB Binder). To become ``safetensors_io.write`` when that module lands."""
    names = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
             "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}  # fmt: skip
    header: dict = {"__metadata__": metadata}
    offset = 0
    for key, value in state.items():
        size = value.size * value.dtype.itemsize
        header[key] = {"dtype": names[value.dtype.name], "shape": list(value.shape),
                       "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:  # in the staging folder, renamed into place once complete
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for key in list(state):
            value = state.pop(key)
            fh.write(
                np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
            )


def _check_space(folder: Path, root: Path, name: str, field: str) -> None:
    need = sum(p.stat().st_size for _, p in _walk(folder)) + (64 << 20)
    free = shutil.disk_usage(root).free
    if free < need:
        raise ModelUnavailableError(
            f"{field}={name!r}: converting {folder} needs about {need / 1e9:.1f} GB in {root} and "
            f"{free / 1e9:.1f} GB are free; free space there or set MGTOOLKIT_CACHE to a folder with room."
        )


def _clear_stale_staging(root: Path) -> None:
    """Remove staging folders a killed process left (older than six hours, so none in use)."""
    now = time.time()
    for path in root.glob(f"{_STAGING_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _drop_older_copies(root: Path, keep: Path, source: str) -> None:
    """Delete other copies converted from the same source folder (its files changed since)."""
    for manifest in root.glob(f"*/{MANIFEST}"):
        entry = manifest.parent
        if entry == keep:
            continue
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("source") == source:
                shutil.rmtree(entry, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _damaged(path: Path, exc: BaseException | str) -> ModelUnavailableError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    detail = " ".join(str(detail).split())[:160]
    return ModelUnavailableError(
        f"{path}: cannot read the weights ({detail}); the file is damaged or truncated (an interrupted "
        "download?): download the model again."
    )


# --- Sizes and fetching --------------------------------------------------------------------------


def disk_size(folder: Path) -> int:
    """Bytes the folder's files take (symlinks followed, each blob counted once)."""
    seen, total = set(), 0
    for _, path in _walk(folder):
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            total += real.stat().st_size
    return total


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` brought: ``field`` (model/captioner/writer), the name and the local folder."""

    field: str
    name: str
    folder: Path


_ALLOW = ["*.json", "*.txt", "*.model", "*.safetensors", "*.py", "*.tiktoken", "*.md"]


def _is_offline() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() not in ("", "0", "false", "no", "off")


def fetch_repo(
    repo_id: str,
    *,
    to: str | Path | None = None,
    field: str = "model",
    name: str | None = None,
    size: str = "",
) -> Path:
    """Download ``repo_id`` and return its local folder: PaddleNLP's model store first (paddle
    weights), then the Hugging Face hub or the mirror in ``HF_ENDPOINT`` (safetensors preferred,
    ``.bin`` only where a component has none). Both resume an interrupted download and show a
    progress bar. Into ``to``, or the libraries' caches (where :func:`locate` finds it later).

    Raises
    ------
    ModelUnavailableError
        One line naming the model, what each hub answered and the fix; offline
        (``HF_HUB_OFFLINE=1``) nothing is tried.
    """
    name = name or repo_id
    fix = (
        f"download it where there is internet (python -m mgtoolkit fetch {name} --to DIR; HF_ENDPOINT picks a "
        f"mirror such as https://hf-mirror.com) and pass {field}='/path/to/that/folder', or use {field}='tiny' "
        "to check the setup offline"
    )
    if _is_offline():
        raise ModelUnavailableError(
            f"{field}={name!r}: could not fetch {repo_id!r}{size}: offline (HF_HUB_OFFLINE=1) and not in the "
            f"Hugging Face cache ({hf_cache_dir()}) nor PaddleNLP's ({_ppdiffusers_cache()}); {fix}."
        )
    errors = []
    for hub, download in (("PaddleNLP", _download_paddlenlp), ("Hugging Face", _download_hf)):
        try:
            return download(repo_id, to)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, auth and hub errors become one line
            errors.append(f"{hub}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
    raise ModelUnavailableError(
        f"{field}={name!r}: could not fetch {repo_id!r}{size} from the model hubs ({'; '.join(errors)}); {fix}."
    )


_PADDLE_FILES = (
    "config.json",
    "scheduler_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "added_tokens.json",
    "generation_config.json",
)
_PADDLE_WEIGHTS = ("diffusion_paddle_model.safetensors", "model.safetensors", "model_state.pdparams")


def _download_paddlenlp(repo_id: str, to: str | Path | None) -> Path:
    """Fetch a paddle pipeline from PaddleNLP's store (ppdiffusers' ``bos_download``) file by file:
    ``model_index.json``, then each component's configuration, tokenizer files and the first weights
    file that exists (safetensors before ``.pdparams``)."""
    _import_ppdiffusers()
    from huggingface_hub.utils import EntryNotFoundError
    from ppdiffusers.utils.download_utils import bos_download

    cache = str(to) if to is not None else str(_ppdiffusers_cache() / "ppdiffusers")

    def get(filename: str, subfolder: str | None = None) -> bool:
        try:
            bos_download(repo_id, filename, subfolder=subfolder, cache_dir=cache, resume_download=True)
            return True
        except EntryNotFoundError:
            return False

    if not get("model_index.json"):
        raise FileNotFoundError(f"{repo_id} is not in the store")
    folder = Path(cache) / repo_id
    for part in _components(folder):
        for filename in _PADDLE_FILES:
            get(filename, part)
        any(get(filename, part) for filename in _PADDLE_WEIGHTS)
    return folder


def _download_hf(repo_id: str, to: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {"repo_id": repo_id}
    if to is not None:
        kwargs["local_dir"] = str(Path(to) / _slug(repo_id))
    folder = Path(snapshot_download(allow_patterns=_ALLOW, **kwargs))
    if _needs_bin(folder):  # an older repo that holds only .bin files
        folder = Path(snapshot_download(allow_patterns=[*_ALLOW, "*.bin"], **kwargs))
    return folder


def _needs_bin(folder: Path) -> bool:
    if (folder / "model_index.json").is_file():
        parts = [folder / p for p in _components(folder) if (folder / p).is_dir()]
        return any(weight_files(p) is None and (p / "config.json").is_file() for p in parts)
    return weight_files(folder) is None


def fetch(
    model: str | None = None, *, to: str | Path | None = None, also: Iterable = ()
) -> list[FetchResult]:
    """Download a model (and the stage models in ``also``) to carry to an offline machine.

    Parameters
    ----------
    model : str, optional
        Preset or hub id (``None``: the default model).
    to : str or Path, optional
        A folder to download into (one subfolder per model); ``None`` uses the Hugging Face cache,
        where ``model=<hub id>`` finds it later, also offline.
    also : iterable of (field, spec)
        More models: ``("captioner", resolve_captioner("blip2"))``, ``("writer", resolve_writer(...))``;
        ``python -m mgtoolkit fetch MODEL --with-chain`` passes the image chain's two.

    Returns
    -------
    list of FetchResult
        One per model, with the folder to pass as ``model=``/``captioner=``/``writer=``.

    Examples
    --------
    >>> from mgtoolkit.models.writers import resolve_writer
    >>> fetch("audioldm-s-full-v2", to="weights/", also=[("writer", resolve_writer("qwen2-0.5b"))])  # doctest: +SKIP
    """
    from .registry import resolve_model

    spec = resolve_model(model)
    if spec.is_tiny or spec.is_local:
        what = "built locally" if spec.is_tiny else "a local folder"
        raise ModelUnavailableError(
            f"model={spec.name!r}: nothing to fetch (it is {what}); pass a preset or hub id such as "
            "'audioldm-s-full-v2'."
        )
    wanted = [("model", spec.name, spec.source)]
    for field, stage in also:
        if stage.needs_model and not stage.is_tiny and not os.path.isdir(stage.source):
            wanted.append((field, stage.name, stage.source))
    return [
        FetchResult(field, name, fetch_repo(source, to=to, field=field, name=name))
        for field, name, source in wanted
    ]


def presence(source: str, *, marker: str = "model_index.json") -> tuple[Path | None, int]:
    """Where ``source`` is on this machine (see :func:`locate`) and the bytes it takes there,
    converted copies included; ``(None, 0)`` when it is not here."""
    folder = locate(source, marker=marker)
    if folder is None:
        return None, 0
    size = disk_size(folder)
    real = str(folder.resolve())
    for manifest in converted_root().glob(f"*/{MANIFEST}") if converted_root().is_dir() else []:
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("source") == real:
                size += disk_size(manifest.parent)
        except (OSError, ValueError):
            continue
    return folder, size
