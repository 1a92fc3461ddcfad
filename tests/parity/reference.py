"""The reference side of the parity tests: torch + diffusers + transformers, never paddle.

Run in its own venv (``make parity`` builds it from ``tests/parity/requirements.txt``)::

    build/parity-venv/bin/python tests/parity/reference.py --out WORKDIR

For each pipeline (AudioLDM, MusicLDM, AudioLDM2) it builds a small random-weight pipeline with the
structure of the published one, saves it with ``save_pretrained`` in diffusers format twice
(``WORKDIR/<name>``: safetensors; ``WORKDIR/<name>-bin``: ``.bin`` files, like older hub repos),
reloads the safetensors folder with diffusers and runs it on numpy starting latents drawn from the
seed exactly as mgtoolkit draws them. ``WORKDIR/<name>.npz`` keeps the waveform, the latents and
the call's arguments; ``WORKDIR/manifest.json`` lists what was made and the library versions.

No file is downloaded: tokenizers are written here (byte-level BPE; a sentencepiece model for T5).
The component configs are mgtoolkit's own (``mgtoolkit/models/architectures.py``, loaded by its path:
mgtoolkit is not installed here), with the few changes noted where they are made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

for _name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
    os.environ.setdefault(_name, "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402


def _architectures():
    """``mgtoolkit/models/architectures.py`` (standard library only), loaded by its path."""
    path = Path(__file__).resolve().parents[2] / "mgtoolkit" / "models" / "architectures.py"
    spec = importlib.util.spec_from_file_location("mgtoolkit_architectures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _architectures()

PROMPT = "Techno music with a strong, upbeat tempo and high melodic riffs"
NEGATIVE_PROMPT = "low quality, average quality, noise"
CALL = {"audio_length_in_s": 2.0, "num_inference_steps": 10, "guidance_scale": 2.5, "seed": 1234}
# A random HiFi-GAN at the default initializer_range (0.01) peaks near 1e-7; this makes it audible.
VOCODER_INIT = 0.1
CORPUS = [
    PROMPT,
    NEGATIVE_PROMPT,
    "A calm piano melody with soft strings in a quiet concert hall",
    "Electronic dance music with a heavy bass line and drums",
    "A classic cocktail lounge vibe with smooth jazz piano",
]
# CLAP's joint embedding width. diffusers' AudioLDM/MusicLDM pad the negative prompt to
# ``prompt_embeds.shape[1]`` tokens, which for CLAP is this width (512 in the real models): it must
# exceed the negative prompt's token count (35 here) or diffusers silently truncates it.
CLAP_DIM = 64
BPE_MERGES = [("Ġ", "a"), ("Ġ", "s"), ("Ġ", "p"), ("Ġ", "m"), ("i", "n"), ("e", "r"), ("in", "g")]


def log(*parts) -> None:
    print("[reference]", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Tokenizer files, written here.
# ---------------------------------------------------------------------------------------------
def bpe_vocab() -> dict[str, int]:
    """RoBERTa specials, the 256 byte symbols (by byte value), the merges, ``<mask>``."""
    return arch.bpe_vocab(merges=BPE_MERGES, byte_order=True)


def roberta_tokenizer(max_length: int):
    """transformers 5 ignores ``vocab_file=``/``merges_file=``: pass the vocabulary itself."""
    from transformers import RobertaTokenizer

    return RobertaTokenizer(vocab=bpe_vocab(), merges=list(BPE_MERGES), model_max_length=max_length)


def write_bpe_files(folder: Path) -> None:
    """The hub repos ship ``vocab.json`` and ``merges.txt`` beside ``tokenizer.json``."""
    arch.write_bpe_files(folder, bpe_vocab(), BPE_MERGES)


def sentencepiece_model(workdir: Path) -> Path:
    """A tiny unigram ``spiece.model`` (T5's tokenizer file), trained on the corpus."""
    import sentencepiece as spm

    prefix = workdir / "spiece"
    text = workdir / "corpus.txt"
    text.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), **arch.tiny("t5_spiece", vocab_size=56)
    )
    return prefix.with_suffix(".model")


