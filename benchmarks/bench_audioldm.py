#!/usr/bin/env python
"""Time mgtoolkit's generation path on a full-size AudioLDM with random weights; print one JSON object.

The model is built from the preset's real configs (see ``benchmarks/fullsize.py``) and saved once
into the mgtoolkit cache; every run then goes through ``mgtoolkit.generate(..., model=<that dir>)``,
the code path users run. Progress goes to stderr, the JSON to stdout.

Examples
--------
    python benchmarks/bench_audioldm.py --preset audioldm-s-full-v2 --seconds 5 --steps 20
    python benchmarks/bench_audioldm.py --path plain           # ppdiffusers as it comes (no mgtoolkit levers)
    python benchmarks/bench_audioldm.py --check                # + optimised vs plain waveform, same seed
    python benchmarks/bench_audioldm.py --scaling              # 5/10/20 s and 1/2/4 candidates
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROMPT = "Techno music with a strong, upbeat tempo and high melodic riffs"
NEGATIVE = "low quality, average quality"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress to stderr (stdout carries only the JSON)."""
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="audioldm-s-full-v2")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.5)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed whole calls (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--negative-prompt", default=NEGATIVE)
    ap.add_argument(
        "--path",
        choices=["optimised", "plain"],
        default="optimised",
        help="optimised: mgtoolkit.generate; plain: the ppdiffusers pipeline as it comes "
        "(prompts padded to 512, no mgtoolkit optimisations), same latents",
    )
    ap.add_argument(
        "--no-env-tuning",
        action="store_true",
        help="leave paddle's thread/MKL defaults (sets MGTOOLKIT_NO_THREAD_TUNING=1)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="also run the plain path once in a child process and compare waveforms",
    )
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="run 5/10/20 s (1 candidate) and 1/2/4 candidates (5 s) in child processes",
    )
    ap.add_argument("--save-wave", default=None, help="write the last waveforms here (.npy)")
    ap.add_argument("--model-dir", default=None, help="use this saved pipeline instead of building one")
    ap.add_argument(
        "--dtype",
        default=None,
        help="float32 or bfloat16 (sets MGTOOLKIT_DTYPE); default: mgtoolkit's own choice (auto)",
    )
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Machine load: how many cores others used while we ran (from /proc/stat), as the torch script does.
# ---------------------------------------------------------------------------------------------
def cpu_snapshot() -> tuple[float, int, int]:
    """(wall clock, busy ticks of the whole machine, this process's user+system ticks)."""
    with open("/proc/stat", encoding="ascii") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    with open("/proc/self/stat", encoding="ascii") as fh:
        st = fh.read().rsplit(")", 1)[1].split()
    return time.perf_counter(), v[0] + v[1] + v[2] + v[5] + v[6], int(st[11]) + int(st[12])


def cpu_delta(a: tuple, b: tuple) -> dict[str, float]:
    """Wall seconds, cores this process used and cores everybody else used between two snapshots."""
    ticks = (b[0] - a[0]) * CLK_TCK
    return {
        "wall_s": b[0] - a[0],
        "self_cores": (b[2] - a[2]) / ticks,
        "others_cores": max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / ticks,
    }


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------
# Stage times from forward hooks on the components, and a wrapper round ``vae.decode`` (the
# compiled path runs the decoder as one predictor, without its sub-layers' hooks).
# ---------------------------------------------------------------------------------------------
class StageTimer:
    """Records how long each component's forward takes, call by call."""

    STAGES = {
        "text_encoder": ("text_encoder", "text_encoder"),
        "unet": ("unet", "unet"),
        "vae_decode": None,
        "vocoder": ("vocoder", "vocoder"),
    }

    def __init__(self, pipe: Any) -> None:
        self.times: dict[str, list[float]] = {k: [] for k in self.STAGES}
        self._start: dict[str, float] = {}
        self._active: dict[str, int] = dict.fromkeys(self.STAGES, 0)
        self._lock = threading.Lock()
        for stage, ends in self.STAGES.items():
            if ends:
                _module(pipe, ends[0]).register_forward_pre_hook(self._pre(stage))
                _module(pipe, ends[1]).register_forward_post_hook(self._post(stage))
        decode, start, stop = pipe.vae.decode, self._pre("vae_decode"), self._post("vae_decode")

        def timed_decode(*args, **kwargs):
            start(None, None)
            try:
                return decode(*args, **kwargs)
            finally:
                stop(None, None, None)

        pipe.vae.decode = timed_decode

    # Pieces of one stage may run side by side on worker threads: time from the first start to the last end.
    def _pre(self, stage: str):
        def hook(layer, inputs):
            with self._lock:
                if self._active[stage] == 0:
                    self._start[stage] = time.perf_counter()
                self._active[stage] += 1

        return hook

    def _post(self, stage: str):
        def hook(layer, inputs, outputs):
            with self._lock:
                self._active[stage] -= 1
                if self._active[stage] == 0:
                    self.times[stage].append(time.perf_counter() - self._start.pop(stage))

        return hook

    def take(self) -> dict[str, Any]:
        """Stage times since the last call, then start afresh."""
        t, self.times = self.times, {k: [] for k in self.STAGES}
        unet = t["unet"]
        return {
            "text_s": sum(t["text_encoder"]),
            "unet_steps": len(unet),
            "unet_total_s": sum(unet),
            "unet_step_s": statistics.median(unet) if unet else 0.0,
            "vae_decode_s": sum(t["vae_decode"]),
            "vocoder_s": sum(t["vocoder"]),
        }


