"""Command line: ``python -m mgtoolkit generate|batch|models|fetch``.

A thin shell over :func:`mgtoolkit.core.generate_clips`: parse, validate, generate, save, report.
Bad input exits with status 2 and one line on stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .analysis import conform
from .errors import InvalidInputError, MgtoolkitError
from .io.audio import ensure_writable_dir
from .models.registry import PRESETS, default_model, resolve_model
from .tasks.text import generate_clips, validate_request
from .types import GenerationRequest

__all__ = ["main"]

TINY_NOTE = (
    "note: model 'tiny' has random weights, so this clip is noise: it only shows the setup works. "
    "Use a real model (the default, audioldm-s-full-v2) for music."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgtoolkit", description="Make music with AudioLDM on PaddlePaddle."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="one prompt -> WAV files (+ JSON sidecars)")
    gen.add_argument("prompt")
    gen.add_argument("--loop", action="store_true", help="a seamless loop (the WAV gets smpl loop points)")
    gen.add_argument(
        "--extend",
        type=Path,
        default=None,
        metavar="FILE",
        help="continue this audio file by --seconds under the prompt (the file's part is kept as it is)",
    )
    gen.add_argument("--bpm", type=float, default=None, help="stretch to exactly this tempo (40-240)")
    gen.add_argument(
        "--bars", type=int, default=None, help="cut exactly this many bars from a downbeat (1-64)"
    )
    gen.add_argument("--beats-per-bar", type=int, default=4, help="beats in a bar (1-12; default 4)")
    gen.add_argument("--key", default=None, help='shift to this key: "A minor", "Am", "F#", "Gb major"')
    gen.add_argument(
        "--midi", action="store_true", help="also write the notes as a .mid file (the midi extra)"
    )
    batch = sub.add_parser("batch", help="a file of prompts (one per line, or CSV with parameter columns)")
    batch.add_argument("file", type=Path)
    batch.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Ray actors: a cluster's address (e.g. auto, ray://head:10001), or none for a local Ray",
    )
    batch.add_argument("--actors", type=int, default=None, help="Ray actors (default: one per GPU or node)")
    for p in (gen, batch):
        p.add_argument("--negative-prompt", default=None)
        p.add_argument(
            "--seconds",
            type=float,
            default=5.0,
            help="audio_length_in_s (default 5; beyond 10 s made window by window, up to 300 s); "
            "with --extend: seconds to add",
        )
        p.add_argument("--steps", type=int, default=20, help="num_inference_steps (default 20)")
        p.add_argument("--guidance", type=float, default=2.5, help="guidance_scale (default 2.5)")
        p.add_argument(
            "--seed",
            type=int,
            default=None if p is gen else 0,
            help="seed of the first candidate (generate: random; batch: 0)",
        )
        p.add_argument("--n", type=int, default=1, help="num_waveforms_per_prompt (default 1)")
        p.add_argument("--model", default=None, help=f"preset, hub id or folder (default {default_model()})")
        p.add_argument("--scheduler", default=None, help="sampler, e.g. ddim or dpm++ (default: the model's)")
        p.add_argument("--device", default=None, help="auto, cpu or gpu")
        p.add_argument(
            "--out",
            type=Path if p is gen else str,  # batch: also a URL (s3://...), which Path would mangle
            default=Path("outputs"),
            help="output folder (default outputs/)" + ("" if p is gen else "; or any fsspec/pyarrow URL"),
        )
    sub.add_parser("models", help="list the model presets: here or not, size on disk")
    fetch = sub.add_parser("fetch", help="download a model to carry to an offline machine")
    fetch.add_argument("model", help="preset or hub id, e.g. audioldm-s-full-v2")
    fetch.add_argument(
        "--to", type=Path, default=None, help="folder to download into (default: the HF cache)"
    )
    fetch.add_argument(
        "--with-chain", action="store_true", help="also the image chain's captioner and writer"
    )
    return parser


def _base_request(args: argparse.Namespace, prompt: str) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=args.negative_prompt,
        audio_length_in_s=args.seconds,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        num_waveforms_per_prompt=args.n,
        model=args.model,
        scheduler=args.scheduler,
    )


def _note_if_tiny(request: GenerationRequest, err: TextIO) -> None:
    if resolve_model(request.model).is_tiny:
        print(TINY_NOTE, file=err)


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.extend is not None:
        return cmd_extend(args, out, err)
    request = validate_request(_base_request(args, args.prompt))
    if args.midi:  # the transcriber is there before anything is made
        from .io import midi

        midi.model_path()
    grid = conform.check_grid(
        bpm=args.bpm, bars=args.bars, beats_per_bar=args.beats_per_bar, key=args.key, loop=args.loop
    )
    folder = ensure_writable_dir(args.out, "--out")
    _note_if_tiny(request, err)
    if grid is None:
        clips = generate_clips(request, device=args.device, loop=args.loop)
    else:  # generated with a margin, then stretched, cut and shifted (see mgtoolkit.conform)
        grid, length = conform.generation_length(grid, request.audio_length_in_s, 5.0)
        made = generate_clips(request.replace(audio_length_in_s=length), device=args.device)
        clips = [conform.conform_clip(c, grid) for c in made]
    # Written and listed in seed order; each sidecar records its CLAP score and rank.
    for clip in sorted(clips, key=lambda c: c.seed):
        wav = clip.save(folder)
        print(wav, file=out)
        if args.midi:
            print(clip.to_midi(_free_midi(wav)), file=out)
    return 0


def _free_midi(wav: Path) -> Path:
    """``<stem>.mid`` beside the WAV; ``-1``, ``-2``, ... if taken (never overwrite)."""
    path, k = wav.with_suffix(".mid"), 0
    while path.exists():
        k += 1
        path = wav.with_name(f"{wav.stem}-{k}.mid")
    return path


def cmd_extend(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``generate PROMPT --extend FILE``: the file followed by ``--seconds`` of its continuation."""
    from .tasks.extend import extend

    if args.n != 1:
        raise InvalidInputError("--n", args.n, "must be 1 with --extend", "leave --n out")
    if not args.extend.is_file():
        raise InvalidInputError("--extend", str(args.extend), "is not an existing file", "pass an audio file")
    request = validate_request(_base_request(args, args.prompt).replace(audio_length_in_s=1.0))
    folder = ensure_writable_dir(args.out, "--out")
    _note_if_tiny(request, err)
    clip = extend(
        args.extend,
        args.seconds,
        request.prompt,
        negative_prompt=request.negative_prompt,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        seed=request.seed,
        model=request.model,
        scheduler=request.scheduler,
        device=args.device,
        loop=args.loop,
    )
    print(clip.save(folder), file=out)
    return 0


