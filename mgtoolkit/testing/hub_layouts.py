"""Write a saved paddle pipeline (or one model) in the layouts the hubs publish, for tests.

The inverse of :mod:`mgtoolkit.models.weights`' conversion: each component's weights in torch
layout (``nn.Linear`` weights transposed, batch-norm statistics under torch's names) and torch's file
names, as diffusers and transformers save them:

- :func:`write_diffusers_folder`: ``diffusion_pytorch_model.safetensors`` / ``model.safetensors``
  with ``{"format": "pt"}`` metadata (written with ``safetensors.numpy``), or with ``bin=True``
  only ``.bin`` pickles as ``torch.save`` writes them (older repos such as ``cvssp/audioldm``);
  ``model_index.json`` names the libraries ``diffusers``/``transformers`` as on the hub.
- :func:`write_hf_cache`: that folder as the Hugging Face cache holds it
  (``models--owner--name/blobs``, ``snapshots/<rev>`` of symlinks, ``refs/main``).

No torch, no download: the tests use these to load every published form through ``model=``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["write_diffusers_folder", "write_transformers_folder", "write_hf_cache", "to_torch_layout"]

_LIBRARIES = {"ppdiffusers": "diffusers", "ppdiffusers.transformers": "transformers", "paddlenlp.transformers": "transformers"}  # fmt: skip


def to_torch_layout(module, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` (paddle names and layouts) in torch's: paddlenlp's name mappings run backwards
    where the class has them, else transpose ``nn.Linear`` weights and rename batch-norm statistics
    (``_mean``/``_variance`` to ``running_mean``/``running_var``)."""
    import paddle

    mappings = None if _is_diffusers_model(type(module)) else _name_mappings(module)
    if mappings:
        out = dict(state)
        for mapping in mappings:
            if mapping.target_name in out:
                value = out.pop(mapping.target_name)
                out[mapping.source_name] = np.ascontiguousarray(
                    value.T if mapping.action == "transpose" else value
                )
        return out

    linear = {
        f"{name}.weight"
        for name, sub in module.named_sublayers(include_self=True)
        if isinstance(sub, paddle.nn.Linear)
    }
    linear |= {key.removeprefix(".") for key in linear}
    out = {}
    for key, value in state.items():
        if key in linear and value.ndim == 2:
            value = value.T
        key = key.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        out[key] = np.ascontiguousarray(value)
    return out


# A few lines copied from mgtoolkit.models.weights (the testing layer sits below models).


def _is_diffusers_model(cls) -> bool:
    from ppdiffusers import ModelMixin

    return isinstance(cls, type) and issubclass(cls, ModelMixin)


def _name_mappings(module) -> list | None:
    try:
        return list(type(module)._get_name_mappings(module.config))
    except (NotImplementedError, AttributeError, KeyError, TypeError):
        return None


def _components(folder: Path) -> dict[str, tuple[str, str]]:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return {
        k: (v[0], v[1]) for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]
    }


def _component_class(library: str, class_name: str):
    import importlib

    import ppdiffusers
    from ppdiffusers import transformers

    for module in (ppdiffusers, transformers):
        if hasattr(module, class_name):
            return getattr(module, class_name)
    return getattr(importlib.import_module(f"ppdiffusers.pipelines.{library}"), class_name)


def _skeleton(cls, folder: Path):
    """``cls`` built from ``folder``'s configuration (weights not initialised: they are replaced)."""
    if _is_diffusers_model(cls):
        return cls.from_config(cls.load_config(str(folder)))
    from paddlenlp.transformers.model_utils import no_init_weights

    with no_init_weights(_enable=True):
        return cls(cls.config_class.from_pretrained(str(folder)))


def _paddle_state(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    for name in ("diffusion_paddle_model.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            return load_file(str(folder / name))
    raise FileNotFoundError(f"no paddle safetensors in {folder}")


def _write_component(src: Path, dst: Path, cls, *, bin: bool) -> None:
    skeleton = _skeleton(cls, src)
    state = to_torch_layout(skeleton, _paddle_state(src))
    stem = "diffusion_pytorch_model" if _is_diffusers_model(cls) else ("pytorch_model" if bin else "model")
    if bin:
        from .torch_files import write_torch_bin

        write_torch_bin(dst / f"{stem}.bin", state)
    else:
        from safetensors.numpy import save_file

        save_file(state, str(dst / f"{stem}.safetensors"), metadata={"format": "pt"})


def write_diffusers_folder(src: str | Path, dst: str | Path, *, bin: bool = False) -> Path:
    """Write the paddle pipeline saved in ``src`` into ``dst`` as the hub ships it (torch layout).

    Parameters
    ----------
    src : str or Path
        A pipeline folder written by ppdiffusers' ``save_pretrained`` (e.g. ``tiny_dir("tiny")``).
    dst : str or Path
        The folder to create.
    bin : bool
        Write only ``.bin`` pickles (no safetensors), as older hub repos hold.

    Returns
    -------
    Path
        ``dst``.
    """
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.pdparams"))
    index = json.loads((src / "model_index.json").read_text(encoding="utf-8"))
    for part, (library, class_name) in _components(src).items():
        if (src / part).is_dir() and any(
            p.suffix in (".safetensors", ".pdparams") for p in (src / part).iterdir()
        ):
            _write_component(src / part, dst / part, _component_class(library, class_name), bin=bin)
        index[part] = [_LIBRARIES.get(library, library), class_name]
    index.pop("_ppdiffusers_version", None)
    index["_diffusers_version"] = "0.29.0"
    (dst / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return dst


def write_transformers_folder(src: str | Path, dst: str | Path, model_class, *, bin: bool = False) -> Path:
    """Write the paddlenlp model saved in ``src`` into ``dst`` as transformers saves it: torch layout
    in ``model.safetensors`` (``pt`` metadata) or, with ``bin=True``, ``pytorch_model.bin``; the
    configuration and tokenizer files copied. Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.pdparams"))
    _write_component(src, dst, model_class, bin=bin)
    return dst


def write_hf_cache(folder: str | Path, cache: str | Path, repo_id: str, revision: str | None = None) -> Path:
    """Lay ``folder`` out as the Hugging Face cache holds ``repo_id``; return the snapshot folder.

    Files become content-named blobs; ``snapshots/<revision>`` holds relative symlinks to them and
    ``refs/main`` names the revision, as ``huggingface_hub.snapshot_download`` leaves it.
    """
    folder, cache = Path(folder), Path(cache)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = revision or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return snapshot
