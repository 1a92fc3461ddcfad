"""The ``clip`` captioner: zero-shot tags of an image from editable scene, mood and colour lists.

CLIP (``openai/clip-vit-base-patch32``, about 0.6 GB, about 0.6 GB of memory in float32) scores
the picture against every label of every category, as in CLIP's zero-shot classification: a
softmax over the category's labels of the cosine similarity of image and text, times the model's
learned scale. The best labels make a short sentence (``"a beach at sunset; calm, warm golden
colours, slow energy"``) that the chain's writer turns into a music prompt. It mirrors
:func:`mgtoolkit.describe_audio`'s CLAP tags: ``labels=`` replaces the lists, kept here as data
(:data:`DEFAULT_LABELS`). Users call it through :func:`mgtoolkit.tag_image` (tags with their
scores) or as the ``clip`` captioner of :func:`mgtoolkit.describe_image` and
:func:`mgtoolkit.image_to_music`.

The weights are read as data: the folder (``tiny`` built locally, a folder, the Hugging Face
cache's copy, or a download) goes through :func:`mgtoolkit.models.weights.paddle_folder` (a
transformers ``model.safetensors`` is converted once) and its safetensors are read tensor by
tensor into ppdiffusers' ``CLIPModel``. paddle and ppdiffusers load inside functions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelUnavailableError

__all__ = [
    "CLIP_SOURCE",
    "CLIP_SIZE_GB",
    "DEFAULT_LABELS",
    "LABEL_PROMPTS",
    "DEFAULT_PROMPT",
    "PHRASES",
    "TOP_K",
    "ImageTags",
    "ClipProcessor",
    "check_labels",
    "caption_from_tags",
    "load_clip_parts",
    "score_labels",
]

CLIP_SOURCE = "openai/clip-vit-base-patch32"
CLIP_SIZE_GB = 0.6
"""Download (``model.safetensors``) and float32 memory of ViT-B/32, both about 0.6 GB."""

DEFAULT_LABELS: Mapping[str, tuple[str, ...]] = {
    "scene": (
        "a crowded nightclub",
        "a concert stage",
        "a forest",
        "a meadow with flowers",
        "a beach by the sea",
        "a café or bar",
        "a city street",
        "a battlefield",
        "a church",
        "a snowy mountain",
        "an empty, lonely place",
        "a children's playground",
        "outer space",
        "a sports stadium",
        "a desert",
        "a quiet room at home",
    ),
    "mood": (
        "calm",
        "joyful",
        "melancholic",
        "mysterious",
        "romantic",
        "tense",
        "epic",
        "playful",
        "dreamy",
        "energetic",
    ),
    "colour": (
        "warm golden",
        "cool blue",
        "lush green",
        "fiery red",
        "soft pastel",
        "dark",
        "bright neon",
        "grey",
        "black and white",
    ),
    "time of day": ("dawn", "midday", "sunset", "night"),
    "energy": ("still", "slow", "lively", "frantic"),
}
"""Candidate tags per category; pass your own ``labels=`` (any categories) to edit them.

The scene labels echo the template writer's scenes (:func:`mgtoolkit.prompts.template_prompt`), so
even the writer that needs no model turns the tags into a fitting style.
"""

LABEL_PROMPTS: Mapping[str, str] = {
    "scene": "a photo of {}.",
    "mood": "a photo with a {} mood.",
    "colour": "a photo with {} colours.",
    "time of day": "a photo taken at {}.",
    "energy": "a photo of a {} scene.",
}
"""How a label of each category is put to CLIP's text tower; other categories use :data:`DEFAULT_PROMPT`."""
DEFAULT_PROMPT = "a photo of {}."

PHRASES: Mapping[str, str] = {"time of day": "at {}", "colour": "{} colours", "energy": "{} energy"}
"""How a category's best label is said in the caption; other categories (not ``scene`` or
``mood``, which are said as they are) are said as ``"<category>: <label>"``."""

TOP_K = 3
_MAX_LABELS = 200
_FIX = "give each category at least one text label, e.g. labels={'mood': ['calm', 'tense']}"


@dataclass(frozen=True)
class ImageTags:
    """What CLIP saw in a picture.

    Attributes
    ----------
    tags : mapping
        ``{category: ((label, probability), ...)}``, best first; probabilities are over all of the
        category's labels (they sum to 1 when ``top_k`` keeps them all).
    caption : str
        The best tags as one line, e.g. ``"a beach at sunset; calm, warm golden colours, slow energy"``.
    model : str
        The captioner that tagged it (``"clip"``, ``"tiny-clip"`` or a folder).
    """

    tags: Mapping[str, tuple[tuple[str, float], ...]]
    caption: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "caption": self.caption,
            "model": self.model,
            "tags": {k: [[label, round(p, 4)] for label, p in v] for k, v in self.tags.items()},
        }


