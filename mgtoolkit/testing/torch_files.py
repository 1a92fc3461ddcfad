"""Write PyTorch and Paddle weight pickles without torch or paddle, clean or crafted, for tests.

:func:`write_torch_bin` writes the zip layout ``torch.save`` uses since PyTorch 1.6 (a protocol-2
``data.pkl`` whose tensors point at storage records through persistent ids, exactly as torch writes
them), :func:`write_torch_legacy` the older non-zip layout, :func:`write_pdparams` what
``paddle.save`` writes. :func:`write_malicious_pickle` writes a file of either kind whose unpickling
runs code that creates a marker file: what the restricted readers of
:mod:`mgtoolkit.models.safe_pickle` must refuse.
"""

from __future__ import annotations

import io
import pickle
import shlex
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "TensorView",
    "write_torch_bin",
    "write_torch_legacy",
    "write_pdparams",
    "write_malicious_pickle",
    "marker_code",
    "pickled_copy",
    "hf_cache_repo",
]

_STORAGE_NAMES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage",
}


@dataclass(frozen=True)
class TensorView:
    """A tensor viewing ``base`` (1-D; every view of the same array shares one storage record).

    ``offset`` and ``stride`` count elements, as in torch.
    """

    base: np.ndarray
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def numpy(self) -> np.ndarray:
        """The values torch would give for this view (a C-contiguous copy)."""
        view = np.lib.stride_tricks.as_strided(
            self.base[self.offset :],
            shape=self.shape,
            strides=tuple(s * self.base.itemsize for s in self.stride),
        )
        return np.array(view, order="C")


# --- A tiny protocol-2 pickle writer (torch's data.pkl names torch globals we cannot import) -----


class _Raw(bytes):
    """Opcodes spliced in as they are (a value pickled by the standard pickler)."""


class _Global(NamedTuple):
    module: str
    name: str


class _Call(NamedTuple):
    func: Any
    args: tuple


class _PersistentId(NamedTuple):
    pid: tuple


