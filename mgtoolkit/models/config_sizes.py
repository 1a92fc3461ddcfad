"""The sizes a model folder's configurations declare, checked against what the folder holds.

A configuration says how large the model is (``vocab_size``, ``max_position_embeddings``,
``hidden_size``, ``block_out_channels``, a scheduler's ``num_train_timesteps``, a feature
extractor's ``fft_window_size``), and the libraries allocate what it says when they build the
model, even under ``LazyGuard`` (position ids, rotary caches, causal masks, scheduler arrays and mel
filters are made eagerly). A crafted folder declaring 1e9 would push a process without a memory
limit into swap before a single weight is compared. :func:`check_sizes` reads every
``*config.json`` and ``model_index.json`` of a folder, and each component's tensor count from its
safetensors headers (or its pickles' byte count), before anything is built:

1. Every number anywhere in a configuration is at most :data:`MAX_INT` (2**24), except a few keys
   whose large values allocate nothing (seeds, ``rope_theta``); a tokenizer's
   ``model_max_length`` may also be the libraries' "no limit" (1e30, too large to allocate).
2. Counts (layers, heads, blocks, groups) are at most :data:`MAX_COUNT`.
3. In each (nested) configuration of a component with weights, what the model would allocate from
   two declared sizes is at most :data:`SLACK` times the elements its tensors hold (and never
   less than :data:`FLOOR`, so a small model may keep a long context): ``vocab x hidden``
   (the embedding), ``positions x hidden`` (position table or rotary cache), ``positions**2`` for
   GPT-2's causal mask (``n_positions``/``n_ctx``), ``layers x hidden**2``, the square of the largest
   other size (a ``C x C`` kernel), ``(image_size / patch_size)**2 x hidden``.
4. A scheduler's numbers are at most :data:`MAX_TIMESTEPS`; a feature extractor's image sides at
   most :data:`MAX_SIDE`, its audio window, filter bank and spectrogram bounded.

:func:`check_defaults` applies rule 3 to each component's configuration as its class completes it:
sizes a ``config.json`` leaves out get the library's defaults (a ChatGLM's: 6 billion parameters).

A refusal is one :class:`ModelUnavailableError` line naming the file and the key. Nothing here
imports paddle (:func:`check_defaults` is given the classes); only JSON and safetensors headers
are read. Checked against the published configurations of AudioLDM-S/M/L, MusicLDM, AudioLDM2
(its CLAP, flan-T5, GPT-2, projection model), CLAP htsat-unfused, CLIP ViT-B/32, Qwen2-0.5B,
ChatGLM-6B, ChatGLM2-6B and BLIP-2 OPT-2.7b (``tests/models/test_config_sizes.py``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import ModelUnavailableError

__all__ = [
    "MAX_INT",
    "MAX_COUNT",
    "MAX_TIMESTEPS",
    "MAX_SIDE",
    "SLACK",
    "FLOOR",
    "check_sizes",
    "check_config",
]

MAX_INT = 1 << 24
"""The largest number a configuration may hold (real vocabularies are under 300,000)."""

MAX_COUNT = 4096
"""The most layers, heads, blocks or groups a configuration may declare (real models: under 200)."""

MAX_TIMESTEPS = 100_000
"""The largest number in a scheduler's configuration (``num_train_timesteps`` is 1,000)."""

MAX_SIDE = 8192
"""The largest image side a feature extractor may resize or crop to (CLIP: 224)."""

SLACK = 4
"""How many times the elements a component's tensors hold its declared sizes may allocate."""

FLOOR = 1 << 26
"""What declared sizes may always allocate, whatever the tensors (a small model's long context)."""

_NO_LIMIT = 1 << 63
"""``model_max_length`` at or above this is "no limit" (transformers' 1e30): too large to allocate."""

