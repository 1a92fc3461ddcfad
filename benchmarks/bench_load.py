#!/usr/bin/env python
"""First vs later load of published (torch-layout) weights: time and peak memory; one JSON object.

The full-size AudioLDM-S with random weights (``benchmarks/fullsize.py``) is written as the hub ships
it (diffusers format, ``pt`` safetensors, by ``tests/fixtures/hub_layouts.py``). Each load runs in
a fresh interpreter (its own peak RSS, no in-process cache) through ``mgtoolkit.load_model(folder)``:

- ``first``: an empty converted cache, so the weights are converted and the copy written;
- ``later``: the copy is there and is read with no conversion (``--repeats`` times);
- ``paddle``: the paddle-format folder itself (what the copy costs to read, for reference);
- ``weights_step``: the conversion alone, then the check that finds the copy (no model built);
- ``ppdiffusers_from_diffusers``: ppdiffusers' own ``from_diffusers=True`` on the diffusers folder
  (it converts in memory on every load, and reads ``.bin`` with pickle).

Examples
--------
    python benchmarks/bench_load.py                # all modes, 3 repeats of "later"
    python benchmarks/bench_load.py --repeats 1 --modes first,later
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child(mode: str, folder: str) -> None:
    """Load once in this process and print ``{load_s, peak_rss_gb, conversions}``."""
    t0 = time.perf_counter()
    if mode == "weights_step":  # the conversion alone, then the check of the copy, in one process
        from mgtoolkit.models import weights

        shutil.rmtree(weights.converted_root(), ignore_errors=True)
        weights.paddle_folder(folder, name="bench")
        convert_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        weights.paddle_folder(folder, name="bench")
        check_s = time.perf_counter() - t1
        print(json.dumps({"mode": mode, "convert_s": round(convert_s, 2), "check_copy_s": round(check_s, 4)}))
        return
    if mode == "ppdiffusers_from_diffusers":
        import ppdiffusers

        ppdiffusers.AudioLDMPipeline.from_pretrained(folder, from_diffusers=True, low_cpu_mem_usage=True)
        conversions = None
    else:
        import mgtoolkit as mg
        from mgtoolkit.models import weights

        mg.load_model(folder, device="cpu", optimize=False)
        conversions = weights.conversions_done()
    load_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
    print(
        json.dumps(
            {
                "mode": mode,
                "load_s": round(load_s, 2),
                "peak_rss_gb": round(peak, 2),
                "conversions": conversions,
            }
        )
    )


def run_child(mode: str, folder: Path, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def folders(root: Path) -> tuple[Path, Path]:
    """The full-size paddle folder (built once) and its diffusers-format twin (written once)."""
    sys.path.insert(0, str(HERE))
    from fullsize import fullsize_dir, hub_layouts

    paddle_dir = fullsize_dir("audioldm-s-full-v2")
    diffusers_dir = root / "audioldm-s-full-v2-diffusers"
    if not (diffusers_dir / "model_index.json").is_file():
        log(f"writing the diffusers-format copy into {diffusers_dir} ...")
        shutil.rmtree(diffusers_dir, ignore_errors=True)
        hub_layouts().write_diffusers_folder(paddle_dir, diffusers_dir)
    return paddle_dir, diffusers_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="loads of the converted copy (default 3)")
    parser.add_argument("--modes", default="weights_step,first,later,paddle,ppdiffusers_from_diffusers")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: <cache>/bench-load)")
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    from mgtoolkit.config import cache_root
    from mgtoolkit.models.weights import disk_size

    root = args.root or cache_root() / "bench-load"
    root.mkdir(parents=True, exist_ok=True)
    paddle_dir, diffusers_dir = folders(root)
    env = {**os.environ, "MGTOOLKIT_CACHE": str(root / "cache"), "MGTOOLKIT_VERBOSE": ""}
    modes = args.modes.split(",")
    results: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    if "weights_step" in modes:
        log("conversion alone, then the check of the copy ...")
        results["weights_step"] = run_child(
            "weights_step", diffusers_dir, {**env, "MGTOOLKIT_CACHE": str(root / "step")}
        )
        shutil.rmtree(root / "step", ignore_errors=True)
    if "first" in modes:
        shutil.rmtree(root / "cache" / "converted", ignore_errors=True)
        log("first load (converts) ...")
        results["first"] = run_child("first", diffusers_dir, env)
    if "later" in modes:
        results["later"] = []
        for i in range(args.repeats):
            log(f"later load {i + 1}/{args.repeats} ...")
            results["later"].append(run_child("later", diffusers_dir, env))
    if "paddle" in modes:
        log("paddle-format folder ...")
        results["paddle"] = run_child("paddle", paddle_dir, env)
    converted = root / "cache" / "converted"
    results["disk_gb"] = {
        "diffusers_folder": round(disk_size(diffusers_dir) / 1e9, 2),
        "converted_copy": round(disk_size(converted) / 1e9, 2) if converted.is_dir() else None,
    }
    if "ppdiffusers_from_diffusers" in modes:
        log("ppdiffusers from_diffusers=True ...")
        before = set(diffusers_dir.rglob("*"))
        results["ppdiffusers_from_diffusers"] = run_child("ppdiffusers_from_diffusers", diffusers_dir, env)
        added = sorted(set(diffusers_dir.rglob("*")) - before)  # paddlenlp's convert() saves a pickle there
        results["ppdiffusers_from_diffusers"]["wrote_into_source"] = [
            str(p.relative_to(diffusers_dir)) for p in added
        ]
        for path in added:
            path.unlink()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
