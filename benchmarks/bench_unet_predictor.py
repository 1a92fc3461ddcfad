#!/usr/bin/env python
"""The UNet's oneDNN predictor alone, from an export folder: RSS when built and after each run.

One JSON object (stdout): RSS at start, once built and after each run (``after_run``), the CPU
seconds of the build and of each run (``time.process_time``: steadier than wall seconds on a busy
machine), whether every run gave the same output bit for bit, whether another input length runs
too, and, with ``--reference``, how far the first output is from a saved one (relative L2, largest
difference). ``--save`` writes the first output (``.npy``), e.g. of a float32 predictor, to
compare bfloat16 ones against.

    .venv/bin/python benchmarks/bench_unet_predictor.py <cache>/compiled/unet-<fingerprint>
    .venv/bin/python benchmarks/bench_unet_predictor.py <folder> --precision float32 --save f32.npy
    .venv/bin/python benchmarks/bench_unet_predictor.py <folder> --reference f32.npy

The inputs are random and fixed (seed 0), shaped as a 5 s clip with guidance: latents
``[2, 8, 125, 16]``, timestep embedding ``[2, 128]``, class labels ``[2, 512]`` (AudioLDM-S).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(predictor, arrays):
    for name, array in zip(predictor.get_input_names(), arrays, strict=True):
        handle = predictor.get_input_handle(name)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    t0 = time.process_time()
    predictor.run()
    seconds = time.process_time() - t0
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    predictor.clear_intermediate_tensor()
    return out, round(seconds, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="an export folder holding model.json and model.pdiparams")
    ap.add_argument("--precision", default="bfloat16", choices=("float32", "bfloat16"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--save", type=Path, default=None, help="write the first output here (.npy)")
    ap.add_argument("--reference", type=Path, default=None, help="compare the first output with this .npy")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    import numpy as np
    from bench_memory import rss_mb
    from paddle import inference  # noqa: F401 - loaded before the first figure

    from mgtoolkit.accel.predictor import make_predictor

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype("float32") for s in ((2, 8, 125, 16), (2, 128), (2, 512))]
    report = {"folder": str(args.folder), "precision": args.precision, "start_mb": round(rss_mb())}
    t0 = time.process_time()
    predictor = make_predictor(args.folder / "model", args.precision)
    report.update(build_cpu_s=round(time.process_time() - t0, 2), built_mb=round(rss_mb()))
    outs, report["run_cpu_s"], report["after_run_mb"] = [], [], []
    for _ in range(args.runs):
        out, seconds = _run(predictor, arrays)
        outs.append(out)
        report["run_cpu_s"].append(seconds)
        report["after_run_mb"].append(round(rss_mb()))
    report["same_every_run"] = all(np.array_equal(o, outs[0]) for o in outs)
    other, _ = _run(predictor, [arrays[0][:, :, :64], *arrays[1:]])  # another length
    report["other_length_ok"] = bool(other.shape[2] == 64 and np.isfinite(other).all())
    report["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.save:
        np.save(args.save, outs[0])
    if args.reference:
        want = np.load(args.reference)
        diff = outs[0].astype(np.float64) - want
        report["relative_l2"] = float(np.linalg.norm(diff) / np.linalg.norm(want))
        report["max_abs_diff"] = float(np.abs(diff).max())
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
