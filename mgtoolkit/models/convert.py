"""Torch names and layouts to paddle's, with ppdiffusers'/paddlenlp's own rules.

paddlenlp's name mappings (``_get_name_mappings``) where the class has them, else ppdiffusers'
``convert_pytorch_state_dict_to_paddle`` (transpose each ``nn.Linear`` weight, rename batch-norm
statistics); configurations spelled as paddlenlp reads them. The classes come from
:func:`mgtoolkit.models.model_files.library_class` only. paddle, ppdiffusers and paddlenlp are
imported inside functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelUnavailableError
from .formats import _components

__all__ = ["component_class"]


def _import_ppdiffusers():
    """ppdiffusers, imported quietly (its import warns about distutils)."""
    from .model_files import import_ppdiffusers_quietly

    return import_ppdiffusers_quietly()


def component_class(library: str, class_name: str):
    """The paddle class for a ``model_index.json`` entry (``["diffusers", "UNet2DConditionModel"]``,
    ``["transformers", "ClapTextModelWithProjection"]``, ``["audioldm2", "AudioLDM2ProjectionModel"]``),
    taken from that library only (see :func:`mgtoolkit.models.model_files.library_class`), or ``None``."""
    from .model_files import library_class

    return library_class(library, class_name)


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


def _part_classes(folder: Path, model_class) -> dict[str, tuple[Any, str]]:
    """``component -> (paddle class, class name)``; ``"."`` for a one-model folder."""
    if (folder / "model_index.json").is_file():
        return {p: (component_class(*lib_cls), lib_cls[1]) for p, lib_cls in _components(folder).items()}
    return {".": (model_class or _architecture_class(folder), "the model")}


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