_FREE = re.compile(r"(^|_)(seed|rope_theta|theta|base)$")
_COUNT = re.compile(r"(layers|heads|depths?|blocks|groups|num_experts|per_block|rates|^n_layer|^n_head)$")
_LAYERS = re.compile(r"(layers|^n_layer)$")
_VOCAB = re.compile(r"(^|_)(vocab_size|n_vocab|num_embeddings|num_class_embeds)$")
_POSITIONS = re.compile(
    r"^(max_position_embeddings|max_sequence_length|seq_length|max_seq_len|max_source_positions|"
    r"max_target_positions|n_positions|n_ctx)$"
)
_SQUARED_POSITIONS = ("n_positions", "n_ctx")  # GPT-2 registers a positions x positions mask
_HIDDEN = re.compile(
    r"^(hidden_size|d_model|n_embd|embed_dim|word_embed_proj_dim|hidden_dim|dim|model_dim|width)$"
)
_SIZE = re.compile(
    r"(size|sizes|dim|dims|channels|channel|hidden|intermediate|features|embed|embd|embeds|"
    r"d_ff|d_kv|n_inner|ffn|width)$"
)
_FFT = re.compile(r"^(n_fft|fft_window_size|win_length|filter_length)$")
_IMAGE = re.compile(r"^(size|crop_size|image_size|shortest_edge|longest_edge|height|width)$")


def _refuse(where: Path, key: str, value, problem: str, field: str, name: str) -> ModelUnavailableError:
    shown = str(value)[:40]
    return ModelUnavailableError(
        f"{field}={name!r}: {where}: {key}={shown} {problem}; a crafted configuration: download the "
        "model again from its publisher."
    )