def t5_tokenizer(spiece: Path):
    """T5's tokenizer from ``spiece.model``; transformers 5 ignores ``vocab_file=``, so pass the pieces."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = spm.SentencePieceProcessor(model_file=str(spiece))
    pieces = [(model.id_to_piece(i), model.get_score(i)) for i in range(model.get_piece_size())]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=128)


# ---------------------------------------------------------------------------------------------
# Components shared by the three pipelines (AudioLDM's real geometry: 64 mel bins, hop 160,
# 16 kHz, VAE scale 4; small widths).
# ---------------------------------------------------------------------------------------------
def vocoder():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(SpeechT5HifiGanConfig(**arch.tiny("vocoder", initializer_range=VOCODER_INIT)))


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**arch.tiny("vae"))


def ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**arch.tiny("scheduler"))


def clap_text_config(projection_dim: int | None = None):
    from transformers import ClapTextConfig

    extra = {} if projection_dim is None else {"projection_dim": projection_dim}
    return ClapTextConfig(**arch.tiny("clap_text", vocab_size=len(bpe_vocab()), **extra))


def clap_model():
    """CLAP with text and audio towers (MusicLDM's and AudioLDM2's ``text_encoder``)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel

    audio = ClapAudioConfig(**arch.tiny("clap_audio"))
    config = ClapConfig(
        text_config=clap_text_config(None).to_dict(), audio_config=audio.to_dict(), projection_dim=CLAP_DIM
    )
    return ClapModel(config)


def clap_feature_extractor():
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(**arch.tiny("clap_features"))


def unet_audioldm():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**arch.tiny("unet", projection_class_embeddings_input_dim=CLAP_DIM))


# ---------------------------------------------------------------------------------------------
# The three pipelines.
# ---------------------------------------------------------------------------------------------
def build_audioldm(workdir: Path):
    from diffusers import AudioLDMPipeline
    from transformers import ClapTextModelWithProjection

    return AudioLDMPipeline(
        vae=vae(),
        text_encoder=ClapTextModelWithProjection(clap_text_config(CLAP_DIM)),
        tokenizer=roberta_tokenizer(512),
        unet=unet_audioldm(),
        scheduler=ddim(),
        vocoder=vocoder(),
    )


def build_musicldm(workdir: Path):
    from diffusers import MusicLDMPipeline

    return MusicLDMPipeline(
        vae=vae(),
        text_encoder=clap_model(),
        tokenizer=roberta_tokenizer(512),
        feature_extractor=clap_feature_extractor(),
        unet=unet_audioldm(),
        scheduler=ddim(),
        vocoder=vocoder(),
    )


def build_audioldm2(workdir: Path):
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import GPT2Config, GPT2Model, T5Config, T5EncoderModel

    tokenizer_2 = t5_tokenizer(sentencepiece_model(workdir))
    text_encoder_2 = T5EncoderModel(T5Config(**arch.tiny("t5", vocab_size=len(tokenizer_2))))
    language_model = GPT2Model(GPT2Config(**arch.tiny("gpt2")))
    unet = AudioLDM2UNet2DConditionModel(**arch.tiny("audioldm2_unet"))
    return AudioLDM2Pipeline(
        vae=vae(),
        text_encoder=clap_model(),
        text_encoder_2=text_encoder_2,
        projection_model=AudioLDM2ProjectionModel(
            **arch.tiny("audioldm2_projection", text_encoder_dim=CLAP_DIM)
        ),
        language_model=language_model,
        tokenizer=roberta_tokenizer(512),
        tokenizer_2=tokenizer_2,
        feature_extractor=clap_feature_extractor(),
        unet=unet,
        scheduler=ddim(),
        vocoder=vocoder(),
    )


BUILDERS = {"audioldm": build_audioldm, "musicldm": build_musicldm, "audioldm2": build_audioldm2}


# ---------------------------------------------------------------------------------------------
# A writer: Qwen2 (causal LM) in transformers format, as Qwen/Qwen2-0.5B-Instruct is published.
# ---------------------------------------------------------------------------------------------
WRITER_INSTRUCTION = (
    "Given the scene description in the following paragraph, please create a musical style sentence "
    "that fits the scene. Description: The image shows a crowded nightclub with people dancing."
)
WRITER_SYSTEM = "You write short music prompts."  # what mgtoolkit.models.writers sends
# Qwen2-Instruct's chat template, as its tokenizer_config.json on the hub carries it.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
WRITER_NEW_TOKENS = 16


def qwen2_vocab() -> dict[str, int]:
    """Byte symbols, the merges, then Qwen2's special tokens (as in its vocab.json + added tokens)."""
    return arch.bpe_vocab((), BPE_MERGES, (), byte_order=True)


