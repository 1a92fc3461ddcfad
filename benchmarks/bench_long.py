#!/usr/bin/env python
"""Cost of long pieces: seconds of compute per second of audio at 10, 30, 120 s; print one JSON object.

``mgtoolkit.generate(..., audio_length_in_s=S)`` on a full-size AudioLDM with random weights (built
once from the real configs, see ``benchmarks/fullsize.py``; speed does not depend on weight values).
Up to 10 s that is one pipeline call; beyond, window by window (10 s windows, 2.5 s held), so the
cost should grow linearly with the length and the memory stay that of one window. ``--one-pass``
also times the plain pipeline asked for the whole length at once (cost grows faster: attention).

Each length runs in its own child process, so ``peak_rss_mb`` is that length's own peak.

Examples
--------
    python benchmarks/bench_long.py                       # 10/30/120 s, 20 steps
    python benchmarks/bench_long.py --seconds 10 30 --steps 5 --one-pass
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = "Techno music with a strong, upbeat tempo and high melodic riffs"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0, 120.0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one-pass", action="store_true", help="also the plain pipeline over the whole length")
    ap.add_argument("--child", choices=["windows", "one-pass"], help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run_child(args: argparse.Namespace) -> dict:
    """One length in this process: load (untimed), then one timed call."""
    sys.path.insert(0, str(HERE))
    from fullsize import fullsize_dir

    import mgtoolkit as mg

    folder = str(fullsize_dir(args.preset))
    seconds = args.seconds[0]
    loaded = mg.load_model(folder)
    t0 = time.perf_counter()
    if args.child == "windows":
        from mgtoolkit.tasks.text import generate

        clip = generate(
            PROMPT, audio_length_in_s=seconds, num_inference_steps=args.steps, seed=args.seed, model=folder
        )
        windows = clip.extra.get("windows", {}).get("windows", 1)
    else:
        from mgtoolkit.models import audioldm

        audioldm.run(
            loaded, prompt=PROMPT, negative_prompt=None, audio_length_in_s=seconds,
            num_inference_steps=args.steps, guidance_scale=2.5, seeds=[args.seed],
        )  # fmt: skip
        windows = 1
    whole = time.perf_counter() - t0
    return {
        "path": args.child,
        "seconds": seconds,
        "windows": windows,
        "whole_s": round(whole, 2),
        "s_per_audio_s": round(whole / seconds, 3),
        "s_per_window": round(whole / windows, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_s": round(loaded.load_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    runs = []
    paths = ["windows", *(["one-pass"] if args.one_pass else [])]
    for path in paths:
        for seconds in args.seconds:
            if path == "one-pass" and seconds > 60:
                continue  # the pipeline is not asked for more than the model's 60 s
            log(f"{path}: {seconds:g} s, {args.steps} steps ...")
            cmd = [
                sys.executable,
                __file__,
                "--child",
                path,
                "--preset",
                args.preset,
                "--steps",
                str(args.steps),
            ]
            cmd += ["--seed", str(args.seed), "--seconds", str(seconds)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                log(done.stderr[-2000:])
                runs.append(
                    {"path": path, "seconds": seconds, "error": done.stderr.strip().splitlines()[-1:]}
                )
                continue
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log(json.dumps(runs[-1]))
    report = {
        "preset": args.preset,
        "steps": args.steps,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
            "platform": platform.platform(),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