def _module(pipe: Any, dotted: str) -> Any:
    obj = pipe
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------
# One generation call on each path.
# ---------------------------------------------------------------------------------------------
def call_optimised(args: argparse.Namespace, model_dir: Path):
    """``mgtoolkit.generate`` as users call it; returns waveforms [n, samples]."""
    import numpy as np

    import mgtoolkit as mg

    clips = mg.generate(
        args.prompt,
        args.negative_prompt,
        audio_length_in_s=args.seconds,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        num_waveforms_per_prompt=args.candidates,
        model=str(model_dir),
        device="cpu",
    )
    clips = clips if isinstance(clips, list) else [clips]
    return np.stack([c.waveform for c in clips])


def call_plain(args: argparse.Namespace, model_dir: Path):
    """The ppdiffusers pipeline as it comes, given the same starting latents as mgtoolkit draws."""
    import numpy as np

    import mgtoolkit as mg
    from mgtoolkit.models.audioldm import initial_latents, latent_shape
    from mgtoolkit.runtime import import_paddle

    paddle = import_paddle()
    loaded = mg.load_model(str(model_dir), device="cpu")
    seeds = [args.seed + k for k in range(args.candidates)]
    latents = paddle.to_tensor(initial_latents(latent_shape(loaded, args.seconds), seeds))
    with paddle.no_grad():
        out = loaded.pipe(
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            audio_length_in_s=args.seconds,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            num_waveforms_per_prompt=args.candidates,
            latents=latents,
            output_type="np",
        )
    waves = np.asarray(out.audios, dtype=np.float32).reshape(len(seeds), -1)
    return np.clip(np.nan_to_num(waves), -1.0, 1.0)  # as mgtoolkit tidies its clips


def time_calls(args: argparse.Namespace, model_dir: Path) -> tuple[dict[str, Any], Any]:
    """Warm up, then time ``args.repeats`` whole calls with their stage split and machine load."""
    import mgtoolkit as mg

    call = call_optimised if args.path == "optimised" else call_plain
    t0 = time.perf_counter()
    loaded = mg.load_model(str(model_dir), device="cpu")
    load_s = time.perf_counter() - t0
    timer = StageTimer(loaded.pipe)
    for i in range(args.warmup):
        t = time.perf_counter()
        call(args, model_dir)
        log(f"  warm-up {i + 1}: {time.perf_counter() - t:.2f} s  {timer.take()}")
    runs, waves = [], None
    for i in range(args.repeats):
        a = cpu_snapshot()
        waves = call(args, model_dir)
        run = {**cpu_delta(a, cpu_snapshot()), **timer.take()}
        runs.append(run)
        log(
            f"  run {i + 1}: {run['wall_s']:.2f} s  others_cores {run['others_cores']:.2f}  "
            f"unet_step {run['unet_step_s']:.3f}  vae {run['vae_decode_s']:.2f}  vocoder {run['vocoder_s']:.2f}"
        )
    timed = {"load_s": load_s, "runs": runs, "optimizations": _optimizations(loaded.pipe), "dtype": loaded.dtype}
    return timed, waves


def _optimizations(pipe: Any) -> Any:
    return getattr(pipe, "_mgtoolkit_optimizations", None)


def summarise(runs: list[dict[str, Any]], seconds: float, candidates: int) -> dict[str, Any]:
    """Medians over the timed runs."""
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
    return {
        "whole_s": med["wall_s"],
        "rtf": med["wall_s"] / seconds,
        "rtf_per_audio_second": med["wall_s"] / (seconds * candidates),
        "stages_s": {
            k: med[k] for k in ("text_s", "unet_step_s", "unet_total_s", "vae_decode_s", "vocoder_s")
        },
        "others_cores_median": med["others_cores"],
        "others_cores_max": max(r["others_cores"] for r in runs),
    }


# ---------------------------------------------------------------------------------------------
# Environment facts.
# ---------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Versions of the stack that ran."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("paddlepaddle", "ppdiffusers", "paddlenlp", "numpy", "mgtoolkit"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def machine() -> dict[str, Any]:
    """CPU model and usable cores."""
    model = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "usable_cores": len(os.sched_getaffinity(0)), "platform": platform.platform()}


def env_facts() -> dict[str, Any]:
    """Thread and library settings in effect (after mgtoolkit's own tuning)."""
    keys = (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "MKL_DEBUG_CPU_TYPE",
        "MGTOOLKIT_NO_THREAD_TUNING",
        "MGTOOLKIT_OPTIMIZE",
        "FLAGS_use_mkldnn",
    )
    facts: dict[str, Any] = {k: os.environ.get(k) for k in keys}
    try:
        import paddle

        facts["paddle_flags"] = {k: v for k, v in paddle.get_flags(["FLAGS_use_mkldnn"]).items()}
    except Exception as exc:  # noqa: BLE001 - facts only
        facts["paddle_flags"] = repr(exc)
    return facts