def write_qwen2_tokenizer(folder: Path) -> None:
    """vocab.json, merges.txt and a hub-style tokenizer_config.json (template inside, added tokens)."""
    vocab = qwen2_vocab()
    arch.write_bpe_files(folder, vocab, BPE_MERGES)
    added = {
        str(len(vocab) + i): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, tok in enumerate(QWEN2_SPECIALS)
    }
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(QWEN2_SPECIALS[1:]),
        "bos_token": None,
        "chat_template": QWEN2_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "chat_template.jinja").unlink(missing_ok=True)


def build_qwen2(folder: Path):
    """A small random Qwen2ForCausalLM (tied embeddings, grouped KV heads) and its tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    write_qwen2_tokenizer(folder)
    tokenizer = Qwen2Tokenizer.from_pretrained(str(folder))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        **arch.tiny("qwen2"),
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},  # Qwen2's real theta
        initializer_range=0.2,  # sharper logits than the default 0.02: greedy picks far from ties
    )
    return Qwen2ForCausalLM(config).eval(), tokenizer


def make_writer(workdir: Path) -> dict:
    """Save the writer (safetensors; a ``.bin`` copy) and record diffusers-side facts to compare."""
    model, _ = build_qwen2(workdir / "qwen2")
    for target, bin_copy in ((workdir / "qwen2", False), (workdir / "qwen2-bin", True)):
        model.save_pretrained(str(target))
        hub_style_config(target / "config.json")
        write_qwen2_tokenizer(target)
        (target / "tokenizer.json").unlink(missing_ok=True)  # as written by transformers 5: stale
        if bin_copy:
            bin_instead_of_safetensors(target, pattern="model.safetensors")
    return run_writer(workdir / "qwen2")


# ---------------------------------------------------------------------------------------------
# A captioner: BLIP-2 with an OPT language model, as Salesforce/blip2-opt-2.7b is published.
# ---------------------------------------------------------------------------------------------
CAPTION_NEW_TOKENS = 12
QUERY_TOKENS = 8


def opt_vocab() -> dict[str, int]:
    """OPT's layout: ``<s> <pad> </s> <unk>``, the byte symbols, the merges, then ``<image>``."""
    return arch.bpe_vocab(merges=BPE_MERGES, trailing=(), byte_order=True)


def caption_image(folder: Path):
    """A fixed 32 x 32 RGB picture (smooth colours plus noise), saved as PNG."""
    from PIL import Image

    y, x = np.mgrid[0:32, 0:32] / 31.0
    rgb = np.stack([x, y, 1.0 - x * y], axis=-1) * 200 + np.random.default_rng(7).uniform(0, 55, (32, 32, 3))
    image = Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    image.save(folder / "blip2.png")
    return image


