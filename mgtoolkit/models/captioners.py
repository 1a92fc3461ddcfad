"""Captioners: models that describe an image (CLIP tags, paddlenlp MiniGPT4, BLIP-2).

Chosen by name (:data:`CAPTIONERS`), a hub id or a local directory (MiniGPT4's weights are
converted by hand, so a directory is the usual way). ``clip`` (the default, about 0.6 GB) gives
zero-shot tags from editable lists (:mod:`mgtoolkit.models.clip_tagger`); BLIP-2 (about 8 GB, some 15 GB
of memory on a CPU) and MiniGPT4 (about 15 GB) write free text. ``tiny``, ``tiny-blip2`` and
``tiny-clip`` are random models built offline. On the CPU everything runs in float32
(MiniGPT4's float16 defaults have no CPU kernels). paddle and paddlenlp load inside functions only.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import InvalidInputError, ModelUnavailableError
from .model_files import load_despite_stray_warnings
from .stages import StageSpec, prepare_paddle, resolve_stage, unavailable, weights_source

__all__ = [
    "CaptionerSpec",
    "CAPTIONERS",
    "resolve_captioner",
    "load_captioner",
    "release_captioners",
    "caption",
    "LoadedCaptioner",
    "DEFAULT_QUESTION",
    "MINIGPT4_PROMPT",
]

DEFAULT_QUESTION = "describe the image, "
"""What the appflow example asks MiniGPT4 (its ``minigpt4_text``)."""

MINIGPT4_PROMPT = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it "
    "to you. Please answer my questions.###Human: <Img><ImageHere></Img> <TextHere>###Assistant:"
)
"""MiniGPT4's conversation prompt, as PaddleMIX's appflow uses it."""

MAX_NEW_TOKENS = 96
_LOCK = threading.RLock()


CaptionerSpec = StageSpec
"""A captioner's spec: ``family`` is ``"clip"``, ``"minigpt4"`` or ``"blip2"``."""

CAPTIONERS: dict[str, CaptionerSpec] = {
    spec.name: spec
    for spec in [
        CaptionerSpec(
            "clip",
            "openai/clip-vit-base-patch32",
            "clip",
            0.6,
            "CLIP ViT-B/32 zero-shot tags (scene, mood, colour, time of day, energy): 0.6 GB download, "
            "about 0.6 GB of memory; fits a 2 GiB Binder",
        ),
        CaptionerSpec(
            "minigpt4",
            "miniGPT4/MiniGPT4-7B",
            "minigpt4",
            15.0,
            "MiniGPT4 (Vicuna-7B), the appflow's captioner: about 15 GB download and more than that in "
            "memory on a CPU; usually a local converted folder",
        ),
        CaptionerSpec(
            "blip2",
            "Salesforce/blip2-opt-2.7b",
            "blip2",
            8.0,
            "BLIP-2 with OPT-2.7B, free-text captions: about 8 GB download, about 15 GB of memory on a CPU",
        ),
        CaptionerSpec(
            "tiny", "tiny-minigpt4", "minigpt4", 0.0, "tiny random MiniGPT4: checks the setup offline"
        ),
        CaptionerSpec("tiny-blip2", "tiny-blip2", "blip2", 0.0, "tiny random BLIP-2"),
        CaptionerSpec("tiny-clip", "tiny-clip", "clip", 0.0, "tiny random CLIP: the clip captioner offline"),
    ]
}
_ALIASES = {spec.source: name for name, spec in CAPTIONERS.items() if "/" in spec.source}
_ALIASES["miniGPT4/MiniGPT4-13B"] = "minigpt4"
_FAMILIES = {"minigpt4": "minigpt4", "blip-2": "blip2", "blip2": "blip2", "clip": "clip"}


def resolve_captioner(captioner: str | os.PathLike) -> CaptionerSpec:
    """A :class:`CaptionerSpec` for a preset name, hub id or local directory.

    Raises
    ------
    InvalidInputError
        Naming ``captioner`` if it is none of those.

    Examples
    --------
    >>> resolve_captioner("miniGPT4/MiniGPT4-7B").name
    'minigpt4'
    """
    fix = f"use one of {', '.join(CAPTIONERS)}, a converted model folder, or 'text:<your own description>'"
    return resolve_stage("captioner", captioner, CAPTIONERS, _ALIASES, _FAMILIES, fix)


@dataclass(frozen=True)
class LoadedCaptioner:
    """A loaded captioner: its spec, paddlenlp model and processor, and seconds spent loading."""

    spec: CaptionerSpec
    model: Any
    processor: Any
    load_s: float