@dataclass(frozen=True)
class ClipProcessor:
    """CLIP's tokenizer and image processor, kept together as a captioner's ``processor``."""

    tokenizer: Any = field(repr=False)
    image_processor: Any = field(repr=False)


# --------------------------------------------------------------------------------------------------
# Labels and the caption


def check_labels(labels: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """``labels`` as ``{category: (label, ...)}`` (``None``: :data:`DEFAULT_LABELS`), or one line naming ``labels``.

    Examples
    --------
    >>> check_labels({"mood": ["calm", " calm ", "tense"]})
    {'mood': ('calm', 'tense')}
    >>> check_labels({"mood": []})
    Traceback (most recent call last):
    ...
    mgtoolkit.errors.InvalidInputError: labels={'mood': []}: category 'mood' has no labels; give each category at least one text label, e.g. labels={'mood': ['calm', 'tense']}.
    """
    if labels is None:
        return {k: tuple(v) for k, v in DEFAULT_LABELS.items()}
    if not isinstance(labels, Mapping) or not labels:
        raise InvalidInputError("labels", labels, "is not a non-empty mapping of category to labels", _FIX)
    checked: dict[str, tuple[str, ...]] = {}
    for category, values in labels.items():
        if not isinstance(category, str) or not category.strip():
            raise InvalidInputError("labels", labels, f"has a category {category!r} that is not text", _FIX)
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise InvalidInputError("labels", labels, f"category {category!r} is not a list of labels", _FIX)
        if not all(isinstance(v, str) for v in values):
            raise InvalidInputError(
                "labels", labels, f"category {category!r} holds a label that is not text", _FIX
            )
        kept = tuple(dict.fromkeys(" ".join(v.split()) for v in values if v.strip()))
        if not kept:
            raise InvalidInputError("labels", labels, f"category {category!r} has no labels", _FIX)
        checked[" ".join(category.split())] = kept
    if sum(len(v) for v in checked.values()) > _MAX_LABELS:
        raise InvalidInputError(
            "labels", "too many labels", f"holds more than {_MAX_LABELS}", "pass fewer labels"
        )
    return checked


def caption_from_tags(tags: Mapping[str, Sequence[tuple[str, float]]]) -> str:
    """One line from each category's best label: the scene and its time first, then the rest.

    Examples
    --------
    >>> caption_from_tags({"scene": [("a beach", 0.7)], "mood": [("calm", 0.5)],
    ...                    "time of day": [("sunset", 0.6)], "colour": [("warm golden", 0.4)],
    ...                    "energy": [("slow", 0.5)]})
    'a beach at sunset; calm, warm golden colours, slow energy'
    >>> caption_from_tags({"weather": [("rain", 0.9)]})
    'weather: rain'
    """
    best = {category: ranked[0][0] for category, ranked in tags.items() if ranked}
    head = " ".join(
        PHRASES.get(k, "{}").format(best[k])
        for k in ("scene", "time of day")
        if k in best and "scene" in best
    )
    rest = [
        best[k]
        if k in ("scene", "mood")
        else PHRASES[k].format(best[k])
        if k in PHRASES
        else f"{k}: {best[k]}"
        for k in best
        if not (head and k in ("scene", "time of day"))
    ]
    return "; ".join(part for part in (head, ", ".join(rest)) if part)


# --------------------------------------------------------------------------------------------------
# Loading


def load_clip_parts(source: str, *, name: str, dtype: str = "float32") -> tuple[Any, ClipProcessor]:
    """ppdiffusers' ``CLIPModel`` (eval mode, in ``dtype``) and a :class:`ClipProcessor` for ``source``.

    ``source`` is ``"tiny-clip"`` (built locally), a folder, or a hub id: its Hugging Face cache
    copy, else a download (``model.safetensors``, about :data:`CLIP_SIZE_GB` GB). Torch weights are
    converted once by :func:`mgtoolkit.models.weights.paddle_folder`.
    """
    from ppdiffusers.transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from . import weights

    found = Path(_folder(source, name))
    missing = [f for f in _PROCESSOR_FILES if not (found / f).is_file()]
    if missing:  # checked before converting: transformers 5 saves tokenizer.json alone
        raise ModelUnavailableError(
            f"captioner={name!r}: {found} lacks {', '.join(missing)} (the tokenizer and image processor "
            f"files {CLIP_SOURCE} publishes); download the model again or copy them beside its config.json."
        )
    folder = weights.paddle_folder(found, name=name, field="captioner", model_class=CLIPModel)
    model = _read_model(folder, CLIPModel)
    if dtype != "float32":
        model.to(dtype=dtype)
    model.eval()
    processor = ClipProcessor(
        CLIPTokenizer.from_pretrained(str(folder)), CLIPImageProcessor.from_pretrained(str(folder))
    )
    return model, processor


_PROCESSOR_FILES = ("vocab.json", "merges.txt", "preprocessor_config.json")


def _folder(source: str, name: str):
    from . import weights

    if source == "tiny-clip":
        from .tiny.clip import tiny_clip_dir

        return tiny_clip_dir()
    found = weights.locate(source, marker="config.json")
    if found is not None:
        return found
    if os.path.isabs(source) or source.startswith("."):
        raise ModelUnavailableError(
            f"captioner={name!r}: {source} is not a folder; pass the CLIP model's folder."
        )
    return weights.fetch_repo(source, field="captioner", name=name, size=f" (about {CLIP_SIZE_GB:g} GB)")


def _read_model(folder, model_class):
    """The model built from ``folder``'s config, its weights read tensor by tensor (safetensors only).

    paddlenlp's own safetensors reader fails on CLIP's 0-d ``logit_scale``. The layers are made
    without memory (``LazyGuard``) and each filled from one tensor read with plain file reads (no
    memory map, whose touched pages would count as the process's memory): the peak stays near one
    copy of the weights (about 0.6 GB for ViT-B/32).
    """
    from paddlenlp.transformers.model_utils import no_init_weights

    from ..runtime import import_paddle
    from . import weights

    paddle = import_paddle()
    found = weights.weight_files(folder)
    if found is None or found.container != "safetensors":
        raise ModelUnavailableError(
            f"captioner: {folder} holds no safetensors weights; download the model again."
        )
    with no_init_weights(_enable=True), paddle.LazyGuard():
        model = model_class(model_class.config_class.from_pretrained(str(folder)))
    params = model.state_dict()
    seen = set()
    for path in found.paths:
        for key, value in _tensors(path):
            if key in params:
                _assign(params[key], value, key, folder)
                seen.add(key)
    missing = [k for k in params if k not in seen and "position_ids" not in k]
    if missing:
        raise ModelUnavailableError(
            f"captioner: {folder} lacks {len(missing)} of CLIP's {len(params)} tensors (e.g. {missing[:2]}): "
            "not a CLIP model, or a partial download; download it again."
        )
    return model


def _tensors(path):
    """``(name, array)`` for each tensor of a safetensors file, read one at a time with plain file
    reads (:mod:`mgtoolkit.io.safetensors_io`: checked header, no memory map, bfloat16 widened)."""
    from ..io.safetensors_io import SafetensorsError, read_header, read_tensor

    header = read_header(path)
    try:
        with open(path, "rb") as fh:
            for name in header.tensors:
                yield name, read_tensor(fh, header, name)
    except (OSError, ValueError, MemoryError) as exc:
        raise SafetensorsError(path, f"{type(exc).__name__}: {exc}") from None


def _assign(param, value: np.ndarray, key: str, folder) -> None:
    shape = tuple(param.shape)
    if value.size != int(np.prod(shape, dtype=np.int64)):
        raise ModelUnavailableError(
            f"captioner: {folder}: tensor {key!r} has shape {value.shape}, CLIP's config wants {shape}; "
            "the folder's config.json does not match its weights."
        )
    if not param._is_initialized():  # made under LazyGuard: allocate it now, then fill it
        param.initialize()
    param.set_value(value.reshape(shape).astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Tagging


def score_labels(
    model: Any, processor: ClipProcessor, image: Any, labels: Mapping[str, Sequence[str]]
) -> dict[str, tuple[tuple[str, float], ...]]:
    """Every label of every category with its probability, best first (ties keep the given order).

    ``image`` is an RGB PIL image (see :func:`mgtoolkit.images.load_image`); ``labels`` as checked
    by :func:`check_labels`.
    """
    from ..runtime import import_paddle

    paddle = import_paddle()
    texts = [
        LABEL_PROMPTS.get(category, DEFAULT_PROMPT).format(label)
        for category, names in labels.items()
        for label in names
    ]
    dtype = model.visual_projection.weight.dtype
    pixels = processor.image_processor(images=_big_enough(image), return_tensors="np")["pixel_values"]
    tokens = processor.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pd")
    with paddle.no_grad():
        picture = model.get_image_features(pixel_values=paddle.to_tensor(np.asarray(pixels)).cast(dtype))
        words = model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask")
        )
        scale = float(model.logit_scale.exp().cast("float32").numpy().reshape(-1)[0])
    cosine = _normalise(words.cast("float32").numpy()) @ _normalise(picture.cast("float32").numpy())[0]
    out, start = {}, 0
    for category, names in labels.items():
        logits = scale * cosine[start : start + len(names)].astype(np.float64)
        start += len(names)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        out[category] = tuple((names[i], float(probs[i])) for i in order)
    return out


def _big_enough(image: Any, side: int = 16) -> Any:
    """``image`` with its short side at least ``side`` pixels: the processor takes an image a few
    pixels high for a channels-first array (a 1x1 picture fails there). It resizes to 224 anyway."""
    width, height = image.size
    if min(width, height) >= side:
        return image
    scale = side / min(width, height)
    return image.resize((max(side, round(width * scale)), max(side, round(height * scale))), 3)  # bicubic


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
