#!/usr/bin/env python
"""Time whole calls under two values of settings read per call, alternating, in one process.

One JSON object (stdout): per variant the wall and CPU seconds of each call (the model loaded once,
the variants taking turns A B A B ...), so a busy machine slows both alike; ``cpu_s`` (this
process's user + system time) is the steadier figure there. Also whether every call of the same
variant made the same waveform, and how far the variants' waveforms are apart.

    .venv/bin/python benchmarks/ab_settings.py --a MGTOOLKIT_VOCODER_PIECE=0,MGTOOLKIT_TRIM=0 \\
        --b MGTOOLKIT_VOCODER_PIECE=256,MGTOOLKIT_TRIM=1 --rounds 3

The model is ``fullsize.fullsize_dir`` (built once into ``$MGTOOLKIT_CACHE``); one warm-up call
(variant A) goes first so that exports and predictor builds are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    return {key.strip(): value.strip() for key, value in pairs}


def _call(mg, loaded, settings: dict[str, str], args) -> tuple[float, float, object]:
    os.environ.update(settings)
    wall, cpu = time.perf_counter(), _cpu_s()
    clip = mg.generate(
        "calm piano with soft rain",
        model=loaded,
        audio_length_in_s=args.seconds,
        num_inference_steps=args.steps,
        seed=0,
        rank=False,
    )
    return round(time.perf_counter() - wall, 2), round(_cpu_s() - cpu, 2), clip.waveform


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="KEY=VALUE[,KEY=VALUE]: variant A")
    ap.add_argument("--b", required=True, help="KEY=VALUE[,KEY=VALUE]: variant B")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import numpy as np
    from fullsize import fullsize_dir

    import mgtoolkit as mg

    variants = {"a": _settings(args.a), "b": _settings(args.b)}
    loaded = mg.load_model(str(fullsize_dir(args.preset)), device="cpu")
    _call(mg, loaded, variants["a"], args)  # warm-up: predictor builds, first runs
    runs: dict[str, dict[str, list]] = {k: {"wall_s": [], "cpu_s": [], "waves": []} for k in variants}
    for _ in range(args.rounds):
        for name, settings in variants.items():
            wall, cpu, wave = _call(mg, loaded, settings, args)
            runs[name]["wall_s"].append(wall)
            runs[name]["cpu_s"].append(cpu)
            runs[name]["waves"].append(np.asarray(wave))
    a, b = runs["a"]["waves"][0], runs["b"]["waves"][0]
    out = {
        name: {
            "settings": variants[name],
            "wall_s": r["wall_s"],
            "cpu_s": r["cpu_s"],
            "median_wall_s": float(np.median(r["wall_s"])),
            "median_cpu_s": float(np.median(r["cpu_s"])),
            "same_waveform_every_call": all(np.array_equal(w, r["waves"][0]) for w in r["waves"]),
        }
        for name, r in runs.items()
    }
    out["b_vs_a_relative_l2"] = float(np.linalg.norm(b - a) / (np.linalg.norm(a) or 1.0))
    out["load_average"] = os.getloadavg()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
