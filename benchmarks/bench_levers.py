"""One full-size call per lever, each in its own process: float32 (default), bfloat16, low-memory.

Prints one JSON object per run (stdout): the mode mgtoolkit chose, load and first-call time (the
first call exports and verifies the predictors), the median of the timed calls, the process's
peak RSS, and each predictor's verdict (for bfloat16: the stage's relative L2 against float32
dygraph, measured on this call's own inputs). ``--cgroup-mb`` runs the child inside a cgroup v1
memory group with that limit (root; it is removed afterwards) and reports the group's peak usage.

    .venv/bin/python benchmarks/bench_levers.py --modes float32,bfloat16,low-memory --steps 20
    .venv/bin/python benchmarks/bench_levers.py --modes auto --cgroup-mb 2048   # Binder-sized

Timings on a shared machine are noisy: compare only within one run, and see ``others_cores`` in
``bench_audioldm.py`` for a quiet-machine check.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument(
        "--modes", default="float32,bfloat16,low-memory", help="comma list; 'auto' lets mgtoolkit choose"
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1, help="timed calls after the first (median reported)")
    ap.add_argument(
        "--cgroup-mb", type=int, default=0, help="run each child under this cgroup v1 memory limit"
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None)
    return ap.parse_args(argv)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(args: argparse.Namespace) -> dict:
    """In the child: load, first call, timed calls; the figures."""
    import mgtoolkit as mg

    mode = args.child
    if mode != "auto":  # generate() loads with the environment's defaults: the same pipeline
        os.environ["MGTOOLKIT_LOW_MEMORY"] = "1" if mode == "low-memory" else "0"
    kwargs = {
        "float32": {"dtype": "float32"},
        "bfloat16": {"dtype": "bfloat16"},
        "low-memory": {"dtype": "float32"},
        "auto": {},
    }[mode]
    t0 = time.perf_counter()
    loaded = mg.load_model(args.model_dir, device="cpu", dtype=kwargs.get("dtype"))
    load_s = time.perf_counter() - t0
    rss_after_load = _rss_mb()
    call = {"audio_length_in_s": args.seconds, "num_inference_steps": args.steps, "seed": 0, "rank": False}
    t0 = time.perf_counter()
    first = mg.generate(
        "calm piano with soft rain", model=args.model_dir, device="cpu", dtype=kwargs.get("dtype"), **call
    )
    first_s = time.perf_counter() - t0
    times, clip = [], first
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        clip = mg.generate(
            "calm piano with soft rain", model=args.model_dir, device="cpu", dtype=kwargs.get("dtype"), **call
        )
        times.append(time.perf_counter() - t0)
    import numpy as np

    engines = getattr(loaded.pipe, "_mgtoolkit_engines", {}) or {}
    report = loaded.pipe._mgtoolkit_optimizations if hasattr(loaded.pipe, "_mgtoolkit_optimizations") else {}
    return {
        "mode": mode,
        "dtype": clip.model_info.get("dtype"),
        "low_memory": report.get("low_memory"),
        "applied": report.get("applied"),
        "load_s": round(load_s, 2),
        "first_call_s": round(first_s, 2),
        "whole_s": round(statistics.median(times), 2) if times else None,
        "calls_s": [round(t, 2) for t in times],
        "rss_after_load_mb": round(rss_after_load),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "same_as_first": bool(np.array_equal(first.waveform, clip.waveform)),
        "engines": {
            name: {"state": e.state, "precision": e.precision, **e.detail} for name, e in engines.items()
        },
        "loadavg": os.getloadavg(),
    }


def _in_cgroup(limit_mb: int, name: str) -> Path:
    group = CGROUP_V1 / name
    group.mkdir(exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit_mb * 1024**2))
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():
        try:
            swap.write_text(str(limit_mb * 1024**2))
        except OSError:
            pass
    return group


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.cgroup_mb:
            (CGROUP_V1 / f"mgtoolkit-bench-{os.getppid()}" / "tasks").write_text(str(os.getpid()))
        print(json.dumps(run_child(args)))
        return 0
    sys.path.insert(0, str(HERE))
    from fullsize import fullsize_dir

    model_dir = args.model_dir or str(fullsize_dir(args.preset))
    group = _in_cgroup(args.cgroup_mb, f"mgtoolkit-bench-{os.getpid()}") if args.cgroup_mb else None
    try:
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--child", mode, "--model-dir", model_dir, "--seconds", str(args.seconds),
                   "--steps", str(args.steps), "--repeats", str(args.repeats), "--cgroup-mb", str(args.cgroup_mb)]  # fmt: skip
            if group is not None:
                (group / "memory.max_usage_in_bytes").write_text("0")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = (proc.stdout.strip().splitlines() or ["{}"])[-1]
            result = json.loads(line) if line.startswith("{") else {"mode": mode}
            result["returncode"] = proc.returncode
            if proc.returncode:
                result["stderr_tail"] = proc.stderr[-800:]
            if group is not None:
                result["cgroup_limit_mb"] = args.cgroup_mb
                result["cgroup_peak_mb"] = round(
                    int((group / "memory.max_usage_in_bytes").read_text()) / 1024**2
                )
                result["cgroup_oom_kills"] = (group / "memory.oom_control").read_text().split()[-1]
            print(json.dumps(result), flush=True)
    finally:
        if group is not None:
            group.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