def load_captioner(spec: CaptionerSpec, device: str = "cpu") -> LoadedCaptioner:
    """Load (cached until :func:`release_captioners`) the model and processor of ``spec``."""
    with _LOCK:
        return _load_cached(spec, device)


def release_captioners() -> None:
    """Forget every loaded captioner and give its memory back."""
    with _LOCK:
        _load_cached.cache_clear()
    gc.collect()


@lru_cache(maxsize=1)
def _load_cached(spec: CaptionerSpec, device: str) -> LoadedCaptioner:
    t0 = time.perf_counter()
    dtype = prepare_paddle(device)
    try:
        if spec.family == "clip":  # its own road: tags, not text generation (see clip_tagger)
            from .clip_tagger import load_clip_parts

            model, processor = load_clip_parts(spec.source, name=spec.name, dtype=dtype)
        else:
            loader = _load_minigpt4 if spec.family == "minigpt4" else _load_blip2
            model, processor = loader(
                weights_source(spec, field="captioner", model_class=_model_class(spec)), dtype
            )
    except ModelUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - paddlenlp raises anything on odd files; one line for the user
        raise unavailable(
            "captioner", spec, exc, "describe the image yourself with captioner='text:...'"
        ) from None
    model.eval()
    return LoadedCaptioner(spec, model, processor, time.perf_counter() - t0)


def _model_class(spec: CaptionerSpec):
    from paddlenlp import transformers

    name = (
        "MiniGPT4ForConditionalGeneration" if spec.family == "minigpt4" else "Blip2ForConditionalGeneration"
    )
    return getattr(transformers, name)


def _load_minigpt4(source: str, dtype: str):
    from paddlenlp.transformers import MiniGPT4ForConditionalGeneration, MiniGPT4Processor

    # from_pretrained defaults the vision encoder and the LLM to float16: no CPU kernels for that.
    model = load_despite_stray_warnings(
        lambda: MiniGPT4ForConditionalGeneration.from_pretrained(source, vit_dtype=dtype, llama_dtype=dtype)
    )
    return model, MiniGPT4Processor.from_pretrained(source)


def _load_blip2(source: str, dtype: str):
    from paddlenlp.transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = load_despite_stray_warnings(
        lambda: Blip2ForConditionalGeneration.from_pretrained(source, dtype=dtype)
    )
    return model, Blip2Processor.from_pretrained(source)


def caption(
    loaded: LoadedCaptioner,
    image,
    question: str | None = None,
    *,
    max_new_tokens: int | None = None,
    labels=None,
) -> str:
    """The model's raw description of ``image`` (an RGB PIL image), greedy so it is repeatable.

    ``question=None`` asks MiniGPT4 :data:`DEFAULT_QUESTION` and lets BLIP-2 caption freely (BLIP-2
    treats a question as the start of its answer). MiniGPT4's answer is cut at the first ``#`` as the appflow example does (its turns end in ``###``).
    A ``clip`` captioner ignores ``question`` and says its best tags over ``labels`` (``None``: the
    default lists of :mod:`mgtoolkit.models.clip_tagger`); ``labels`` is for it alone.
    """
    from ..runtime import import_paddle

    if loaded.spec.family == "clip":
        from . import clip_tagger

        checked = clip_tagger.check_labels(labels)
        with _LOCK:
            scored = clip_tagger.score_labels(loaded.model, loaded.processor, image, checked)
        return clip_tagger.caption_from_tags(scored)
    if labels is not None:
        raise InvalidInputError(
            "labels",
            labels,
            f"is read by CLIP captioners only, not {loaded.spec.name!r}",
            "pass captioner='clip'",
        )

    paddle = import_paddle()
    if max_new_tokens is None:
        max_new_tokens = 12 if loaded.spec.is_tiny else MAX_NEW_TOKENS
    processor = loaded.processor
    tok = processor.tokenizer
    if loaded.spec.family == "minigpt4":
        inputs = processor([image], DEFAULT_QUESTION if question is None else question, MINIGPT4_PROMPT)
    else:
        inputs = processor(images=image, text=question or None, return_tensors="pd")
    with _LOCK, paddle.no_grad():
        out = loaded.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            min_new_tokens=2,
            decode_strategy="greedy_search",
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id or 0,
        )
    ids = out[0] if isinstance(out, tuple) else out
    text = processor.batch_decode(ids.numpy(), skip_special_tokens=True)[0]
    return text.split("#")[0] if loaded.spec.family == "minigpt4" else text
