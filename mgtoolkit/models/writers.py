"""Prompt writers: chat LLMs (paddlenlp) that turn a scene description into a musical sentence.

Chosen by name (:data:`WRITERS`), a hub id or a local directory. ``template`` needs no model (see
:func:`mgtoolkit.prompts.template_prompt`); the ``tiny*`` writers are random models built offline
by :mod:`mgtoolkit.models.tiny.llm`. paddle and paddlenlp are imported inside functions only.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ModelUnavailableError
from .model_files import load_despite_stray_warnings
from .stages import StageSpec, prepare_paddle, resolve_stage, unavailable, weights_source

__all__ = [
    "WriterSpec",
    "WRITERS",
    "resolve_writer",
    "load_writer",
    "release_writers",
    "complete",
    "LoadedWriter",
    "MAX_NEW_TOKENS",
]

MAX_NEW_TOKENS = 96
_LOCK = threading.RLock()


WriterSpec = StageSpec
"""A writer's spec: ``family`` is ``"chatglm"``, ``"chatglm2"``, ``"qwen2"`` or ``"template"``."""

WRITERS: dict[str, WriterSpec] = {
    spec.name: spec
    for spec in [
        WriterSpec("chatglm-6b", "THUDM/chatglm-6b", "chatglm", 13.0, "ChatGLM-6B, the appflow's writer"),
        WriterSpec("chatglm2-6b", "THUDM/chatglm2-6b", "chatglm2", 12.5, "ChatGLM2-6B"),
        WriterSpec(
            "qwen2-0.5b",
            "Qwen/Qwen2-0.5B-Instruct",
            "qwen2",
            1.0,
            "Qwen2-0.5B-Instruct: small enough for a CPU notebook",
        ),
        WriterSpec(
            "tiny", "tiny-qwen2", "qwen2", 0.0, "tiny random Qwen2: gibberish, checks the setup offline"
        ),
        WriterSpec("tiny-chatglm", "tiny-chatglm", "chatglm", 0.0, "tiny random ChatGLM"),
        WriterSpec("tiny-chatglm2", "tiny-chatglm2", "chatglm2", 0.0, "tiny random ChatGLM2"),
        WriterSpec("template", "", "template", 0.0, "no model: style, tempo and instruments from keywords"),
    ]
}
_ALIASES = {spec.source: name for name, spec in WRITERS.items() if "/" in spec.source}
_FAMILIES = {"chatglm": "chatglm", "chatglm_v2": "chatglm2", "chatglm2": "chatglm2", "qwen2": "qwen2"}


def resolve_writer(writer: str | os.PathLike) -> WriterSpec:
    """A :class:`WriterSpec` for a preset name, a hub id (``THUDM/chatglm-6b``) or a local directory.

    Raises
    ------
    InvalidInputError
        Naming ``writer`` if it is none of those.

    Examples
    --------
    >>> resolve_writer("THUDM/chatglm-6b").name
    'chatglm-6b'
    """
    fix = f"use one of {', '.join(WRITERS)}, or a folder written by save_pretrained"
    return resolve_stage("writer", writer, WRITERS, _ALIASES, _FAMILIES, fix)


@dataclass(frozen=True)
class LoadedWriter:
    """A loaded writer: its spec, paddlenlp model and tokenizer, and seconds spent loading."""

    spec: WriterSpec
    model: Any
    tokenizer: Any
    load_s: float


def load_writer(spec: WriterSpec, device: str = "cpu") -> LoadedWriter:
    """Load (cached until :func:`release_writers`) the model and tokenizer of ``spec``."""
    with _LOCK:
        return _load_cached(spec, device)


def release_writers() -> None:
    """Forget every loaded writer and give its memory back."""
    with _LOCK:
        _load_cached.cache_clear()
    gc.collect()


@lru_cache(maxsize=1)
def _load_cached(spec: WriterSpec, device: str) -> LoadedWriter:
    t0 = time.perf_counter()
    dtype = prepare_paddle(device)
    from paddlenlp.transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        source = weights_source(spec, field="writer", model_class=_model_class)
        tokenizer = _keep_whitespace_around_specials(AutoTokenizer.from_pretrained(source))
        model = load_despite_stray_warnings(lambda: AutoModelForCausalLM.from_pretrained(source, dtype=dtype))
    except ModelUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - paddlenlp raises anything on odd files; one line for the user
        raise unavailable("writer", spec, exc, "writer='template' (no model)") from None
    _check_token_ids(spec, tokenizer, model)
    model.eval()
    return LoadedWriter(spec, model, tokenizer, time.perf_counter() - t0)


