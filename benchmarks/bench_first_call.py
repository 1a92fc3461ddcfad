#!/usr/bin/env python
"""Where the first call of a model never seen goes, predictor by predictor; prints one JSON object.

One process: the full-size random-weight model (``fullsize.py``, built once) is loaded with an
empty exports cache (a fresh ``MGTOOLKIT_CACHE`` with the model folder linked into it, unless
``--cache`` names one), then called twice with the same request. Each oneDNN predictor's first
call is split into its parts: the dygraph reference it is checked against, the export (trace +
``paddle.jit.save``), building the predictor, its runs, releasing the dygraph weights. Wall and CPU
seconds (``time.process_time``: all threads) for each, so that a shared machine still gives the
CPU figures. ``--source-maps`` exports as paddle does by itself (with dy2static's source maps), for
the figure before ``mgtoolkit.accel.export.without_source_maps``.

Example
-------
    .venv/bin/python benchmarks/bench_first_call.py                 # default dtype
    .venv/bin/python benchmarks/bench_first_call.py --dtype float32
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument("--dtype", default=None, help="float32 or bfloat16; default: the plan's choice")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=None, help="an MGTOOLKIT_CACHE to use (default: a new one)")
    ap.add_argument("--source-maps", action="store_true", help="export with dy2static's source maps")
    return ap.parse_args(argv)


class Timings:
    """Wall and CPU seconds per ``<module>.<part>``, summed over the calls of one request."""

    def __init__(self) -> None:
        self.parts: dict[str, list[float]] = {}

    def add(self, key: str, wall: float, cpu: float) -> None:
        total = self.parts.setdefault(key, [0.0, 0.0, 0])
        total[0] += wall
        total[1] += cpu
        total[2] += 1

    @contextlib.contextmanager
    def timing(self, key: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(key, time.perf_counter() - wall, time.process_time() - cpu)

    def take(self) -> dict[str, dict[str, float]]:
        out = {
            k: {"wall_s": round(w, 2), "cpu_s": round(c, 2), "calls": n}
            for k, (w, c, n) in self.parts.items()
        }
        self.parts = {}
        return out


def watch_engines(timings: Timings) -> None:
    """Wrap :class:`mgtoolkit.accel.predictor.Engine`'s steps with timers (this process only)."""
    from mgtoolkit.accel import predictor

    def kind(engine: Any) -> str:
        return engine.folder.name.split("-")[0]

    def wrap(name: str, method: Callable) -> Callable:
        def timed(self, *args, **kwargs):
            with timings.timing(f"{kind(self)}.{name}"):
                return method(self, *args, **kwargs)

        return timed

    first = predictor.Engine._first

    def first_with_timed_reference(self, arrays, reference):
        def timed_reference():
            with timings.timing(f"{kind(self)}.reference"):
                return reference()

        return first(self, arrays, timed_reference)

    predictor.Engine._first = wrap("first_call_total", first_with_timed_reference)
    predictor.Engine._export_atomically = wrap("export", predictor.Engine._export_atomically)
    predictor.Engine._release = wrap("release", predictor.Engine._release)
    predictor.Engine._infer = wrap("runs", predictor.Engine._infer)
    make = predictor.make_predictor

    def timed_make(prefix, *args, **kwargs):
        with timings.timing(f"{Path(prefix).parent.name.split('-')[0]}.build"):
            return make(prefix, *args, **kwargs)

    predictor.make_predictor = timed_make


def model_folder(preset: str) -> Path:
    """The saved random-weight ``preset`` in the default cache, built in a child process if missing."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import fullsize; print(fullsize.fullsize_dir({preset!r}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def disk_mb(folder: Path) -> float:
    """Bytes of the regular files under ``folder`` (links not followed), in MiB."""
    files = (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def run(args: argparse.Namespace, cache: Path, model: Path) -> dict[str, Any]:
    """Load, then two calls; the timings of each."""
    import mgtoolkit as mg
    from mgtoolkit.accel import export

    if args.source_maps:
        export.without_source_maps = contextlib.nullcontext
    timings = Timings()
    watch_engines(timings)
    with timings.timing("load"):
        loaded = mg.load_model(str(model), device="cpu", dtype=args.dtype)
    result: dict[str, Any] = {"load": timings.take()["load"], "plan": loaded.info().get("plan"), "calls": []}
    for _ in range(2):
        with timings.timing("whole"):
            mg.generate("a calm piano melody with soft strings", audio_length_in_s=args.seconds,
                        num_inference_steps=args.steps, seed=7, model=loaded)  # fmt: skip
        result["calls"].append(timings.take())
    first, second = (c["whole"]["cpu_s"] for c in result["calls"])
    result["first_call_extra_cpu_s"] = round(first - second, 2)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result["exports_disk_mb"] = disk_mb(cache / "compiled") if (cache / "compiled").is_dir() else 0.0
    result["loadavg"] = list(os.getloadavg())
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = model_folder(args.preset)
    own = args.cache is None
    cache = args.cache or Path(tempfile.mkdtemp(prefix="mg-first-call-"))
    try:
        os.environ["MGTOOLKIT_CACHE"] = str(cache)
        linked = cache / model.name
        if not linked.exists():
            linked.symlink_to(model, target_is_directory=True)
        result = run(args, cache, linked)
        result.update(
            preset=args.preset, seconds=args.seconds, steps=args.steps, source_maps=args.source_maps
        )
        print(json.dumps(result, indent=1))
    finally:
        if own:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
