"""CLAP at work: ranking candidates by how well they fit the prompt, and zero-shot tags.

The model code is :mod:`mgtoolkit.models.clap`; here are the uses: :func:`rank_clips` (best first,
each with ``clip.score``), :func:`zero_shot_tags` (genre, mood and instruments from editable
label lists) and :func:`check_labels`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..models import clap as clap_model
from ..types import Clip

__all__ = [
    "DEFAULT_LABELS",
    "TAG_TEMPLATE",
    "TOP_K",
    "check_labels",
    "zero_shot_tags",
    "rank_clips",
    "score_clips",
]

DEFAULT_LABELS: Mapping[str, tuple[str, ...]] = {
    "genre": (
        "ambient",
        "classical",
        "jazz",
        "rock",
        "pop",
        "hip hop",
        "electronic dance music",
        "techno",
        "folk",
        "blues",
        "funk",
        "metal",
        "reggae",
        "lo-fi",
        "cinematic soundtrack",
    ),
    "mood": ("calm", "happy", "sad", "energetic", "dark", "romantic", "tense", "dreamy", "epic", "playful"),
    "instruments": (
        "piano",
        "acoustic guitar",
        "electric guitar",
        "bass",
        "drums",
        "strings",
        "synthesizer",
        "brass",
        "flute",
        "saxophone",
        "violin",
        "vocals",
        "organ",
        "percussion",
    ),
}
"""Candidate tags per category; pass your own ``labels=`` to :func:`mgtoolkit.describe_audio`."""

TAG_TEMPLATE = "This is a sound of {}."
"""How a label is put to CLAP's text tower (the wording used in CLAP's zero-shot examples)."""
TOP_K = 3
_MAX_LABELS = 200


def check_labels(labels: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """``labels`` as ``{category: (label, ...)}``, or a one-line error naming ``labels``.

    Examples
    --------
    >>> check_labels({"mood": ["calm", " calm ", "sad"]})
    {'mood': ('calm', 'sad')}
    >>> check_labels({"mood": []})
    Traceback (most recent call last):
    ...
    mgtoolkit.errors.InvalidInputError: labels={'mood': []}: category 'mood' has no labels; give each category at least one label, e.g. {'mood': ['calm', 'energetic']}.
    """
    if labels is None:
        return {k: tuple(v) for k, v in DEFAULT_LABELS.items()}
    fix = "give each category at least one label, e.g. {'mood': ['calm', 'energetic']}"
    if not isinstance(labels, Mapping) or not labels:
        raise InvalidInputError("labels", labels, "is not a non-empty mapping of category to labels", fix)
    checked: dict[str, tuple[str, ...]] = {}
    for category, values in labels.items():
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise InvalidInputError("labels", labels, f"category {category!r} is not a list of labels", fix)
        if not all(isinstance(v, str) for v in values):
            raise InvalidInputError(
                "labels", labels, f"category {category!r} holds a label that is not text", fix
            )
        kept = tuple(dict.fromkeys(" ".join(v.split()) for v in values if v.strip()))
        if not kept:
            raise InvalidInputError("labels", labels, f"category {category!r} has no labels", fix)
        checked[str(category)] = kept
    if sum(len(v) for v in checked.values()) > _MAX_LABELS:
        raise InvalidInputError(
            "labels", "too many labels", f"holds more than {_MAX_LABELS}", "pass fewer labels"
        )
    return checked


def _default_tiny() -> bool:
    from ..models.registry import resolve_model

    try:
        return resolve_model(None).is_tiny
    except InvalidInputError:
        return False


def zero_shot_tags(
    y: np.ndarray,
    sr: int,
    labels: Mapping[str, Sequence[str]] | None = None,
    *,
    clap: str | None = None,
    device: str | None = None,
    top_k: int = TOP_K,
) -> tuple[dict[str, tuple[tuple[str, float], ...]], str]:
    """The ``top_k`` labels of each category with their probabilities, and the CLAP model's name.

    Probabilities are a softmax over the category's labels of CLAP's audio-text logits (cosine
    similarity times the model's learned audio scale), as in CLAP's zero-shot classification.
    """
    labels = check_labels(labels)
    loaded = clap_model.load_clap(clap, tiny=clap is None and _default_tiny(), device=device)
    audio = clap_model.audio_embeddings(loaded, [y], sr)[0]
    scale = _logit_scale(loaded)
    tags = {}
    for category, names in labels.items():
        text = clap_model.text_embeddings(loaded, [TAG_TEMPLATE.format(n) for n in names])
        logits = scale * (text @ audio)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")[:top_k]
        tags[category] = tuple((names[i], float(probs[i])) for i in order)
    return tags, loaded.name


def _logit_scale(loaded: clap_model.LoadedClap) -> float:
    scale = getattr(loaded.model, "logit_scale_a", None)
    return float(np.exp(float(scale.numpy().reshape(-1)[0]))) if scale is not None else 1.0


def score_clips(clips: Sequence[Clip], clap: clap_model.LoadedClap) -> np.ndarray:
    """CLAP text-audio cosine similarity of each clip with its own prompt."""
    prompts = list(dict.fromkeys(c.prompt for c in clips))
    by_audio = clap_model.similarity(clap, prompts, [c.waveform for c in clips], clips[0].sample_rate)
    return np.array([by_audio[i, prompts.index(c.prompt)] for i, c in enumerate(clips)], dtype=np.float64)


def rank_clips(
    clips: Sequence[Clip], clap: clap_model.LoadedClap, *, scored_by: str | None = None
) -> list[Clip]:
    """The clips best first (ties keep seed order), each with ``score`` and its rank in ``extra``."""
    scores = score_clips(clips, clap)
    order = sorted(range(len(clips)), key=lambda i: -scores[i])
    name = scored_by or clap.name
    return [
        dataclasses.replace(
            clips[i],
            score=round(float(scores[i]), 6),
            extra={**clips[i].extra, "rank": place + 1, "scored_by": name},
        )
        for place, i in enumerate(order)
    ]
