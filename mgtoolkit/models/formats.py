"""What a model folder holds: each component's weight files and their format, read from names and
safetensors headers only (no tensor is loaded, no pickle opened)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelUnavailableError

__all__ = ["WeightFile", "weight_files", "folder_format"]

# Weight files by how they are read and what they hold, in the order they are preferred.
_TORCH_SAFE = ("diffusion_pytorch_model.safetensors", "model.safetensors")


_PADDLE_SAFE = ("diffusion_paddle_model.safetensors", "model.safetensors")


_TORCH_PICKLE = ("diffusion_pytorch_model.bin", "pytorch_model.bin")


_PADDLE_PICKLE = ("model_state.pdparams", "diffusion_paddle_model.pdparams")


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pdparams", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx")


@dataclass(frozen=True)
class WeightFile:
    """The weights of one component: ``framework`` ``"torch"`` or ``"paddle"``; ``container``
    ``"safetensors"`` or ``"pickle"``; ``paths``: one file or the shards an index lists."""

    framework: str
    container: str
    paths: tuple[Path, ...]
    index: Path | None = None


def _safetensors_format(path: Path) -> str | None:
    """The ``format`` in a safetensors header (``pt``, ``np``, ``pd``) or ``None``, read without
    loading tensors; raises :class:`ModelUnavailableError` when the header is damaged."""
    from ..io.safetensors_io import read_header

    return read_header(path).metadata.get("format")


def _index_shards(index: Path) -> tuple[Path, ...]:
    """The shards an index lists: plain file names beside it (never ``..``, absolute or nested)."""
    from .model_files import read_config, shard_names

    try:  # a regular file of a configuration's size, as every JSON of a model
        weight_map = read_config(index)["weight_map"]
    except (ModelUnavailableError, KeyError, TypeError) as exc:
        raise _damaged(index, exc) from None
    return tuple(index.parent / name for name in shard_names(index, weight_map))


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
            return WeightFile(framework, "safetensors", shards, index)
    for names, framework in ((_TORCH_PICKLE, "torch"), (_PADDLE_PICKLE, "paddle")):
        for name in names:
            if (folder / name).is_file():
                return WeightFile(framework, "pickle", (folder / name,))
            if (folder / f"{name}.index.json").is_file():
                return WeightFile(framework, "pickle", _index_shards(folder / f"{name}.index.json"))
    return None


def _components(folder: Path) -> dict[str, tuple[str, str]]:
    """``name -> (library, class)`` of a pipeline folder's ``model_index.json``."""
    from .model_files import listed_components, read_model_index

    return listed_components(read_model_index(folder))


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


def _damaged(path: Path, exc: BaseException | str) -> ModelUnavailableError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    detail = " ".join(str(detail).split())[:160]
    return ModelUnavailableError(
        f"{path}: cannot read the weights ({detail}); the file is damaged or truncated (an interrupted "
        "download?): download the model again."
    )
