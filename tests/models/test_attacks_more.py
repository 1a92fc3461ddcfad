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
from crafted_models import _edit_json, _one_line, _tiny_pipeline, _tiny_writer
from fixtures.torch_files import marker_code

from mgtoolkit.errors import ModelUnavailableError


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (marker_code(self.marker),))


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
    from fixtures.hub_layouts import write_diffusers_folder
    from fixtures.torch_files import write_torch_bin
    from safetensors.numpy import load_file as read_file

    import mgtoolkit as mg
    from mgtoolkit.models.tiny.pipelines import tiny_dir

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
    from mgtoolkit.models.tiny.clap import tiny_clap_dir

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
