"""Tiny captioners and prompt writers: real paddlenlp classes, tiny configs, random weights.

Like the tiny AudioLDM in :mod:`mgtoolkit.models.tiny.pipelines`, each model is built once from a config
with tokenizer files this module writes itself (SentencePiece models trained on a small in-code
corpus, or a byte-level BPE vocabulary), saved with ``save_pretrained`` into the mgtoolkit cache,
and from then on loaded with the same ``from_pretrained`` code the real models use. They write
gibberish; they exist so that every stage of a chain runs offline in tests and notebooks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from ..architectures import tiny, write_bpe_tokenizer_files
from .build import built_once
from .build import save_model as _save

__all__ = ["TINY_LLM_VERSION", "TINY_KINDS", "tiny_dir", "CORPUS"]

TINY_LLM_VERSION = 2  # 2: weights saved as safetensors, not model_state.pdparams

CORPUS = [
    "The image shows a crowded nightclub with people dancing on the dance floor.",
    "Given the scene description in the following paragraph, please create a musical style sentence "
    "that fits the scene. Description:",
    "A classic cocktail lounge vibe with smooth jazz piano and a cool, relaxed atmosphere.",
    "Calm ambient music with soft synth pads and gentle rain.",
    "Energetic electronic dance music with a pounding bass line and bright lights.",
    "A quiet forest at dawn, birds singing, acoustic guitar and flute.",
    "Describe the image. The music is playing and the crowd is dancing.",
    "Upbeat pop song with drums, claps and a catchy melody.",
    "A lonely piano melody in a minor key, slow tempo, melancholic mood.",
    "Orchestral film score with strings, brass and timpani, epic and heroic.",
    "A sunny beach with waves, a city street at night, a snowy mountain, an old church.",
]


def _train_spm(prefix: Path, vocab_size: int, **options) -> Path:
    """Train a small BPE SentencePiece model on :data:`CORPUS`; return the ``.model`` path."""
    import sentencepiece as spm

    corpus = prefix.parent / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 10) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        byte_fallback=False,
        **options,
    )
    corpus.unlink()
    return prefix.with_suffix(".model")


def _build_chatglm(folder: Path) -> None:
    from paddlenlp.transformers import ChatGLMConfig, ChatGLMForCausalLM, ChatGLMTokenizer

    symbols = ["<pad>", "<n>", "<|tab|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]
    sp = _train_spm(folder / "_src" / "ice_text", 300, user_defined_symbols=symbols)
    tok = ChatGLMTokenizer(vocab_file=str(sp), num_image_tokens=0)
    cfg = ChatGLMConfig(
        vocab_size=tok.vocab_size,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        mask_token_id=tok.mask_token_id,
        gmask_token_id=tok.gmask_token_id,
        **tiny("chatglm"),
    )
    _save(folder, ChatGLMForCausalLM(cfg), tok)


def _build_chatglm2(folder: Path) -> None:
    from paddlenlp.transformers import ChatGLMv2Config, ChatGLMv2ForCausalLM, ChatGLMv2Tokenizer

    sp = _train_spm(folder / "_src" / "tokenizer", 300, pad_id=0, unk_id=1, bos_id=-1, eos_id=2)
    tok = ChatGLMv2Tokenizer(vocab_file=str(sp))
    cfg = ChatGLMv2Config(
        vocab_size=tok.vocab_size,
        padded_vocab_size=tok.vocab_size,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **tiny("chatglm2"),
    )
    _save(folder, ChatGLMv2ForCausalLM(cfg), tok)


_QWEN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


_LLM_MERGES = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
    ("Ġ", "m"),
    ("Ġ", "p"),
    ("in", "g"),
    ("o", "u"),
]


def _write_byte_bpe(folder: Path, specials: tuple[str, ...] = ()) -> dict[str, int]:
    """A byte-level BPE vocab/merges (GPT-2 format) with ``specials`` appended."""
    return write_bpe_tokenizer_files(folder, specials=(), merges=_LLM_MERGES, trailing=specials)


_CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _build_qwen2(folder: Path, *, specials_in_vocab: bool = False) -> None:
    """The tiny Qwen2 writer; with ``specials_in_vocab`` its chat tokens sit inside the BPE vocabulary
    (``vocab.json`` ids, as several small chat models ship them) instead of being added after it."""
    if specials_in_vocab:
        return _build_qwen2_specials_in_vocab(folder)
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    src = folder / "_src"
    _write_byte_bpe(src)
    (src / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "errors": "replace",
                "unk_token": None,
                "bos_token": None,
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "chat_template": _QWEN_TEMPLATE,
            }
        ),
        encoding="utf-8",
    )
    tok = Qwen2Tokenizer.from_pretrained(str(src))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    cfg = Qwen2Config(
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
        **tiny("qwen2"),
    )
    _save(folder, Qwen2ForCausalLM(cfg), tok)


def _build_qwen2_specials_in_vocab(folder: Path) -> None:
    """Chat tokens inside ``vocab.json`` and listed at those ids in ``added_tokens_decoder``; the
    tokenizer files written as the hub holds them, the model's embedding exactly the vocabulary."""
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM

    vocab = _write_byte_bpe(folder, specials=_CHAT_SPECIALS)
    added = {
        str(vocab[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "special": True}
        for t in _CHAT_SPECIALS
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "errors": "replace",
        "unk_token": None,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": list(_CHAT_SPECIALS[1:]),
        "added_tokens_decoder": added,
        "chat_template": _QWEN_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    cfg = Qwen2Config(
        vocab_size=len(vocab),
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"],
        **tiny("qwen2"),
    )
    model = Qwen2ForCausalLM(cfg)
    model.eval()
    model.save_pretrained(str(folder), safe_serialization=True)  # never a pickle


def _vision_language(config_class, text_config: dict):
    """A captioner's config: the tiny ViT and Q-Former (4 query tokens) before ``text_config``."""
    return config_class(
        vision_config=tiny("vision"),
        qformer_config=tiny("qformer"),
        text_config=text_config,
        num_query_tokens=4,
    )


def _build_minigpt4(folder: Path) -> None:
    from paddlenlp.transformers import (
        LlamaTokenizer,
        MiniGPT4Config,
        MiniGPT4ForConditionalGeneration,
        MiniGPT4ImageProcessor,
        MiniGPT4Processor,
    )

    sp = _train_spm(folder / "_src" / "tokenizer", 300, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    tok = LlamaTokenizer(vocab_file=str(sp))
    text_config = dict(
        model_type="llama",
        vocab_size=tok.vocab_size,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=0,
        **tiny("lm"),
    )
    cfg = _vision_language(MiniGPT4Config, text_config)
    processor = MiniGPT4Processor(MiniGPT4ImageProcessor(size={"height": 32, "width": 32}), tok)
    _save(folder, MiniGPT4ForConditionalGeneration(cfg), processor)


def _build_blip2(folder: Path) -> None:
    from paddlenlp.transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        GPTTokenizer,
    )

    src = folder / "_src"
    vocab = _write_byte_bpe(src, specials=("</s>", "<pad>"))
    tok = GPTTokenizer(
        str(src / "vocab.json"),
        str(src / "merges.txt"),
        eos_token="</s>",
        pad_token="<pad>",
        bos_token="</s>",
        unk_token="</s>",
    )
    text_config = dict(
        model_type="opt",
        vocab_size=len(vocab),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        **{**tiny("lm"), **tiny("opt")},  # paddlenlp's OPT ignores the language model's intermediate_size
    )
    cfg = _vision_language(Blip2Config, text_config)
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), tok)
    _save(folder, Blip2ForConditionalGeneration(cfg), processor)


TINY_KINDS: dict[str, Callable[[Path], None]] = {
    "chatglm": _build_chatglm,
    "chatglm2": _build_chatglm2,
    "qwen2": _build_qwen2,
    "qwen2-vocab-specials": functools.partial(_build_qwen2, specials_in_vocab=True),
    "minigpt4": _build_minigpt4,
    "blip2": _build_blip2,
}


def tiny_dir(kind: str, root: Path | None = None) -> Path:
    """The folder of the saved tiny model ``kind`` (see :data:`TINY_KINDS`), built on first use.

    Building takes a second or two, once; the folder is then reused by every process.
    """
    build = TINY_KINDS[kind]

    def build_in(folder: Path) -> None:
        (folder / "_src").mkdir(parents=True, exist_ok=True)
        build(folder)

    return built_once(f"tiny-{kind}-v{TINY_LLM_VERSION}", build_in, seed=0, root=root)
