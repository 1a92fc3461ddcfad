"""Issue 24: more crafted models, found by an adversarial review after the first fixes.

Each folder is built here from the tiny models; an attempt to run code aims at a marker file that
must never appear, and each refusal is one line naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.testing.torch_files import marker_code


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (marker_code(self.marker),))


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _one_line(exc_info, *parts: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "mg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", raising=False)
    return tmp_path


def _tiny_pipeline(root: Path, name: str) -> Path:
    from mgtoolkit.testing.tiny import tiny_dir

    folder = root / name
    shutil.copytree(tiny_dir("tiny"), folder)
    return folder


# --- tokenizers that open what their configuration names -----------------------------------------


def test_a_tokenizer_that_unpickles_a_path_from_its_config_is_refused(private_cache):
    """paddlenlp's ErnieTinyTokenizer ``pickle.load``s its ``word_dict``, and takes that path from
    tokenizer_config.json as given: a pickle beside the model (a hub snapshot's path is predictable)
    ran when the pipeline loaded."""
    import mgtoolkit as mg

    marker = private_cache / "ernie-tiny.marker"
    folder = _tiny_pipeline(private_cache, "ernie-tiny")
    (folder / "evil.pickle").write_bytes(pickle.dumps(_Payload(marker)))
    _edit_json(folder / "model_index.json", tokenizer=["transformers", "ErnieTinyTokenizer"])
    (folder / "tokenizer" / "vocab.txt").write_text("[UNK]\n[PAD]\n", encoding="utf-8")
    _edit_json(
        folder / "tokenizer" / "tokenizer_config.json",
        tokenizer_class="ErnieTinyTokenizer",
        word_dict=str(folder / "evil.pickle"),
        sentencepiece_model_file="none",
    )
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, "model_index.json", "'tokenizer'", "ErnieTinyTokenizer")
    assert not marker.exists()


def test_configurations_we_copy_name_no_files(private_cache):
    """Any file a copied configuration names (absolute, or relative and present) is dropped, so the
    libraries read the folder's own files only; tokens, templates and flags are kept as they are."""
    from mgtoolkit.models import weights

    folder = _tiny_pipeline(private_cache, "paths")
    outside = private_cache / "outside.txt"
    outside.write_text("x\n", encoding="utf-8")
    kept = {
        "pad_token": "</s>",
        "chat_template": "{{ '</s>' }} a/b.c",
        "return_dict": True,
        "model_max_length": 77,
    }
    _edit_json(
        folder / "tokenizer" / "tokenizer_config.json",
        vocab_file=str(outside),
        merges_file="../outside.txt",
        word_dict="dict.wordseg.pickle",
        sentencepiece_model_file=[str(outside)],
        extra=str(outside),
        name_or_path=str(folder),
        **kept,
    )
    entry = weights.paddle_folder(folder, name="paths")
    config = json.loads((entry / "tokenizer" / "tokenizer_config.json").read_text(encoding="utf-8"))
    gone = ("vocab_file", "merges_file", "word_dict", "sentencepiece_model_file", "extra", "name_or_path")
    assert not [k for k in gone if k in config], config
    assert {k: config.get(k) for k in kept} == kept
    vocab = json.loads((entry / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == json.loads((folder / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))


# --- odd configurations: one line, never a raw traceback ------------------------------------------

_DEEP = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize(("name", "text"), [("deep", _DEEP), ("list", "[1]"), ("number", "7")])
def test_an_odd_model_index_is_one_line(private_cache, name, text):
    import mgtoolkit as mg
    from mgtoolkit.errors import InvalidInputError

    folder = _tiny_pipeline(private_cache, f"index-{name}")
    (folder / "model_index.json").write_text(text, encoding="utf-8")
    with pytest.raises((InvalidInputError, ModelUnavailableError)) as caught:
        mg.load_model(str(folder))
    _one_line(caught, "model", "model_index.json")


def _tiny_writer(root: Path, name: str) -> Path:
    from mgtoolkit.testing.tiny_llm import tiny_dir

    folder = root / name
    shutil.copytree(tiny_dir("qwen2"), folder)
    return folder


@pytest.mark.parametrize(
    ("name", "rel", "edit"),
    [
        ("arch-unknown", "config.json", {"architectures": ["Nope"]}),
        ("arch-number", "config.json", {"architectures": [5]}),
        ("tokenizer-unknown", "tokenizer_config.json", {"tokenizer_class": "Nope"}),
        ("config-deep", "config.json", _DEEP),
        ("config-list", "config.json", "[1, 2]"),
        ("vocab-list", "vocab.json", "[1]"),
    ],
)
def test_an_odd_writer_folder_is_one_line(private_cache, name, rel, edit):
    """paddlenlp raised AttributeError/RecursionError on these; the user gets our one line."""
    from mgtoolkit.errors import InvalidInputError
    from mgtoolkit.models import writers

    folder = _tiny_writer(private_cache, name)
    if isinstance(edit, dict):
        _edit_json(folder / rel, **edit)
    else:
        (folder / rel).write_text(edit, encoding="utf-8")
    try:
        with pytest.raises((InvalidInputError, ModelUnavailableError)) as caught:
            writers.load_writer(writers.resolve_writer(str(folder)))
    finally:
        writers.release_writers()
    _one_line(caught, "writer=")


# --- the cache of folders we build ----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_a_cache_owned_by_another_user_is_refused_whatever_its_mode(private_cache):
    """Another user's 0755 cache is written by that user: a planted ``unet/ppdiffusers.py`` in a
    converted entry would be imported by ppdiffusers. Refused like a world-writable one."""
    import mgtoolkit as mg

    cache = Path(os.environ["MGTOOLKIT_CACHE"])
    cache.mkdir(mode=0o755)
    os.chmod(cache, 0o755)
    os.chown(cache, 4242, 4242)
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(_tiny_pipeline(private_cache, "other-owner")))
    _one_line(caught, str(cache), "uid 4242", "MGTOOLKIT_CACHE")


# --- conversion of what a crafted pickle legitimately holds ---------------------------------------


def test_a_tensor_of_a_kind_models_do_not_use_is_one_line(private_cache):
    """A complex128 tensor in a torch pickle passes the reader (a numeric dtype) but not the
    safetensors writer: that was a raw SafetensorError out of load_model."""
    import numpy as np
    from safetensors.numpy import load_file as read_file

    import mgtoolkit as mg
    from mgtoolkit.testing.hub_layouts import write_diffusers_folder
    from mgtoolkit.testing.tiny import tiny_dir
    from mgtoolkit.testing.torch_files import write_torch_bin

    folder = write_diffusers_folder(tiny_dir("tiny"), private_cache / "complex")
    (weights,) = (folder / "vocoder").glob("*.safetensors")
    state = read_file(str(weights))
    first = sorted(state)[0]
    state[first] = state[first].astype(np.complex128)
    weights.unlink()
    write_torch_bin(folder / "vocoder" / "pytorch_model.bin", state)
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, "vocoder", "SpeechT5HifiGan", "complex128")
    assert not list((private_cache / "mg-cache" / "converted").glob("complex-*"))


@pytest.mark.parametrize(
    ("rel", "edit"),
    [("preprocessor_config.json", {"feature_size": [1]}), ("config.json", {"text_config": "x"})],
)
def test_an_odd_clap_folder_is_one_line(private_cache, rel, edit):
    """paddlenlp raised TypeError on these (not among the errors clap= turned into one line)."""
    from mgtoolkit.models import clap
    from mgtoolkit.testing.tiny_clap import tiny_clap_dir

    folder = private_cache / "odd-clap"
    shutil.copytree(tiny_clap_dir(), folder)
    _edit_json(folder / rel, **edit)
    try:
        with pytest.raises(ModelUnavailableError) as caught:
            clap.load_clap(str(folder))
    finally:
        clap.release_clap()
    _one_line(caught, "clap=", "does not load as a CLAP model")


# --- the restricted pickle reader ------------------------------------------------------------------


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


@pytest.mark.parametrize("kind", ["str", "bytes", "bytearray"])
def test_text_calls_name_only_plain_encodings(tmp_path, kind):
    """``str(b, "punycode")`` decodes in quadratic time (160 kB took 7 s, a few MB would hold the
    read for hours): an allowed name given an argument no weights file needs. Refused before any
    decoding; the encodings pickles use still read."""
    from mgtoolkit.models.safe_pickle import UnsafePickleError, read_pdparams

    def pdparams(value: bytes) -> Path:
        path = tmp_path / "x.pdparams"
        path.write_bytes(b"\x80\x02}(" + _binunicode("w") + value + b"u.")
        return path

    def text_call(encoding: str) -> bytes:
        data = _binunicode("a" * 40_000 + "-" + "9" * 40_000)
        if kind == "str":  # bytes first, then decoded
            data = b"c__builtin__\nbytes\n(" + data + _binunicode("latin1") + b"tR"
        return f"c__builtin__\n{kind}\n(".encode() + data + _binunicode(encoding) + b"tR"

    with pytest.raises(UnsafePickleError) as caught:
        read_pdparams(pdparams(text_call("punycode")))
    _one_line(caught, "x.pdparams", "punycode")
    assert read_pdparams(pdparams(text_call("utf-8"))) == {}  # text: not a tensor, left out


def _long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


@pytest.mark.parametrize("how", ["big-int", "float", "tuple", "set-item"])
def test_keys_that_hash_by_value_are_refused(tmp_path, how):
    """Keys a pickle can make collide (ints that are multiples of 2**61 - 1 all hash to 0; floats
    and tuples hash by value too): 40,000 of them took 20 s to insert, a few MB of them hours."""
    import struct

    from mgtoolkit.models.safe_pickle import UnsafePickleError, read_pdparams

    p = 2**61 - 1
    key = {
        "big-int": _long1(3 * p),
        "float": b"G" + struct.pack(">d", 0.5),
        "tuple": b"K\x01K\x02\x86",  # (1, 2)
        "set-item": _long1(3 * p),
    }[how]
    body = b"\x8f(" + key + b"\x90" if how == "set-item" else b"}(" + key + b"K\x00u"
    path = tmp_path / "keys.pdparams"
    path.write_bytes(b"\x80\x04}(" + _binunicode("w") + body + b"u.")
    with pytest.raises(UnsafePickleError) as caught:
        read_pdparams(path)
    _one_line(caught, "keys.pdparams", "dict key or set item")
    # text, bytes, None, bools and small ints stay keys (torch optimizer states use ints)
    path.write_bytes(b"\x80\x04}(" + _binunicode("w") + b"}(K\x07K\x01\x88K\x02NK\x03u" + b"u.")
    assert read_pdparams(path) == {"w.7": 1, "w.True": 2, "w.None": 3}


def test_text_memo_indexes_stay_in_the_binary_range(tmp_path):
    """Protocol 0's PUT takes any decimal index: multiples of 2**61 - 1 all hash to 0, so the memo
    filled in quadratic time. Indexes are kept to 0..2**32, as the binary opcodes have them."""
    from mgtoolkit.models.safe_pickle import read_pdparams

    path = tmp_path / "memo.pdparams"
    path.write_bytes(b"(dp" + str(3 * (2**61 - 1)).encode() + b"\n.")
    with pytest.raises(ModelUnavailableError) as caught:
        read_pdparams(path)
    _one_line(caught, "memo.pdparams", "memo index")
    path.write_bytes(b"(dp4294967295\n.")
    assert read_pdparams(path) == {}


# --- configuration files that are not files of a configuration's size ----------------------------

_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import mgtoolkit as mg
from mgtoolkit.models import writers
kind, folder = sys.argv[1], sys.argv[2]
try:
    if kind == "writer":
        writers.load_writer(writers.resolve_writer(folder))
    else:
        mg.load_model(folder)
    print("LOADED")
except BaseException as exc:
    print(type(exc).__name__, str(exc).replace(chr(10), "|"))
"""


@pytest.mark.parametrize(
    ("kind", "rel", "how"),
    [
        ("writer", "config.json", "dev-zero"),
        ("pipeline", "model_index.json", "dev-zero"),
        ("pipeline", "model_index.json", "huge"),
        ("pipeline", "unet/config.json", "huge"),
        ("writer", "tokenizer_config.json", "fifo"),
    ],
)
def test_a_config_that_is_not_a_small_regular_file_is_one_line(private_cache, kind, rel, how):
    """``config.json -> /dev/zero`` was read until memory ran out (writer=, before any link check);
    a FIFO blocked the load for ever; a 100 MB (sparse) configuration was read whole. Each is
    refused, in one line, under a memory limit in a child interpreter."""
    import subprocess
    import sys

    folder = _tiny_writer(private_cache, "cfg") if kind == "writer" else _tiny_pipeline(private_cache, "cfg")
    target = folder / rel
    target.unlink()
    if how == "dev-zero":
        target.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(target)
    else:
        with open(target, "wb") as fh:
            fh.write(b'{"_class_name": "AudioLDMPipeline", "x": "')
            fh.truncate(100 << 20)
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, kind, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.split()[0] in ("InvalidInputError", "ModelUnavailableError"), last
    assert "MemoryError" not in last and "Traceback" not in last, last


# --- sizes a configuration declares ----------------------------------------------------------------

_SIZES_UNDER_LIMIT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import mgtoolkit as mg
from mgtoolkit.models import clap, clip_tagger, writers
for kind, folder in json.loads(sys.argv[1]):
    try:
        if kind == "writer":
            writers.load_writer(writers.resolve_writer(folder))
        elif kind == "clap":
            clap.load_clap(folder)
        elif kind == "captioner":
            clip_tagger.load_clip_parts(folder, name="bomb")
        else:
            mg.load_model(folder)
        print("LOADED", flush=True)
    except BaseException as exc:
        print(type(exc).__name__, str(exc).replace(chr(10), "|"), flush=True)
"""

_PIPELINE_BOMBS = [
    ("text_encoder/config.json", ("vocab_size",), 10**9),
    ("text_encoder/config.json", ("max_position_embeddings",), 1 << 23),  # under the cap: vs tensors
    ("text_encoder/config.json", ("hidden_size",), 1e9),  # a float
    ("unet/config.json", ("block_out_channels",), [32, 1 << 22]),
    ("vae/config.json", ("layers_per_block",), 1 << 20),
    ("scheduler/scheduler_config.json", ("num_train_timesteps",), 2 * 10**9),
    ("tokenizer/tokenizer_config.json", ("model_max_length",), 1 << 36),
]
_WRITER_BOMBS = [
    ("config.json", ("vocab_size",), 10**9),
    ("config.json", ("max_position_embeddings",), 1 << 24),
    ("config.json", ("intermediate_size",), 1 << 22),
    ("config.json", ("num_hidden_layers",), 1 << 20),
    ("generation_config.json", ("max_new_tokens",), 10**12),
]
_CLAP_BOMBS = [
    ("config.json", ("text_config", "vocab_size"), 1 << 24),
    ("config.json", ("audio_config", "spec_size"), 1 << 22),
    ("config.json", ("audio_config", "depths"), [2, 1 << 20]),
    ("preprocessor_config.json", ("fft_window_size",), 1 << 22),
    ("preprocessor_config.json", ("nb_max_samples",), 1 << 30),
]
_CAPTIONER_BOMBS = [
    ("config.json", ("vision_config", "image_size"), 1 << 19),
    ("config.json", ("text_config", "max_position_embeddings"), 1 << 23),
    ("preprocessor_config.json", ("crop_size",), 1 << 20),
]


def _set(path: Path, keys: tuple[str, ...], value) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    inner = data
    for key in keys[:-1]:
        inner = inner[key]
    inner[keys[-1]] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def _bomb_folders(root: Path, route: str) -> list[tuple[str, str, str, str]]:
    """``(kind, folder, file, key)`` for each size bomb of ``route``, each in a folder of its own."""
    from mgtoolkit.testing.hub_layouts import write_diffusers_folder
    from mgtoolkit.testing.tiny import tiny_dir
    from mgtoolkit.testing.tiny_clap import tiny_clap_dir
    from mgtoolkit.testing.tiny_clip import tiny_clip_dir
    from mgtoolkit.testing.tiny_llm import tiny_dir as tiny_llm_dir

    source, bombs, kind = {
        "pipeline": (lambda: tiny_dir("tiny"), _PIPELINE_BOMBS, "model"),
        "torch": (
            lambda: write_diffusers_folder(tiny_dir("tiny"), root / "torch-src"),
            _PIPELINE_BOMBS,
            "model",
        ),
        "writer": (lambda: tiny_llm_dir("qwen2"), _WRITER_BOMBS, "writer"),
        "clap": (tiny_clap_dir, _CLAP_BOMBS, "clap"),
        "captioner": (tiny_clip_dir, _CAPTIONER_BOMBS, "captioner"),
    }[route]
    src = Path(source())
    out = []
    for i, (rel, keys, value) in enumerate(bombs):
        folder = root / f"{route}-bomb-{i}"
        shutil.copytree(src, folder)
        _set(folder / rel, keys, value)
        out.append((kind, str(folder), rel, ".".join(keys)))
    return out


@pytest.mark.parametrize("route", ["pipeline", "torch", "writer", "clap", "captioner"])
def test_a_declared_size_no_tensor_backs_is_refused_before_anything_is_built(private_cache, route):
    """A configuration declaring a vocabulary, position table, channel count, layer count, scheduler
    length, tokenizer length or feature extractor window of 1e9 (or one the tensors on disk cannot
    back) made paddle/numpy allocate it (8 to 128 GB) while building the model, before any weight was
    compared: swap or the OOM killer without a memory limit. Each is refused in one line naming the
    file and the key, before anything is built, in a child under a 3 GiB address-space limit; no
    entry is written."""
    import subprocess
    import sys

    cases = _bomb_folders(private_cache, route)
    done = subprocess.run(
        [sys.executable, "-c", _SIZES_UNDER_LIMIT, json.dumps([c[:2] for c in cases])],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()[-len(cases) :]
    assert len(lines) == len(cases), done.stdout[-2000:]
    for (_, folder, rel, key), line in zip(cases, lines, strict=True):
        assert line.startswith("ModelUnavailableError "), (key, line)
        assert f"{Path(folder, rel)}: {key}=" in line, (key, line)
        assert "crafted configuration" in line and "MemoryError" not in line, line
    converted = private_cache / "mg-cache" / "converted"
    assert not converted.exists() or not [p for p in converted.iterdir() if "bomb" in p.name]


# Published configurations (the sizes only) of the real models mgtoolkit loads, with a lower bound
# of the elements their weights hold: none may be refused.
_REAL_CONFIGS = {
    "qwen2-0.5b": (
        {
            "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151643,
            "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 131072,
            "max_window_layers": 24, "num_attention_heads": 14, "num_hidden_layers": 24,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "sliding_window": 131072, "tie_word_embeddings": True, "vocab_size": 151936,
        },
        494_000_000,
    ),
    "chatglm-6b": (
        {
            "bos_token_id": 130004, "eos_token_id": 130005, "mask_token_id": 130000,
            "gmask_token_id": 130001, "pad_token_id": 3, "hidden_size": 4096, "inner_hidden_size": 16384,
            "max_sequence_length": 2048, "num_attention_heads": 32, "num_layers": 28,
            "position_encoding_2d": True, "vocab_size": 130528, "quantization_bit": 0, "pre_seq_len": None,
        },
        6_100_000_000,
    ),
    "chatglm2-6b": (
        {
            "padded_vocab_size": 65024, "hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128,
            "num_layers": 28, "seq_length": 32768, "multi_query_group_num": 2, "num_attention_heads": 32,
            "eos_token_id": 2, "pad_token_id": 0, "layernorm_epsilon": 1e-05,
        },
        6_200_000_000,
    ),
    "blip2-opt-2.7b": (
        {
            "num_query_tokens": 32,
            "qformer_config": {
                "vocab_size": 30522, "hidden_size": 768, "intermediate_size": 3072,
                "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
                "encoder_hidden_size": 1408, "cross_attention_frequency": 2,
            },
            "text_config": {
                "vocab_size": 50272, "hidden_size": 2560, "ffn_dim": 10240, "max_position_embeddings": 2048,
                "num_attention_heads": 32, "num_hidden_layers": 32, "word_embed_proj_dim": 2560,
                "bos_token_id": 2, "eos_token_id": 50118, "pad_token_id": 1, "max_length": 20, "top_k": 50,
            },
            "vision_config": {
                "hidden_size": 1408, "image_size": 224, "intermediate_size": 6144, "num_attention_heads": 16,
                "num_hidden_layers": 39, "patch_size": 14,
            },
        },
        3_700_000_000,
    ),
    "audioldm-l-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [256, 512, 768, 1280], "cross_attention_dim": [256, 512, 768, 1280],
            "attention_head_dim": 8, "projection_class_embeddings_input_dim": 512,
        },
        600_000_000,
    ),
    "audioldm-m-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [192, 384, 576, 960], "cross_attention_dim": [192, 384, 576, 960],
            "attention_head_dim": 8, "projection_class_embeddings_input_dim": 512,
        },
        300_000_000,
    ),
    "audioldm2-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [128, 256, 384, 640], "attention_head_dim": 8,
            "cross_attention_dim": [[None], [768, 1024], [768, 1024], [768, 1024]],
        },
        300_000_000,
    ),
    "audioldm2-gpt2": (
        {"n_ctx": 1024, "n_positions": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_inner": None,
         "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256},
        120_000_000,
    ),
    "audioldm2-flan-t5-large": (
        {"vocab_size": 32128, "d_model": 1024, "d_ff": 2816, "d_kv": 64, "num_layers": 24,
         "num_decoder_layers": 24, "num_heads": 16, "relative_attention_num_buckets": 32,
         "relative_attention_max_distance": 128, "n_positions": 512, "eos_token_id": 1},
        335_000_000,
    ),
    "audioldm2-projection": (
        {"text_encoder_dim": 512, "text_encoder_1_dim": 1024, "langauge_model_dim": 768}, 1_180_000
    ),
    "musicldm-vocoder": (
        {"model_in_dim": 64, "sampling_rate": 16000, "upsample_initial_channel": 1024,
         "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
         "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3},
        50_000_000,
    ),
}  # fmt: skip

_REAL_OTHER_CONFIGS = {
    "scheduler_config.json": {
        "num_train_timesteps": 1000, "steps_offset": 1, "beta_end": 0.0195,
        "lambda_min_clipped": float("-inf"),  # DPMSolverMultistepScheduler's default
    },
    "preprocessor_config.json": {
        "chunk_length_s": 10, "feature_size": 64, "fft_window_size": 1024, "hop_length": 480,
        "max_length_s": 10, "sampling_rate": 48000, "nb_max_samples": 480000, "nb_max_frames": 1000,
        "frequency_min": 50, "frequency_max": 14000,
    },
    "tokenizer_config.json": {"model_max_length": 1000000000000000019884624838656, "bos_token": "</s>"},
    "generation_config.json": {"bos_token_id": 151643, "max_new_tokens": 2048, "top_k": 20},
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(_REAL_CONFIGS))
def test_the_sizes_of_real_models_pass(model):
    from mgtoolkit.models.config_sizes import check_config

    config, elements = _REAL_CONFIGS[model]
    check_config(config, Path(model, "config.json"), elements=elements)
    for rel, other in _REAL_OTHER_CONFIGS.items():
        check_config(other, Path(model, rel))


def test_the_sizes_of_real_model_folders_pass(private_cache):
    """Every tiny model (pipelines, their torch layout, writers, CLAP, CLIP) passes the size check
    against its own tensors (the full-size ones: see test_the_sizes_of_real_models_pass)."""
    from mgtoolkit.models.config_sizes import check_sizes
    from mgtoolkit.models.store import _walk
    from mgtoolkit.testing.hub_layouts import write_diffusers_folder
    from mgtoolkit.testing.tiny import tiny_dir
    from mgtoolkit.testing.tiny_clap import tiny_clap_dir
    from mgtoolkit.testing.tiny_clip import tiny_clip_dir
    from mgtoolkit.testing.tiny_llm import TINY_KINDS
    from mgtoolkit.testing.tiny_llm import tiny_dir as tiny_llm_dir

    folders = [tiny_dir(n) for n in ("tiny", "tiny-musicldm", "tiny-audioldm2")]
    folders += [write_diffusers_folder(tiny_dir("tiny"), private_cache / "torch-layout")]
    folders += [tiny_llm_dir(kind) for kind in TINY_KINDS] + [tiny_clap_dir(), tiny_clip_dir()]
    for folder in folders:
        check_sizes(Path(folder), _walk(Path(folder)), name=str(folder))
    # and as their classes complete them with the libraries' defaults
    from mgtoolkit.models.config_sizes import check_defaults
    from mgtoolkit.models.convert import _architecture_class, _part_classes

    for folder in folders:
        folder = Path(folder)
        model_class = None if (folder / "model_index.json").is_file() else _architecture_class(folder)
        check_defaults(folder, _part_classes(folder, model_class), name=str(folder))


def test_sizes_left_to_the_library_defaults_are_checked_too(private_cache):
    """A writer's config.json without its sizes is built with paddlenlp's defaults (Qwen2's: a
    7-billion-parameter geometry) around a few thousand tensor elements: refused like declared sizes."""
    from mgtoolkit.models import writers

    folder = _tiny_writer(private_cache, "defaults")
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "max_position_embeddings",
    ):
        data.pop(key, None)
    (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
    try:
        with pytest.raises(ModelUnavailableError) as caught:
            writers.load_writer(writers.resolve_writer(str(folder)))
    finally:
        writers.release_writers()
    _one_line(caught, "writer=", f"{folder / 'config.json'}: ", "crafted configuration")
    assert not list((private_cache / "mg-cache" / "converted").glob("defaults-*"))


@pytest.mark.parametrize(
    ("rel", "config", "key"),
    [
        ("scheduler_config.json", {"num_train_timesteps": 2e9}, "num_train_timesteps"),
        ("scheduler_config.json", {"num_train_timesteps": 1000, "steps_offset": 10**6}, "steps_offset"),
        ("config.json", {"vocab_size": float("nan"), "hidden_size": 8}, "vocab_size"),
        ("config.json", {"vocab_size": 100, "n_embd": 8, "n_positions": 1 << 14}, "n_positions"),
        (
            "config.json",
            {"vocab_size": 100, "hidden_size": 4096, "num_hidden_layers": 1000},
            "num_hidden_layers",
        ),
        ("config.json", {"upsample_rates": [64, 64, 64]}, "upsample_rates"),
        (
            "config.json",
            {"text_config": {"vision": {"hidden_size": 1 << 24}}},
            "text_config.vision.hidden_size",
        ),
        ("preprocessor_config.json", {"size": {"shortest_edge": 1 << 16}}, "size.shortest_edge"),
        (
            "preprocessor_config.json",
            {"sampling_rate": 48000, "max_length_s": 3600, "hop_length": 1},
            "max_length_s",
        ),
        ("tokenizer_config.json", {"model_max_length": 1 << 40}, "model_max_length"),
    ],
)
def test_each_size_rule_names_its_key(rel, config, key):
    """One line naming the file and the (nested) key, for each rule of config_sizes, without paddle."""
    from mgtoolkit.models.config_sizes import check_config

    where = Path("crafted", rel)
    with pytest.raises(ModelUnavailableError) as caught:
        check_config(
            config, where, elements=10_000 if rel == "config.json" else None, field="writer", name="x"
        )
    _one_line(caught, "writer='x'", f"{where}: {key}=", "crafted configuration")
