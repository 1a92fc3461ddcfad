"""Prompt writers: chat LLMs (paddlenlp) that turn a scene description into a musical sentence.

Chosen by name (:data:`WRITERS`), a hub id or a local directory. ``template`` needs no model (see
:func:`mgtoolkit.prompts.template_prompt`); the ``tiny*`` writers are random models built offline
by :mod:`mgtoolkit.backends.tiny_llm`. paddle and paddlenlp are imported inside functions only.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import InvalidInputError, ModelUnavailableError

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


@dataclass(frozen=True)
class WriterSpec:
    """Where a prompt writer comes from.

    Attributes
    ----------
    name : str
        The name the user gave (or the preset's).
    source : str
        Hub id or directory ``from_pretrained`` reads; ``tiny-<kind>`` for a tiny model; ``""`` for
        the template writer.
    family : str
        ``"chatglm"``, ``"chatglm2"``, ``"qwen2"`` or ``"template"``: decides the chat format.
    size_gb : float
        Approximate download size, for the offline message.
    """

    name: str
    source: str
    family: str
    size_gb: float = 0.0
    description: str = ""

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith("tiny-")

    @property
    def needs_model(self) -> bool:
        return self.family != "template"


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
    name = os.fspath(writer).strip() if isinstance(writer, (str, os.PathLike)) else writer
    if isinstance(name, str) and name in WRITERS:
        return WRITERS[name]
    if isinstance(name, str) and name in _ALIASES:
        return WRITERS[_ALIASES[name]]
    if isinstance(name, str) and os.path.isdir(name):
        return WriterSpec(name, name, _family_of_dir(name))
    raise InvalidInputError(
        "writer",
        writer,
        "is not a known prompt writer nor a model directory",
        f"use one of {', '.join(WRITERS)}, or a folder written by save_pretrained",
    )


def _family_of_dir(path: str) -> str:
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type", "")
    except (OSError, ValueError):
        model_type = ""
    if model_type not in _FAMILIES:
        raise InvalidInputError(
            "writer",
            path,
            f"holds no ChatGLM/ChatGLM2/Qwen2 model (model_type={model_type!r})",
            "point it at a folder written by save_pretrained, or use 'template'",
        )
    return _FAMILIES[model_type]


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
    from ..runtime import import_paddle, pick_dtype, quiet_model_logs

    t0 = time.perf_counter()
    paddle = import_paddle()
    paddle.set_device(device)
    quiet_model_logs()
    from paddlenlp.transformers import AutoModelForCausalLM, AutoTokenizer

    source = spec.source
    if spec.is_tiny:
        from .tiny_llm import tiny_dir

        source = str(tiny_dir(spec.source.removeprefix("tiny-")))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=pick_dtype(device))
    except (OSError, ValueError, KeyError, ConnectionError, RuntimeError) as exc:
        raise _unavailable(spec, exc) from None
    model.eval()
    return LoadedWriter(spec, model, tokenizer, time.perf_counter() - t0)


def _unavailable(spec: WriterSpec, exc: Exception) -> ModelUnavailableError:
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return ModelUnavailableError(
        f"writer={spec.name!r}: could not load {spec.source!r} (about {spec.size_gb:g} GB) locally or from the "
        f"model hubs; download it where there is internet and pass writer='/path/to/that/folder', or use "
        f"writer='template' (no model) or 'tiny' to check the setup offline. ({detail})"
    )


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