def _numbers(value):
    """The numbers of a value: itself, or those of a (nested) list; booleans are not numbers."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


def _dicts(config, path: str = ""):
    """``(path, dict)`` for a configuration and every dict nested in it (``text_config``...)."""
    if isinstance(config, dict):
        yield path, config
        for key, value in config.items():
            yield from _dicts(value, f"{path}{key}.")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from _dicts(value, f"{path}{i}.")


def _largest(d: dict, pattern) -> tuple[str, float]:
    found = [
        (k, max(_numbers(v), default=0)) for k, v in d.items() if isinstance(k, str) and pattern.search(k)
    ]
    return max(found, key=lambda kv: kv[1], default=("", 0))


def _check_numbers(config, where: Path, field: str, name: str, *, cap: int = MAX_INT) -> None:
    """Rules 1 and 2, and a file-wide ``cap`` (schedulers)."""
    for path, d in _dicts(config):
        for key, value in d.items():
            if not isinstance(key, str) or _FREE.search(key):
                continue
            for n in _numbers(value):
                sized = bool(
                    _SIZE.search(key) or _COUNT.search(key) or _VOCAB.search(key) or _POSITIONS.match(key)
                )
                sized = sized or key.endswith(("steps", "timesteps", "_length", "_len"))
                if isinstance(n, float) and not sized:
                    continue  # a float that sizes nothing (eps, rope factors, -inf clips, mel frequencies)
                if not math.isfinite(n):
                    raise _refuse(where, path + key, n, "is not a finite size", field, name)
                if key == "model_max_length" and n >= _NO_LIMIT:
                    continue  # transformers' "no limit": padding to it fails at once, allocating nothing
                limit = MAX_COUNT if _COUNT.search(key) and cap >= MAX_COUNT else cap
                if abs(n) > limit:
                    raise _refuse(
                        where,
                        path + key,
                        n,
                        f"is larger than the {limit:,} any real model declares",
                        field,
                        name,
                    )


def _check_against(config, where: Path, elements: int, field: str, name: str) -> None:
    """Rule 3: what the declared sizes allocate against the ``elements`` the component's tensors hold."""
    budget = max(SLACK * elements, FLOOR)
    held = f"more than the {budget:,} allowed beside {elements:,} tensor elements on disk ({SLACK}x, at least {FLOOR:,})"
    for path, d in _dicts(config):
        hidden = [
            n for k, v in d.items() if isinstance(k, str) and _HIDDEN.match(k) for n in _numbers(v) if n > 0
        ]
        h = min(hidden, default=1)
        checks = []
        vkey, v = _largest(d, _VOCAB)
        checks.append((vkey, v, v * h, "with the hidden size, asks an embedding of"))
        pkey, p = _largest(d, _POSITIONS)
        checks.append((pkey, p, p * h, "with the hidden size, asks a position table of"))
        for key in _SQUARED_POSITIONS:
            n = max(_numbers(d.get(key)), default=0)
            checks.append((key, n, n * n, "asks a causal mask of"))
        for key, value in d.items():
            if isinstance(key, str) and key.endswith("rates") and math.prod(_numbers(value)) > MAX_COUNT:
                raise _refuse(
                    where, path + key, value, f"multiplies each frame by more than {MAX_COUNT:,}", field, name
                )
        lkey, layers = _largest(d, _LAYERS)
        checks.append((lkey, layers, layers * h * h, "with the hidden size, asks layers of"))
        others = [
            (k, max(_numbers(v), default=0))
            for k, v in d.items()
            if isinstance(k, str) and _SIZE.search(k) and not (_VOCAB.search(k) or _POSITIONS.match(k))
        ]
        skey, s = max(others, key=lambda kv: kv[1], default=("", 0))
        checks.append((skey, s, s * s, "asks a kernel of"))
        image, patch = (
            max(_numbers(d.get("image_size")), default=0),
            max(_numbers(d.get("patch_size")), default=0),
        )
        if image and patch >= 1:
            checks.append(("image_size", image, (image // patch) ** 2 * h, "asks a position table of"))
        for key, value, asked, what in checks:
            if key and asked > budget:
                raise _refuse(
                    where, path + key, value, f"{what} {int(asked):,} elements, {held}", field, name
                )


def _check_scheduler(config, where: Path, field: str, name: str) -> None:
    _check_numbers(config, where, field, name, cap=MAX_TIMESTEPS)


def _widest(d: dict, keys) -> tuple[str, float]:
    """The key of ``keys`` in ``d`` holding the largest number, and that number (``("", 0)``: none)."""
    found = [(k, max(_numbers(d.get(k)), default=0)) for k in keys if k in d]
    return max(found, key=lambda kv: kv[1], default=("", 0))


def _check_extractor(config, where: Path, field: str, name: str) -> None:
    """Rule 4 for ``preprocessor_config.json``: image sides, the audio window and what it makes."""
    for path, d in _dicts(config):
        for key, value in d.items():
            if isinstance(key, str) and _IMAGE.match(key) and max(_numbers(value), default=0) > MAX_SIDE:
                problem = f"is larger than the {MAX_SIDE:,} pixels an image side may be"
                raise _refuse(where, path + key, value, problem, field, name)
        fkey, fft = _widest(d, ("n_fft", "fft_window_size", "win_length", "filter_length"))
        bins = int(fft) // 2 + 1
        mkey, mels = _widest(d, ("feature_size", "n_mels", "num_mel_bins"))
        if bins * mels > MAX_INT:
            key, value = (fkey, fft) if fft >= mels else (mkey, mels)
            problem = (
                f"asks a filter bank of {bins * mels:,} values ({bins:,} frequency bins x {mels:,} filters)"
            )
            raise _refuse(where, path + key, value, problem, field, name)
        rate = max(_numbers(d.get("sampling_rate")), default=0)
        skey, samples = _widest(d, ("nb_max_samples", "n_samples"))
        lkey, seconds = _widest(d, ("max_length_s", "chunk_length", "chunk_length_s"))
        if rate * seconds > samples:
            skey, samples = (lkey or "sampling_rate"), rate * seconds
        hop = max(min(_numbers(d.get("hop_length")), default=1), 1)
        values = (samples // hop + 1) * bins
        if samples > 2 * MAX_INT or values > 4 * MAX_INT:
            key = skey if samples > 2 * MAX_INT or hop > 1 else "hop_length"
            problem = f"asks {int(samples):,} samples, a spectrogram of {int(values):,} values"
            raise _refuse(where, path + key, d.get(key), problem, field, name)


def check_config(
    config, where: Path, *, elements: int | None = None, field: str = "model", name: str = ""
) -> None:
    """Check one configuration's sizes; ``elements`` is what its component's tensors hold, or ``None``
    for a configuration without weights (tokenizer, scheduler, feature extractor, model_index)."""
    if where.name == "scheduler_config.json":
        _check_scheduler(config, where, field, name)
        return
    _check_numbers(config, where, field, name)
    if where.name == "preprocessor_config.json":
        _check_extractor(config, where, field, name)
    if elements is not None:
        _check_against(config, where, elements, field, name)


def _elements(folder: Path) -> int | None:
    """The tensor elements of the component in ``folder`` (safetensors headers), the bytes of its
    pickles (at least their elements), or ``None`` when it holds no weights."""
    from ..io.safetensors_io import read_header
    from .formats import weight_files

    found = weight_files(folder)
    if found is None:
        return None
    total = 0
    for path in found.paths:
        if not path.is_file():
            continue  # named as missing when the weights are read
        if found.container == "safetensors":
            total += sum(math.prod(t.shape) for t in read_header(path).tensors.values())
        else:
            total += path.stat().st_size
    return total


def check_sizes(folder: Path, files, *, field: str = "model", name: str = "") -> None:
    """Check every configuration of ``files`` (``(relative path, path)`` of ``folder``) before any
    model, tokenizer, scheduler or feature extractor is built from it.

    Raises
    ------
    ModelUnavailableError
        One line naming the file and the key whose declared size no real model has, or that asks
        far more memory than the folder's tensors hold.
    """
    from .model_files import MODEL_INDEX, is_data_file, read_config, read_model_index

    for rel, path in files:
        base = Path(rel).name
        if not is_data_file(str(rel)) or not (base.endswith("config.json") or base == MODEL_INDEX):
            continue
        if base == MODEL_INDEX:
            config = read_model_index(Path(path).parent, field=field, name=name or str(folder))
        else:
            config = read_config(Path(path), field=field, name=name or str(folder))
        elements = None
        if base == "config.json":
            elements = _elements(Path(path).parent) or 0
        check_config(config, Path(path), elements=elements, field=field, name=name or str(folder))


def _resolved(cls, raw: dict):
    """The configuration ``cls`` is built from given ``raw``: the library's defaults filled in (a
    paddlenlp/ppdiffusers config class, or a diffusers model's ``__init__`` defaults); ``None`` when
    the library cannot read it (the build then says why)."""
    import inspect
    import json

    def ffn(node):  # as convert._paddle_config spells OPT's ffn_dim for paddlenlp
        if isinstance(node, dict):
            if "ffn_dim" in node and "intermediate_size" not in node:
                node["intermediate_size"] = node["ffn_dim"]
            for value in node.values():
                ffn(value)

    raw = json.loads(json.dumps(raw))
    ffn(raw)
    try:
        config_class = getattr(cls, "config_class", None)
        if config_class is not None and hasattr(config_class, "from_dict"):
            full = config_class.from_dict(raw)
            full = full[0] if isinstance(full, tuple) else full
            full = full.to_dict()
        else:
            params = inspect.signature(cls.__init__).parameters.values()
            full = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
            full.update(raw)
        return json.loads(json.dumps(full, default=str))
    except Exception:  # noqa: BLE001 - a crafted config makes the libraries raise anything
        return None


def check_defaults(folder: Path, classes: dict, *, field: str = "model", name: str = "") -> None:
    """:func:`check_config` on each component's configuration as its class would complete it: a
    ``config.json`` that leaves the sizes out gets the library's defaults (a ChatGLM's are 6
    billion parameters), which must be backed by the tensors on disk like declared ones.

    ``classes`` maps a component folder (``"."`` for a one-model folder) to ``(class, name)``.
    """
    from .model_files import read_config

    for part, (cls, _) in classes.items():
        path = folder / part / "config.json"
        if cls is None or not path.is_file():
            continue
        raw = read_config(path, field=field, name=name or str(folder))
        full = _resolved(cls, raw) if isinstance(raw, dict) else None
        if full is not None:
            elements = _elements(folder / part) or 0
            check_config(full, path, elements=elements, field=field, name=name or str(folder))