# ---------------------------------------------------------------------------------------------
# Child processes: building the model, the plain-path check, the scaling sweep.
# ---------------------------------------------------------------------------------------------
def ensure_model(args: argparse.Namespace) -> Path:
    """The saved random-weight model, built in a child process (so its memory is not counted here)."""
    if args.model_dir:
        return Path(args.model_dir)
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import fullsize; "
        f"print(fullsize.fullsize_dir({args.preset!r}))"
    )
    log(f"model: building or finding the random-weight {args.preset} (first time: a few minutes, 1.7 GB)")
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace, model_dir: Path, extra: list[str]) -> dict[str, Any]:
    """Run this script again with changed options; return its JSON."""
    base = [
        "--preset",
        args.preset,
        "--seconds",
        str(args.seconds),
        "--steps",
        str(args.steps),
        "--guidance",
        str(args.guidance),
        "--candidates",
        str(args.candidates),
        "--seed",
        str(args.seed),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--prompt",
        args.prompt,
        "--negative-prompt",
        args.negative_prompt,
        "--model-dir",
        str(model_dir),
    ]
    if args.no_env_tuning:
        base.append("--no-env-tuning")
    out = subprocess.run(
        [sys.executable, __file__, *base, *extra], check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(out.stdout)


def equivalence(args: argparse.Namespace, model_dir: Path, waves: Any) -> dict[str, Any]:
    """Plain ppdiffusers waveform (child process, same seed) against ours."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plain.npy")
        log("check: plain ppdiffusers path, same seed, in a child process")
        child(args, model_dir, ["--path", "plain", "--repeats", "1", "--warmup", "0", "--save-wave", path])
        plain = np.load(path)
    diff = np.abs(plain.astype(np.float64) - waves.astype(np.float64))
    scale = float(np.abs(plain).max()) or 1.0
    return {
        "max_abs_diff": float(diff.max()),
        "max_abs_plain": scale,
        "max_rel_diff": float(diff.max()) / scale,
        "rms_diff": float(np.sqrt((diff**2).mean())),
        "allclose_rtol1e-3_atol1e-4": bool(np.allclose(waves, plain, rtol=1e-3, atol=1e-4 * scale)),
        "samples": int(plain.size),
    }


def scaling(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """Whole-call and stage medians for 5/10/20 s (1 candidate) and 1/2/4 candidates (5 s)."""
    rows = []
    for seconds, candidates in ((5, 1), (10, 1), (20, 1), (5, 2), (5, 4)):
        log(f"scaling: {seconds} s x {candidates} candidate(s)")
        sub = argparse.Namespace(**{**vars(args), "seconds": float(seconds), "candidates": candidates})
        res = child(sub, model_dir, ["--path", args.path])
        rows.append(
            {
                "seconds": seconds,
                "candidates": candidates,
                "whole_s": res["whole_s"],
                "stages_s": res["stages_s"],
                "others_cores_max": res["others_cores_max"],
                "peak_rss_mb": res["peak_rss_mb"],
            }
        )
    return {
        "scaling": rows,
        "path": args.path,
        "steps": args.steps,
        "guidance": args.guidance,
        "loadavg_end": loadavg(),
        "machine": machine(),
        "versions": versions(),
    }


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Build once, time, check, print JSON."""
    args = parse_args(argv)
    if args.no_env_tuning:
        os.environ["MGTOOLKIT_NO_THREAD_TUNING"] = "1"
    if args.path == "plain":
        os.environ["MGTOOLKIT_OPTIMIZE"] = "0"
    if args.dtype:
        os.environ["MGTOOLKIT_DTYPE"] = args.dtype
    model_dir = ensure_model(args)
    if args.scaling:
        print(json.dumps(scaling(args, model_dir), indent=1))
        return
    load_start = loadavg()
    log(
        f"timing the {args.path} path: {args.seconds:g} s, {args.steps} steps, guidance {args.guidance:g}, "
        f"{args.candidates} candidate(s), loadavg {load_start}"
    )
    timed, waves = time_calls(args, model_dir)
    result = {
        "preset": args.preset,
        "model_dir": str(model_dir),
        "path": args.path,
        "dtype": timed["dtype"],
        "args": vars(args),
        **summarise(timed["runs"], args.seconds, args.candidates),
        "peak_rss_mb": peak_rss_mb(),
        "load_s": timed["load_s"],
        "runs": timed["runs"],
        "optimizations": timed["optimizations"],
        "audio_samples": int(waves.shape[-1]),
        "env": env_facts(),
        "versions": versions(),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    if args.save_wave:
        import numpy as np

        np.save(args.save_wave, waves)
    if args.check:
        result["equivalence_vs_plain"] = equivalence(args, model_dir, waves)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
