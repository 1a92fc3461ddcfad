#!/usr/bin/env python
"""The torch reference for the speed benchmarks: torch + diffusers' ``AudioLDMPipeline`` on the CPU.

Runs in a torch venv, never the paddle one (``make parity-venv`` builds ``build/parity-venv`` with
the pinned torch, diffusers and transformers; :mod:`compare_torch` uses it by default). mgtoolkit is
not imported: the component configs come from ``mgtoolkit/models/architectures.py``, loaded by its
path, so the torch model is the twin of the one ``benchmarks/fullsize.py`` builds with paddle (the
full-size ``cvssp/audioldm-s-full-v2`` architecture with random weights: speed does not depend on
weight values). The tokenizer is the same small byte-level BPE, written into a temporary folder;
prompts are padded to ``--max-length`` as the pipeline does.

Usage::

    build/parity-venv/bin/python benchmarks/torch_reference.py --steps 20 --seconds 5 \\
        --skip-components --json-out torch.json

It prints per-stage and whole-call timings (stdout) and, with ``--json-out``, writes them as JSON
(``pipeline.median_s`` is what :mod:`compare_torch` reads). Each timed run records how many cores
other processes used meanwhile (``others_cores``): only runs with it near 0 are comparable.
``--preset tiny`` builds the tiny geometry instead, for a quick check that the script runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

for _name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
    os.environ.setdefault(_name, "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Techno music with a strong, upbeat tempo and high melodic riffs"
NEGATIVE = "low quality, average quality"


def _architectures():
    """``mgtoolkit/models/architectures.py`` (standard library only), loaded by its path."""
    spec = importlib.util.spec_from_file_location(
        "mgtoolkit_architectures", REPO / "mgtoolkit" / "models" / "architectures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _architectures()


def log(*parts) -> None:
    print(*parts, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--guidance", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3, help="timed whole-pipeline calls (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed whole-pipeline calls first")
    ap.add_argument("--component-runs", type=int, default=3)
    ap.add_argument(
        "--max-length", type=int, default=512, help="tokenizer.model_max_length (prompts are padded to it)"
    )
    ap.add_argument("--scheduler", choices=["ddim", "pndm"], default="ddim")
    ap.add_argument("--preset", default="audioldm-s-full-v2", help="a full-size preset, or 'tiny'")
    ap.add_argument("--skip-components", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--json-out", type=Path)
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# The pipeline.
# ---------------------------------------------------------------------------------------------
def configs(preset: str) -> dict[str, dict]:
    """Component configs (``unet``, ``vae``, ``text``, ``vocoder``, ``scheduler``) of ``preset``."""
    if preset != "tiny":
        return arch.full_size(preset)
    vocab_size = len(arch.bpe_vocab())
    return {
        "unet": arch.tiny("unet"),
        "vae": arch.tiny("vae"),
        "text": arch.tiny("clap_text", vocab_size=vocab_size, projection_dim=32),
        "vocoder": arch.tiny("vocoder"),
        "scheduler": arch.tiny("scheduler"),
    }


def tokenizer(max_length: int):
    """The small byte-level BPE of the paddle side, read back by transformers."""
    from transformers import RobertaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        arch.write_bpe_tokenizer_files(Path(tmp))
        return RobertaTokenizer.from_pretrained(tmp, model_max_length=max_length)


def build(args: argparse.Namespace, cfg: dict[str, dict]):
    """The pipeline with random weights, every model in eval mode."""
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
    from transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    torch.manual_seed(1234)
    scheduler = DDIMScheduler(**cfg["scheduler"])
    if args.scheduler == "pndm":
        scheduler = PNDMScheduler.from_config({**scheduler.config, "skip_prk_steps": True})
    pipe = AudioLDMPipeline(
        vae=AutoencoderKL(**cfg["vae"]).eval(),
        text_encoder=ClapTextModelWithProjection(ClapTextConfig(**cfg["text"])).eval(),
        tokenizer=tokenizer(args.max_length),
        unet=UNet2DConditionModel(**cfg["unet"]).eval(),
        scheduler=scheduler,
        vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"])).eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parameter_counts(pipe) -> dict[str, int]:
    def count(*modules) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    counts = {
        "text_encoder": count(pipe.text_encoder),
        "unet": count(pipe.unet),
        "vae": count(pipe.vae),
        "vae_decoder_only(post_quant_conv+decoder)": count(pipe.vae.decoder, pipe.vae.post_quant_conv),
        "vocoder": count(pipe.vocoder),
    }
    counts["total"] = counts["text_encoder"] + counts["unet"] + counts["vae"] + counts["vocoder"]
    return counts


def latent_shape(pipe, seconds: float) -> tuple[int, ...]:
    """One sample's latent shape, as ``AudioLDMPipeline.__call__`` computes it."""
    hop_s = np.prod(pipe.vocoder.config.upsample_rates) / pipe.vocoder.config.sampling_rate
    scale = pipe.vae_scale_factor
    height = int(np.ceil(int(seconds / hop_s) / scale)) * scale
    return (1, pipe.unet.config.in_channels, height // scale, pipe.vocoder.config.model_in_dim // scale)


# ---------------------------------------------------------------------------------------------
# Timing, with what the rest of the machine did meanwhile.
# ---------------------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_sample() -> tuple[float, int, int, int]:
    """(wall clock, machine busy ticks without steal, steal ticks, this process's user+system ticks)."""
    with open("/proc/stat", encoding="ascii") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in fh.readline().split()[1:])
    with open("/proc/self/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])
    return time.perf_counter(), user + nice + system + irq + softirq, rest[0] if rest else 0, own


def cpu_use(before: tuple, after: tuple) -> dict[str, float]:
    """Wall seconds, and the cores this process, other processes and the hypervisor (steal) used."""
    wall = after[0] - before[0]
    ticks = wall * TICKS
    own = after[3] - before[3]
    return {
        "wall_s": wall,
        "self_cores": own / ticks,
        "others_cores": max(0.0, (after[1] - before[1]) - own) / ticks,
        "steal_cores": (after[2] - before[2]) / ticks,
    }


def timed(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[dict[str, float]]:
    """``fn`` run ``warmup`` times untimed, then ``runs`` times, each with its :func:`cpu_use`."""
    for _ in range(warmup):
        fn()
    uses = []
    for _ in range(runs):
        before = cpu_sample()
        fn()
        uses.append(cpu_use(before, cpu_sample()))
    return uses


def summary(name: str, uses: list[dict[str, float]]) -> list[float]:
    walls = [u["wall_s"] for u in uses]
    others = [round(u["others_cores"], 2) for u in uses]
    log(
        f"{name}: median {statistics.median(walls):.3f} s, all {[round(w, 3) for w in walls]}, others_cores {others}"
    )
    return walls


def components(pipe, args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Each stage alone: text encoding (prompt + negative), one UNet step at batch 2, VAE decode, vocoder."""
    device = torch.device("cpu")
    shape = latent_shape(pipe, args.seconds)
    times, contention = {}, {}

    def stage(name: str, fn: Callable[[], object]) -> None:
        contention[name] = timed(fn, args.component_runs)
        times[name] = summary(name, contention[name])

    with torch.inference_mode():
        embeds = pipe._encode_prompt(PROMPT, device, 1, True, NEGATIVE)
        stage("text_encode_prompt+negative", lambda: pipe._encode_prompt(PROMPT, device, 1, True, NEGATIVE))
        for length in sorted({77, args.max_length}):
            ids = pipe.tokenizer(
                [PROMPT], padding="max_length", max_length=length, truncation=True, return_tensors="pt"
            )
            stage(
                f"text_encoder_fwd_b1_len{length}",
                lambda ids=ids: pipe.text_encoder(ids.input_ids, attention_mask=ids.attention_mask),
            )
        latents = torch.randn((2, *shape[1:]), generator=torch.Generator().manual_seed(0))
        step = torch.tensor(981)
        stage(
            "unet_fwd_b2", lambda: pipe.unet(latents, step, encoder_hidden_states=None, class_labels=embeds)
        )
        one = latents[:1].clone()
        stage("vae_decode", lambda: pipe.decode_latents(one))
        mel = pipe.decode_latents(one)
        stage("vocoder", lambda: pipe.mel_spectrogram_to_waveform(mel))
    return times, contention


def whole_calls(pipe, args: argparse.Namespace) -> dict:
    """``--warmup`` then ``--runs`` seeded calls; the median and whether the runs agree."""

    def call():
        generator = torch.Generator("cpu").manual_seed(args.seed)
        with torch.inference_mode():
            return pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                audio_length_in_s=args.seconds,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                generator=generator,
            ).audios

    warm = []
    for _ in range(args.warmup):
        start = time.perf_counter()
        call()
        warm.append(time.perf_counter() - start)
    audios, uses = [], []
    for index in range(args.runs):
        before = cpu_sample()
        audios.append(call())
        uses.append(cpu_use(before, cpu_sample()))
        log(f"  call {index + 1}: {uses[-1]['wall_s']:.2f} s, others_cores {uses[-1]['others_cores']:.2f}")
    walls = [u["wall_s"] for u in uses]
    last = audios[-1]
    return {
        "warmup_s": warm,
        "runs_s": walls,
        "median_s": statistics.median(walls),
        "audio_shape": list(last.shape),
        "finite": bool(np.isfinite(last).all()),
        "identical_across_runs": all(np.array_equal(audios[0], a) for a in audios[1:]),
        "contention": uses,
    }


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.runs < 1:
        raise SystemExit(f"--runs={args.runs}: give at least 1 timed call")
    import diffusers
    import transformers

    result: dict = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    log(f"torch {torch.__version__}, diffusers {diffusers.__version__}, {torch.get_num_threads()} threads")
    cfg = configs(args.preset)
    start = time.perf_counter()
    pipe = build(args, cfg)
    result["build_s"] = time.perf_counter() - start
    result["configs"] = {
        **cfg,
        "scheduler_class": type(pipe.scheduler).__name__,
        "tokenizer": {"vocab_size": len(pipe.tokenizer), "model_max_length": pipe.tokenizer.model_max_length},
    }
    result["params"] = parameter_counts(pipe)
    log(f"built in {result['build_s']:.1f} s; parameters {result['params']}")
    result["prompt_tokens_unpadded"] = len(pipe.tokenizer(PROMPT).input_ids)
    shape = latent_shape(pipe, args.seconds)
    result["latent_shape_per_sample"] = list(shape)
    result["mel_height"] = shape[2] * pipe.vae_scale_factor
    if not args.skip_components:
        result["components_s"], result["components_contention"] = components(pipe, args)
    if not args.skip_pipeline:
        result["pipeline"] = whole_calls(pipe, args)
        log(f"PIPELINE {args.steps} steps, {args.seconds} s: median {result['pipeline']['median_s']:.2f} s")
    result["rss_peak_mib_self"] = rss_peak_mib()
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
