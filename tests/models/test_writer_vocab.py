"""A chat writer whose special tokens sit inside its BPE vocabulary (``vocab.json`` ids, as several
small chat models ship them) loads as ``writer=<folder>`` and answers as the model itself does; a
tokenizer that puts a token past the model's embedding gets one line, not paddle's raw
``Expected ids[i] < row_number``."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.models import writers
from mgtoolkit.models.tiny import llm as tiny_llm

SCENE = "The image shows a crowded nightclub with people dancing on the dance floor."
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@pytest.fixture(scope="module")
def folder():
    return tiny_llm.tiny_dir("qwen2-vocab-specials")


@pytest.fixture
def loaded(folder):
    writer = writers.load_writer(writers.resolve_writer(str(folder)))
    yield writer
    writers.release_writers()


def _vocab(folder) -> dict[str, int]:
    return json.loads((folder / "vocab.json").read_text(encoding="utf-8"))


def _expected_ids(tok, vocab: dict[str, int], text: str) -> list[int]:
    """The chat text as transformers encodes it: each special token its vocabulary id, the text
    between them (newlines kept) byte-level BPE."""
    ids: list[int] = []
    for piece in re.split(f"({'|'.join(map(re.escape, SPECIALS))})", text):
        if piece in SPECIALS:
            ids.append(vocab[piece])
        elif piece:
            ids += [vocab[t] for t in tok._tokenize(piece)]
    return ids


def test_the_special_tokens_are_inside_the_vocabulary(folder):
    vocab = _vocab(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert all(t in vocab for t in SPECIALS) and config["vocab_size"] == len(vocab)


def test_in_vocabulary_special_tokens_keep_their_vocabulary_ids(folder, loaded):
    vocab, tok = _vocab(folder), loaded.tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in SPECIALS] == [vocab[t] for t in SPECIALS]
    assert (tok.eos_token_id, tok.pad_token_id) == (vocab["<|im_end|>"], vocab["<|endoftext|>"])
    text = writers._chat_text(loaded, SCENE)
    assert text.count("<|im_start|>") == 3 and "<|im_end|>\n<|im_start|>" in text
    got = tok([text], add_special_tokens=False)["input_ids"][0]
    assert got == _expected_ids(tok, vocab, text)
    assert got[got.index(vocab["<|im_end|>"]) + 1] == vocab["Ċ"]  # the newline before <|im_start|> kept


def test_the_writer_answers_as_greedy_decoding_of_the_model(folder, loaded):
    """``complete`` gives what the model's own greedy steps give from transformers' token ids."""
    import paddle

    vocab, tok, model = _vocab(folder), loaded.tokenizer, loaded.model
    ids = _expected_ids(tok, vocab, writers._chat_text(loaded, SCENE))
    new: list[int] = []
    with paddle.no_grad():
        for step in range(16):
            out = model(input_ids=paddle.to_tensor([ids + new], dtype="int64"), use_cache=False)
            logits = (out[0] if isinstance(out, tuple) else out.logits).numpy()[0, -1].astype(np.float64)
            if step < 2:  # complete() asks for at least two new tokens
                logits[vocab["<|im_end|>"]] = -np.inf
            new.append(int(np.argmax(logits)))
            if new[-1] == vocab["<|im_end|>"]:
                break
    answer = writers.complete(loaded, SCENE, max_new_tokens=16)
    assert answer == tok.decode(new, skip_special_tokens=True)
    assert len(new) > 2 and answer == writers.complete(loaded, SCENE, max_new_tokens=16)


def test_a_token_past_the_embedding_is_one_line_not_a_paddle_error(folder, tmp_path):
    """The tokenizer files of a bigger sibling: ``<|im_start|>`` at an id the model has no row for."""
    broken = tmp_path / "writer"
    shutil.copytree(folder, broken)
    config_path = broken / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    decoder = config["added_tokens_decoder"]
    start = next(k for k, v in decoder.items() if v["content"] == "<|im_start|>")
    decoder["300"] = decoder.pop(start)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    spec = writers.resolve_writer(str(broken))
    try:
        with pytest.raises(ModelUnavailableError) as caught:
            writers.complete(writers.load_writer(spec), SCENE)
    finally:
        writers.release_writers()
    message = str(caught.value)
    assert "\n" not in message and "tokenizer_config.json" in message
    assert "'<|im_start|>' the id 300" in message and f"{len(_vocab(folder))} token embeddings" in message
