"""Command line: ``python -m mgtoolkit generate|batch|models``.

A thin shell over :func:`mgtoolkit.core.generate_clips`: parse, validate, generate, save, report.
Bad input exits with status 2 and one line on stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TextIO

from .errors import InvalidInputError, MgtoolkitError
from .io.audio import ensure_writable_dir, safe_stem
from .models.registry import PRESETS, default_model, resolve_model
from .tasks.text import generate_clips, validate_request
from .types import GenerationRequest

__all__ = ["main", "read_batch"]

TINY_NOTE = (
    "note: model 'tiny' has random weights, so this clip is noise: it only shows the setup works. "
    "Use a real model (the default, audioldm-s-full-v2) for music."
)
# CSV column aliases (the CLI's option names) -> GenerationRequest fields
_ALIASES = {
    "seconds": "audio_length_in_s",
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "n": "num_waveforms_per_prompt",
    "negative": "negative_prompt",
}
_NUMBER_FIELDS = {
    "audio_length_in_s": float,
    "guidance_scale": float,
    "num_inference_steps": int,
    "seed": int,
    "num_waveforms_per_prompt": int,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgtoolkit", description="Make music with AudioLDM on PaddlePaddle."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="one prompt -> WAV files (+ JSON sidecars)")
    gen.add_argument("prompt")
    batch = sub.add_parser("batch", help="a file of prompts (one per line, or CSV with parameter columns)")
    batch.add_argument("file", type=Path)
    for p in (gen, batch):
        p.add_argument("--negative-prompt", default=None)
        p.add_argument("--seconds", type=float, default=5.0, help="audio_length_in_s (default 5)")
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
        p.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default outputs/)")
    sub.add_parser("models", help="list the model presets")
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
    request = validate_request(_base_request(args, args.prompt))
    folder = ensure_writable_dir(args.out, "--out")
    _note_if_tiny(request, err)
    for clip in generate_clips(request, device=args.device):
        print(clip.save(folder), file=out)
    return 0


def read_batch(path: Path, base: GenerationRequest) -> Iterator[tuple[int, GenerationRequest | Exception]]:
    """Yield ``(line_number, request or the error for that line)`` from a prompts file.

    A ``.csv`` file has a header naming request fields (or the CLI's option names); any other file
    has one prompt per line, with blank lines and ``#`` comments skipped.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "file", str(path), f"cannot be read ({exc})", "pass a UTF-8 text or CSV file"
        ) from None
    if path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        for number, row in enumerate(rows, start=2):
            yield number, _row_request(row, base)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, base.replace(prompt=line.strip())


def _row_request(row: dict, base: GenerationRequest) -> GenerationRequest | Exception:
    names = {f.name for f in fields(GenerationRequest)}
    changes = {}
    for key, value in row.items():
        name = _ALIASES.get((key or "").strip(), (key or "").strip())
        if name not in names:
            return InvalidInputError("column", key, "is not a parameter", f"use {', '.join(sorted(names))}")
        if value is None or value.strip() == "":
            continue
        try:
            changes[name] = _NUMBER_FIELDS.get(name, str)(value.strip())
        except ValueError:
            return InvalidInputError(name, value, "is not a number", "fix that cell")
    return base.replace(**changes)


def cmd_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    base = validate_request(_base_request(args, "placeholder"))
    folder = ensure_writable_dir(args.out, "--out")
    jobs = list(read_batch(args.file, base.replace(prompt="")))
    made = skipped = 0
    failed: list[str] = []
    for number, item in tqdm(jobs, desc="batch", unit="prompt", file=err, disable=not jobs):
        try:
            if isinstance(item, Exception):
                raise item
            request = validate_request(item)
            stems = [
                f"{number:04d}-{safe_stem(request.prompt, max_len=40)}_seed{request.seed + k}"
                for k in range(request.num_waveforms_per_prompt)
            ]
            if all((folder / f"{s}.wav").exists() for s in stems):
                skipped += 1
                continue
            for stem, clip in zip(stems, generate_clips(request, device=args.device), strict=True):
                if not (folder / f"{stem}.wav").exists():
                    print(clip.save(folder, name=stem), file=out)
            made += 1
        except MgtoolkitError as exc:
            failed.append(f"line {number}: {exc}")
            tqdm.write(f"mgtoolkit: line {number}: {exc}", file=err)
    print(
        f"batch: {made} made, {skipped} skipped, {len(failed)} failed (skipped: already in {folder})",
        file=err,
    )
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for name, spec in PRESETS.items():
        size = f"{spec.size_gb:g} GB" if spec.size_gb else "built locally"
        print(f"{name:20s} {spec.source:28s} {size:>14s}  {spec.description}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    command = {"generate": cmd_generate, "batch": cmd_batch, "models": cmd_models}[args.command]
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