def build_blip2():
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        GPT2Tokenizer,
        OPTConfig,
    )

    tokenizer = GPT2Tokenizer(
        vocab=opt_vocab(),
        merges=list(BPE_MERGES),
        bos_token="</s>",
        eos_token="</s>",
        unk_token="</s>",
        pad_token="<pad>",
        add_bos_token=True,
    )
    processor = Blip2Processor(
        BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=QUERY_TOKENS
    )
    vision = Blip2VisionConfig(**arch.tiny("vision"))
    qformer = Blip2QFormerConfig(**arch.tiny("qformer", encoder_hidden_size=32))
    text = OPTConfig(
        vocab_size=len(tokenizer),
        **arch.tiny("opt"),
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Blip2ForConditionalGeneration(config).eval()
    # At the default scales (0.02, zero query tokens) the caption is one token repeated: widen them.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0.0, 0.5)
        model.query_tokens.normal_(0.0, 1.0)
    return model, processor


def write_hub_processor_files(folder: Path) -> None:
    """What the hub repo has beside transformers 5's files: vocab.json, merges.txt,
    added_tokens.json and preprocessor_config.json (the image processor on its own)."""
    vocab = opt_vocab()
    arch.write_bpe_files(folder, vocab, BPE_MERGES)
    (folder / "added_tokens.json").write_text(json.dumps({"<image>": len(vocab)}), encoding="utf-8")
    processor = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    image = {**processor["image_processor"], "processor_class": "Blip2Processor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=2), encoding="utf-8")


def make_captioner(workdir: Path) -> dict:
    """Save BLIP-2 (safetensors; a ``.bin`` copy) and record transformers' caption and logits."""
    model, processor = build_blip2()
    for target, bin_copy in ((workdir / "blip2", False), (workdir / "blip2-bin", True)):
        model.save_pretrained(str(target))
        processor.save_pretrained(str(target))
        write_hub_processor_files(target)
        if bin_copy:
            bin_instead_of_safetensors(target, pattern="model.safetensors")
    return run_captioner(workdir / "blip2", caption_image(workdir))


def run_captioner(folder: Path, image) -> dict:
    """Reload ``folder`` with transformers: pixel values, greedy caption, logits along it."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    processor = Blip2Processor.from_pretrained(str(folder))
    model = Blip2ForConditionalGeneration.from_pretrained(str(folder)).eval()
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    tok = processor.tokenizer
    with torch.no_grad():
        out = model.generate(
            pixel_values=pixel_values,
            max_new_tokens=CAPTION_NEW_TOKENS,
            min_new_tokens=2,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        new = out[0, QUERY_TOKENS + 1 :]  # after the image tokens and BOS that generate() starts from
        text_ids = [model.config.text_config.bos_token_id, *new.tolist()]
        ids = torch.tensor([[model.config.image_token_index] * QUERY_TOKENS + text_ids])
        logits = model(pixel_values=pixel_values, input_ids=ids).logits[0, QUERY_TOKENS:].numpy()
    caption = tok.decode(new.tolist(), skip_special_tokens=True)
    log(f"blip2: generate gave {out.shape[1]} ids, caption ids {new.tolist()}")
    return {
        "pixel_values": pixel_values.numpy(),
        "text_ids": np.asarray(text_ids),
        "logits": logits,
        "caption": caption,
    }


def hub_style_config(path: Path) -> None:
    """The hub's Qwen2 config.json (written by transformers 4) has ``rope_theta``, not ``rope_parameters``."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
    config.pop("layer_types", None)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def run_writer(folder: Path) -> dict:
    """Reload ``folder`` with transformers: chat text, its ids, logits, greedy answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    messages = [{"role": "system", "content": WRITER_SYSTEM}, {"role": "user", "content": WRITER_INSTRUCTION}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0].numpy()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=WRITER_NEW_TOKENS,
            min_new_tokens=2,
            do_sample=False,
            eos_token_id=model.config.eos_token_id,
            pad_token_id=model.config.pad_token_id,
        )
    new = out[0, ids.shape[1] :].numpy()
    answer = tokenizer.decode(new.tolist(), skip_special_tokens=True)
    log(f"qwen2: {ids.shape[1]} prompt tokens, answer {new.tolist()}")
    return {
        "chat_text": text,
        "input_ids": ids[0].numpy(),
        "logits": logits,
        "new_ids": new,
        "answer": answer,
    }


# ---------------------------------------------------------------------------------------------
# Shims: diffusers 0.42.1's deprecated pipelines against transformers 5 (run-time only; the
# saved files are untouched).
# ---------------------------------------------------------------------------------------------
def apply_shims(pipe) -> None:
    name = type(pipe).__name__
    if name == "MusicLDMPipeline":
        encoder = pipe.text_encoder
        original = encoder.get_text_features

        def text_features(*args, **kwargs):  # transformers 5 returns an output object
            out = original(*args, **kwargs)
            return getattr(out, "pooler_output", out)

        encoder.get_text_features = text_features
    if name == "AudioLDM2Pipeline" and not hasattr(
        pipe.language_model, "_update_model_kwargs_for_generation"
    ):
        pipe.generate_language_model = lambda *a, **k: generate_without_cache(pipe, *a, **k)


def generate_without_cache(pipe, inputs_embeds, max_new_tokens=None, attention_mask=None, **_):
    """AudioLDM2's GPT-2 loop with no KV cache (GPT2Model lost its generation helpers)."""
    if max_new_tokens is None:
        max_new_tokens = pipe.language_model.config.max_new_tokens
    for _ in range(max_new_tokens):
        out = pipe.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
        )
        inputs_embeds = torch.cat([inputs_embeds, out.hidden_states[-1][:, -1:, :]], dim=1)
        if attention_mask is not None:
            attention_mask = torch.cat(
                [attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], 1
            )
    return inputs_embeds[:, -max_new_tokens:, :]


# ---------------------------------------------------------------------------------------------
# Saving and running.
# ---------------------------------------------------------------------------------------------
def save_both(pipe, folder: Path) -> None:
    """``folder`` with safetensors, ``folder-bin`` with ``.bin`` files; tokenizer files as on the hub."""
    for target, safe in ((folder, True), (folder.with_name(folder.name + "-bin"), False)):
        if target.exists():
            shutil.rmtree(target)
        pipe.save_pretrained(str(target), safe_serialization=safe)
        if not safe:
            bin_instead_of_safetensors(target)
        write_bpe_files(target / "tokenizer")
        if (target / "tokenizer_2").is_dir():
            shutil.copy(folder.parent / "spiece.model", target / "tokenizer_2" / "spiece.model")


def bin_instead_of_safetensors(folder: Path, pattern: str = "*/model.safetensors") -> None:
    """transformers 5 writes safetensors whatever it is asked: write ``pytorch_model.bin`` instead."""
    from safetensors.torch import load_file

    for weights in folder.glob(pattern):
        torch.save(load_file(str(weights)), weights.with_name("pytorch_model.bin"))
        weights.unlink()


def starting_latents(pipe, audio_length_in_s: float, seed: int) -> np.ndarray:
    """What ``mgtoolkit.models.audioldm.initial_latents(latent_shape(...), [seed])`` gives."""
    rate = pipe.vocoder.config.sampling_rate
    hop = int(np.prod(pipe.vocoder.config.upsample_rates))
    scale = pipe.vae_scale_factor
    height = int(audio_length_in_s * rate / hop)
    height = int(np.ceil(height / scale)) * scale
    shape = (pipe.unet.config.in_channels, height // scale, pipe.vocoder.config.model_in_dim // scale)
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)[None]


def run_reference(name: str, folder: Path) -> dict:
    """Load ``folder`` with diffusers and make one waveform; returns the arrays to keep."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder))
    apply_shims(pipe)
    pipe.set_progress_bar_config(disable=True)
    rate = pipe.vocoder.config.sampling_rate
    # mgtoolkit asks for half a sample more so that the cut lands on round(seconds * rate).
    seconds = (round(CALL["audio_length_in_s"] * rate) + 0.5) / rate
    latents = starting_latents(pipe, seconds, CALL["seed"])
    t0 = time.perf_counter()
    with torch.no_grad():
        out = pipe(
            prompt=PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            audio_length_in_s=seconds,
            num_inference_steps=CALL["num_inference_steps"],
            guidance_scale=CALL["guidance_scale"],
            num_waveforms_per_prompt=1,
            latents=torch.from_numpy(latents),
            output_type="np",
        )
    wave = np.asarray(out.audios, dtype=np.float32).reshape(-1)
    log(f"{name}: {wave.size} samples, peak {np.abs(wave).max():.3g}, {time.perf_counter() - t0:.1f} s")
    return {"waveform": wave, "latents": latents, "sample_rate": np.int64(rate)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="work folder (created)")
    parser.add_argument(
        "--only", default=",".join([*BUILDERS, "qwen2", "blip2"]), help="comma-separated models"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    manifest = {"call": {"prompt": PROMPT, "negative_prompt": NEGATIVE_PROMPT, **CALL}, "pipelines": {}}
    for index, name in enumerate(args.only.split(",")):
        t0 = time.perf_counter()
        torch.manual_seed(index)
        if name == "blip2":
            facts = make_captioner(args.out)
            caption = facts.pop("caption")
            np.savez(args.out / "blip2.npz", **facts)
            manifest["captioners"] = {
                "blip2": {
                    "caption": caption,
                    "image": "blip2.png",
                    "max_new_tokens": CAPTION_NEW_TOKENS,
                    "folders": ["blip2", "blip2-bin"],
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            }
            continue
        if name == "qwen2":
            facts = make_writer(args.out)
            text = {k: facts.pop(k) for k in ("chat_text", "answer")}
            np.savez(args.out / "qwen2.npz", **facts)
            manifest["writers"] = {
                "qwen2": {
                    **text,
                    "instruction": WRITER_INSTRUCTION,
                    "max_new_tokens": WRITER_NEW_TOKENS,
                    "folders": ["qwen2", "qwen2-bin"],
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            }
            continue
        pipe = BUILDERS[name](args.out)
        folder = args.out / name
        save_both(pipe, folder)
        arrays = run_reference(name, folder)
        np.savez(args.out / f"{name}.npz", **arrays)
        manifest["pipelines"][name] = {
            "pipeline": type(pipe).__name__,
            "folders": [name, f"{name}-bin"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
    import diffusers
    import transformers

    manifest["versions"] = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