def cmd_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .batching import batch

    base = validate_request(_base_request(args, "placeholder"))
    folder = args.out if "://" in str(args.out) else ensure_writable_dir(args.out, "--out")
    if args.actors is not None and args.actors < 1:
        raise InvalidInputError("--actors", args.actors, "must be at least 1", "pass e.g. --actors 2")
    summary = batch(
        args.file,
        out=folder,
        engine="local" if args.ray is None else "ray",
        address=args.ray or None,
        actors=args.actors,
        device=args.device,
        progress=err,
        echo=out,
        **{f: getattr(base, f) for f in _DEFAULTS},
    )
    print(summary, file=err)
    return 1 if summary.failed else 0


_DEFAULTS = (
    "negative_prompt",
    "audio_length_in_s",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "num_waveforms_per_prompt",
    "model",
    "scheduler",
)


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .models.weights import presence

    for name, spec in PRESETS.items():
        size = f"{spec.size_gb:g} GB" if spec.size_gb else "built locally"
        if spec.is_tiny:
            here = "built on first use"
        else:
            folder, used = presence(spec.source)
            here = f"here, {used / 1e9:.2f} GB on disk" if folder else "not here"
        print(f"{name:20s} {spec.source:28s} {size:>14s}  {here:26s} {spec.description}", file=out)
    return 0


def cmd_fetch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .models.captioners import resolve_captioner
    from .models.weights import fetch
    from .models.writers import resolve_writer
    from .tasks.image import default_captioner, default_writer

    also = []
    if args.with_chain:
        also = [
            ("captioner", resolve_captioner(default_captioner(args.model))),
            ("writer", resolve_writer(default_writer(args.model))),
        ]
    for got in fetch(args.model, to=args.to, also=also):
        print(f"{got.field}: {got.name} -> {got.folder}", file=out)
        print(f"  use: {got.field}={str(got.folder)!r}", file=err)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    command = {"generate": cmd_generate, "batch": cmd_batch, "models": cmd_models, "fetch": cmd_fetch}[
        args.command
    ]
    try:
        return command(args, out, err)
    except InvalidInputError as exc:
        print(f"mgtoolkit: error: {exc}", file=err)
        return 2
    except MgtoolkitError as exc:
        print(f"mgtoolkit: error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("mgtoolkit: interrupted; no partial file was left", file=err)
        return 130