def _emit(obj: Any, out: bytearray) -> None:
    """Append the protocol-2 opcodes that build ``obj``."""
    if obj is None or isinstance(obj, bool):
        out += {None: b"N", True: b"\x88", False: b"\x89"}[obj]
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif -(2**31) <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    elif isinstance(obj, float):
        out += b"G" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += b"X" + struct.pack("<I", len(raw)) + raw
    elif isinstance(obj, _Raw):
        out += obj
    elif isinstance(obj, _Global):
        out += f"c{obj.module}\n{obj.name}\n".encode()
    elif isinstance(obj, _Call):
        _emit(obj.func, out)
        _emit(tuple(obj.args), out)
        out += b"R"
    elif isinstance(obj, _PersistentId):
        _emit(obj.pid, out)
        out += b"Q"
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(item, out)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]("
        for item in obj:
            _emit(item, out)
        out += b"e"
    elif isinstance(obj, dict):
        out += b"}("
        for key, value in obj.items():
            _emit(key, out)
            _emit(value, out)
        out += b"u"
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def _dumps2(obj: Any) -> bytes:
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    return bytes(out + b".")


# --- PyTorch ------------------------------------------------------------------------------------


def _storage_record(array: np.ndarray, bfloat16: bool) -> tuple[str, bytes]:
    """The storage class name and little-endian bytes of a 1-D array."""
    if bfloat16:
        bits = np.ascontiguousarray(array, dtype="<f4").view("<u4") >> 16  # truncation
        return "BFloat16Storage", bits.astype("<u2").tobytes()
    name = _STORAGE_NAMES[np.dtype(array.dtype).name]
    return name, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _tensor_graph(
    state: dict[str, np.ndarray | TensorView],
    bfloat16: tuple[str, ...] = (),
    parameters: tuple[str, ...] = (),
    legacy: bool = False,
) -> tuple[dict, list[tuple[str, bytes, int]]]:
    """The object ``torch.save`` would pickle, and the storages (name, bytes, numel) by key order."""
    keys: dict[int, str] = {}
    storages: list[tuple[str, bytes, int]] = []
    graph: dict = {}
    alive: list[np.ndarray] = []
    for name, value in state.items():
        view = value if isinstance(value, TensorView) else _as_view(np.asarray(value))
        if id(view.base) not in keys:
            alive.append(view.base)  # keeps ids unique while the loop runs
            keys[id(view.base)] = str(len(storages))
            storages.append((*_storage_record(view.base, name in bfloat16), view.base.size))
        key = keys[id(view.base)]
        storage_name, _, numel = storages[int(key)]
        pid = ("storage", _Global("torch", storage_name), key, "cpu", numel)
        if legacy:
            pid = (*pid, None)
        args = (_PersistentId(pid), view.offset, tuple(view.shape), tuple(view.stride), False)
        hooks = _Call(_Global("collections", "OrderedDict"), ())
        graph[name] = _Call(_Global("torch._utils", "_rebuild_tensor_v2"), (*args, hooks))
        if name in parameters:  # an nn.Parameter, as a module's state_dict(keep_vars=True) holds
            graph[name] = _Call(_Global("torch._utils", "_rebuild_parameter"), (graph[name], True, hooks))
    return graph, storages


def _as_view(array: np.ndarray) -> TensorView:
    """A C-contiguous array as a view of its own storage (0-d arrays included)."""
    array = np.array(array, order="C", copy=True)
    stride = tuple(s // max(array.itemsize, 1) for s in array.strides)
    return TensorView(base=array.reshape(-1), offset=0, shape=tuple(array.shape), stride=stride)


def _dumps_state(graph: dict, extra: Any = None) -> bytes:
    """The pickle of ``OrderedDict(graph)`` (plus ``extra`` items appended, for crafted files)."""
    out = bytearray(b"\x80\x02")
    _emit(_Call(_Global("collections", "OrderedDict"), ([*graph.items(), *(extra or {}).items()],)), out)
    return bytes(out + b".")


def write_torch_bin(
    path: str | Path,
    state: dict[str, np.ndarray | TensorView],
    *,
    bfloat16: tuple[str, ...] = (),
    parameters: tuple[str, ...] = (),
    extra: dict | None = None,
) -> None:
    """Write ``state`` as ``torch.save(state_dict, path)`` would (zip layout, PyTorch >= 1.6).

    Parameters
    ----------
    path : str or Path
        The file to write; the archive's top folder is named after its stem, as torch does.
    state : dict
        Name to array (its own storage) or :class:`TensorView` (views of one base share a storage).
    bfloat16 : tuple of str
        Names of float32 arrays to store as bfloat16 (truncated to the top 16 bits).
    parameters : tuple of str
        Names pickled as ``torch.nn.Parameter`` (through ``torch._utils._rebuild_parameter``).
    extra : dict, optional
        More ``name: object`` items pickled after the tensors (for crafted files; see
        :func:`write_malicious_pickle`).
    """
    path = Path(path)
    graph, storages = _tensor_graph(state, bfloat16, parameters)
    prefix = path.stem or "archive"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", _dumps_state(graph, extra))  # first, as torch writes it
        archive.writestr(f"{prefix}/byteorder", "little")
        for key, (_, raw, _) in enumerate(storages):
            archive.writestr(f"{prefix}/data/{key}", raw)
        archive.writestr(f"{prefix}/version", "3\n")


def write_torch_legacy(path: str | Path, state: dict[str, np.ndarray | TensorView]) -> None:
    """Write ``state`` in the non-zip layout of ``torch.save`` before PyTorch 1.6."""
    graph, storages = _tensor_graph(state, legacy=True)
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    parts = [_dumps2(0x1950A86A20F9469CFC6C), _dumps2(1001), _dumps2(sys_info), _dumps_state(graph)]
    keys = sorted(str(k) for k in range(len(storages)))  # torch sorts the keys as strings
    parts.append(_dumps2(keys))
    for key in keys:
        _, raw, numel = storages[int(key)]
        parts.append(struct.pack("<q", numel) + raw)
    Path(path).write_bytes(b"".join(parts))


# --- Paddle -------------------------------------------------------------------------------------


class _PaddleTensor:
    """Pickles as ``paddle.save`` pickles a Tensor outside a state dict: ``tuple((name, array))``."""

    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array

    def __reduce__(self) -> tuple:
        return (tuple, ((self.name, self.array),))


class _DenseTensor:
    """Pickles as ``paddle.save`` pickles a DenseTensor: ``eval('data', {'data': array})``."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __reduce__(self) -> tuple:
        return (eval, ("data", {"data": self.array}))


def write_pdparams(
    path: str | Path,
    state: dict[str, np.ndarray],
    *,
    style: Literal["state_dict", "tensors", "dense_tensors"] = "state_dict",
    protocol: int = 4,
    extra: dict | None = None,
) -> None:
    """Write ``state`` as ``paddle.save`` would.

    Parameters
    ----------
    style : {"state_dict", "tensors", "dense_tensors"}
        ``paddle.save(layer.state_dict())`` (arrays and a name table), a dict of Tensors pickled
        one by one (``(name, array)`` tuples), or of DenseTensors (``eval('data', ...)``).
    protocol : int
        The pickle protocol (paddle's default is 4).
    extra : dict, optional
        More items pickled as they are (for crafted files).
    """
    if style == "state_dict":
        saved: dict = {**state, "StructuredToParameterName@@": {k: f"param_{i}" for i, k in enumerate(state)}}
    elif style == "tensors":
        saved = {k: _PaddleTensor(f"param_{i}", v) for i, (k, v) in enumerate(state.items())}
    else:
        saved = {k: _DenseTensor(v) for k, v in state.items()}
    Path(path).write_bytes(pickle.dumps({**saved, **(extra or {})}, protocol=protocol))


# --- Crafted files --------------------------------------------------------------------------------


def marker_code(marker: str | Path) -> str:
    """Python source that creates ``marker`` (what a crafted pickle runs)."""
    return f"import pathlib; pathlib.Path({str(marker)!r}).touch()"


class _Payload:
    def __init__(self, how: str, marker: Path):
        self.how, self.marker = how, marker

    def __reduce__(self) -> tuple:
        if self.how == "system":
            import os

            return (os.system, (f"touch {shlex.quote(str(self.marker))}",))
        if self.how == "eval":
            return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))
        return (exec, (marker_code(self.marker),))


def write_malicious_pickle(
    path: str | Path,
    marker: str | Path,
    kind: Literal["bin", "pdparams"] = "bin",
    *,
    how: Literal["exec", "system", "eval"] = "exec",
    call: tuple[str, str] | None = None,
    state: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a weights file whose unpickling creates ``marker`` (and would run any other code).

    The file is otherwise well-formed: the tensors of ``state`` (default: one ``weight``), then one
    entry, ``config``, whose ``__reduce__`` calls
    ``exec`` (``how="exec"``), ``os.system("touch ...")`` or ``eval`` on code creating ``marker``.
    ``call=(module, name)`` instead makes that entry a call, without arguments, of ``module.name``
    (for checking what the readers refuse; ``marker`` is then unused).
    """
    marker = Path(marker)
    state = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3)} if state is None else state
    if call is not None:
        raw = _Raw(_dumps2(_Call(_Global(*call), ()))[2:-1])
        if kind == "pdparams":
            data = pickle.dumps(dict(state), protocol=2)  # ends with the dict on the stack, then STOP
            Path(path).write_bytes(data[:-1] + _dumps2("config")[2:-1] + raw + b"s.")
        else:
            write_torch_bin(path, state, extra={"config": raw})
        return
    if kind == "pdparams":
        write_pdparams(path, state, extra={"config": _Payload(how, marker)})
        return
    buffer = io.BytesIO()
    pickle.Pickler(buffer, protocol=2).dump(_Payload(how, marker))
    write_torch_bin(path, state, extra={"config": _Raw(buffer.getvalue()[2:-1])})


# --- Whole model folders ------------------------------------------------------------------------

_PICKLE_NAMES = {
    "pdparams": {
        "diffusion_paddle_model": "model_state.pdparams",  # ppdiffusers names its pickles so
        "model": "model_state.pdparams",
    },
    "bin": {"diffusion_paddle_model": "diffusion_pytorch_model.bin", "model": "pytorch_model.bin"},
}


def pickled_copy(
    source: str | Path,
    target: str | Path,
    *,
    kind: Literal["pdparams", "bin"] = "pdparams",
    marker: str | Path | None = None,
) -> Path:
    """Copy a saved model folder, each ``*.safetensors`` replaced by a pickle of the same tensors.

    ``kind="pdparams"`` gives the paddle-format folder ``save_pretrained`` wrote before safetensors
    (``model_state.pdparams`` in every component): a clean copy loads to the same
    weights. ``kind="bin"`` gives the file names of a diffusers/transformers torch folder
    (``diffusion_pytorch_model.bin``, ``pytorch_model.bin``) but keeps paddle's tensor layout, so it
    must be crafted (``marker`` given): loading it should stop before any tensor is used. With
    ``marker``, every pickle also holds an entry whose unpickling creates ``marker``.

    Returns ``target``.
    """
    from safetensors.numpy import load_file

    if kind == "bin" and marker is None:
        raise ValueError("a clean kind='bin' copy would hold paddle-layout tensors; give a marker")
    source, target = Path(source), Path(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in sorted(source.rglob("*.safetensors")):
        name = _PICKLE_NAMES[kind].get(
            weights.stem, weights.stem + (".pdparams" if kind == "pdparams" else ".bin")
        )
        out = target / weights.relative_to(source).parent / name
        state = load_file(str(weights))
        if marker is None:
            write_pdparams(out, state)
        else:
            write_malicious_pickle(out, marker, kind, state=state)
    return target


def hf_cache_repo(hub_cache: str | Path, repo_id: str, folder: str | Path) -> Path:
    """Lay ``folder`` out in the Hugging Face hub cache layout as ``repo_id``; return the snapshot.

    As ``huggingface_hub`` does it: ``models--owner--name/blobs/<sha256>`` holds the files,
    ``snapshots/<commit>/<path>`` links to them (copies where links cannot be made) and
    ``refs/main`` names the commit. To have ``from_pretrained(repo_id)`` find it offline, make
    ``hub_cache`` ``<home>/hub`` and set ``HF_HOME=<home>`` and ``HF_HUB_OFFLINE=1`` before
    ppdiffusers is imported (ppdiffusers 0.29 reads the cache folder once, at import, and does not
    look at ``HF_HUB_CACHE``).
    """
    import hashlib
    import os

    folder, repo = Path(folder), Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.relative_to(folder).as_posix().encode() for p in files)).hexdigest()
    snapshot = repo / "snapshots" / commit
    for file in files:
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:
            shutil.copyfile(blob, link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