def _check_token_ids(spec: WriterSpec, tokenizer, model) -> None:
    """Every id the tokenizer gives a special or added token is a row of the model's embedding.

    A token the folder's tokenizer files place past ``config.json``'s ``vocab_size`` would stop the
    model with paddle's raw ``Expected ids[i] < row_number`` at the first prompt that holds it;
    transformers fails on such a folder too. Tokens inside the vocabulary keep their vocabulary ids.
    """
    try:
        rows = int(model.get_input_embeddings().weight.shape[0])
    except (AttributeError, NotImplementedError, TypeError, IndexError):  # a family without the accessor
        return
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    named = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    for token, index in {**named, **added}.items():
        if index is not None and not 0 <= int(index) < rows:
            raise ModelUnavailableError(
                f"writer={spec.name!r}: the tokenizer files of {spec.source!r} (tokenizer_config.json, "
                f"added_tokens.json) give {token!r} the id {index}, but the model has {rows} token embeddings "
                f"(config.json vocab_size); give that token an id below {rows} (in vocab.json or "
                "added_tokens_decoder), use the tokenizer files saved with these weights, or pass "
                "writer='template' (no model)."
            )


def _keep_whitespace_around_specials(tokenizer):
    """Re-register special tokens held as plain strings so whitespace beside them is kept.

    paddlenlp keeps Qwen2's additional special tokens as strings and strips the text on both sides
    of them, so the ``\n`` before ``<|im_start|>`` in a chat prompt vanished and the tokens differed
    from the model's own (transformers') tokenisation. As ``AddedToken(lstrip=False, rstrip=False)``
    they tokenise as the model was trained.
    """
    from paddlenlp.transformers import AddedToken

    plain = [t for t in getattr(tokenizer, "additional_special_tokens", []) or [] if isinstance(t, str)]
    if plain:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(t, lstrip=False, rstrip=False) for t in plain]}
        )
    return tokenizer


def _model_class(folder):
    """The paddlenlp class ``AutoModelForCausalLM`` picks for the folder's config.json."""
    from paddlenlp.transformers import AutoModelForCausalLM

    return AutoModelForCausalLM._get_model_class_from_config(str(folder), str(folder / "config.json"))


def _chat_text(loaded: LoadedWriter, instruction: str) -> str:
    """The instruction in the model family's own chat format."""
    tok = loaded.tokenizer
    if loaded.spec.family == "chatglm2" and hasattr(tok, "build_prompt"):
        return tok.build_prompt(instruction, history=[])
    if loaded.spec.family == "qwen2" and getattr(tok, "chat_template", None):
        messages = [
            {"role": "system", "content": "You write short music prompts."},
            {"role": "user", "content": instruction},
        ]
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - paddlenlp template variants; fall back to the plain format
            pass
        return f"<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
    return instruction  # ChatGLM-6B, as the appflow's text2text task feeds it


def complete(loaded: LoadedWriter, instruction: str, *, max_new_tokens: int | None = None) -> str:
    """The model's raw answer to ``instruction`` (greedy decoding, so the same answer each time).

    ``max_new_tokens`` defaults to :data:`MAX_NEW_TOKENS` (16 for the tiny models, which only babble).
    """
    from ..runtime import import_paddle

    if max_new_tokens is None:
        max_new_tokens = 16 if loaded.spec.is_tiny else MAX_NEW_TOKENS
    paddle = import_paddle()
    tok, model = loaded.tokenizer, loaded.model
    limit = _context_limit(model) - max_new_tokens
    text = _chat_text(loaded, instruction)
    # ChatGLM-6B builds its position ids only when the tokenizer pads; every family needs the 2-D mask.
    inputs = tok(
        [text],
        return_tensors="pd",
        padding=True,
        truncation=True,
        max_length=limit,
        truncation_side="left",
        return_attention_mask=True,
        add_special_tokens=loaded.spec.family != "qwen2",
    )
    kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    with _LOCK, paddle.no_grad():
        ids, _ = model.generate(
            **kwargs,
            max_new_tokens=max_new_tokens,
            min_new_tokens=2,
            decode_strategy="greedy_search",
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            use_cache=True,
        )
    return tok.decode(ids.numpy()[0].tolist(), skip_special_tokens=True)


def _context_limit(model) -> int:
    config = model.config
    for key in ("max_sequence_length", "seq_length", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048
