#!/usr/bin/env python
"""Peak RSS of one process that loads the full-size model in the default mode and makes one clip.

One JSON object (stdout): the process's peak RSS (``ru_maxrss``), the RSS after the load, and for
each stage that runs through a oneDNN predictor the highest RSS sampled while it ran (every 20 ms)
and the RSS when it returned; each predictor's state and where its released dygraph weights wait
(``source``: the files the model was loaded from, or ``stash``: a copy in the export's folder), and
the disk the exports take. Peak RSS is a valid figure on a busy machine; the seconds are not.

    .venv/bin/python benchmarks/bench_memory.py                    # the default mode, 5 s, 20 steps
    .venv/bin/python benchmarks/bench_memory.py --dtype float32

The model is ``fullsize.fullsize_dir`` (built once into ``$MGTOOLKIT_CACHE``); run it twice to
measure with the exports cached (the first run of a new model exports and verifies them).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """The highest RSS seen per label, sampled in a thread."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.label, self.peaks, self._stop = "load", {}, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.note()
            time.sleep(every_s)

    def note(self) -> None:
        label = self.label
        self.peaks[label] = max(self.peaks.get(label, 0.0), rss_mb())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _watch_engines(sampler: Sampler, after: dict, builds: list, drop_idle: bool) -> None:
    from mgtoolkit.accel import predictor
    from mgtoolkit.accel.pieces import give_back_free_memory

    original, make = predictor.Engine.run, predictor.make_predictor
    live: list = []

    def make_predictor(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return make(*args, **kwargs)
        finally:
            builds.append(round(time.perf_counter() - t0, 2))

    def run(self, arrays, reference):
        name = self.folder.name.split("-")[0]
        if drop_idle:  # the experiment: only the running stage's predictor is held
            for other in live:
                if other is not self and other._predictor is not None:
                    other._predictor = None
                    give_back_free_memory()
            if self not in live:
                live.append(self)
        previous, sampler.label = sampler.label, name
        try:
            return original(self, arrays, reference)
        finally:
            sampler.note()
            after[name] = round(rss_mb())
            sampler.label = previous

    predictor.Engine.run = run
    predictor.make_predictor = make_predictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--dtype", default=None, help="default: mgtoolkit's choice")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--drop-idle-predictors",
        action="store_true",
        help="experiment: drop every other stage's predictor before one runs (rebuilt when needed)",
    )
    ap.add_argument("--calls", type=int, default=1, help="clips made one after the other")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from fullsize import fullsize_dir

    import mgtoolkit as mg

    model_dir = args.model_dir or str(fullsize_dir(args.preset))
    sampler, after, builds = Sampler(), {}, []
    _watch_engines(sampler, after, builds, args.drop_idle_predictors)
    t0 = time.perf_counter()
    loaded = mg.load_model(model_dir, device="cpu", dtype=args.dtype)
    load_s, after["load"] = time.perf_counter() - t0, round(rss_mb())
    sampler.label = "dygraph"
    calls_s, waves = [], []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        clip = mg.generate(
            "calm piano with soft rain",
            model=loaded,
            audio_length_in_s=args.seconds,
            num_inference_steps=args.steps,
            seed=0,
            rank=False,
        )
        calls_s.append(round(time.perf_counter() - t0, 1))
        waves.append(clip.waveform)
    sampler.stop()
    engines = getattr(loaded.pipe, "_mgtoolkit_engines", {}) or {}
    exports = {
        name: {
            "state": e.state,
            "precision": e.precision,
            "weights_wait_in": "source"
            if getattr(e, "source", None) is not None
            else "stash"
            if e.weights_path.exists()
            else None,
            "export_mb": round(sum(f.stat().st_size for f in e.folder.iterdir()) / 1024**2),
        }
        for name, e in engines.items()
    }
    print(
        json.dumps(
            {
                "model": model_dir,
                "dtype": clip.model_info.get("dtype"),
                "clip_s": args.seconds,
                "steps": args.steps,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "rss_after_mb": after,
                "rss_peak_by_stage_mb": {k: round(v) for k, v in sampler.peaks.items()},
                "predictors": exports,
                "load_s": round(load_s, 1),
                "calls_s": calls_s,
                "predictor_builds_s": builds,
                "drop_idle_predictors": args.drop_idle_predictors,
                "same_waveform_every_call": all((w == waves[0]).all() for w in waves),
                "samples": int(clip.waveform.shape[-1]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
