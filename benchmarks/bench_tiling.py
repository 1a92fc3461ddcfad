#!/usr/bin/env python
"""What low-memory mode's convolution bands (``mgtoolkit.accel.tiling``) save: the VAE decode and
the vocoder of a full-size AudioLDM-S on one window, in dygraph as low-memory mode runs them.

One process per variant (bands on, bands off), so that neither inherits the other's heap. Each
prints one JSON line: the RSS before the stage, the highest RSS sampled every 10 ms while it ran,
its seconds, and whether the output equals the other variant's bit for bit (a hash of the bytes).
Peak RSS is a valid figure on a busy machine; the seconds are not.

    .venv/bin/python benchmarks/bench_tiling.py                 # a 10 s window
    .venv/bin/python benchmarks/bench_tiling.py --seconds 5

The model is ``fullsize.fullsize_dir`` (built once into ``$MGTOOLKIT_CACHE``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_memory import rss_mb  # noqa: E402 - beside this script


def peak_while(run):
    """``(result, seconds, rss before, highest rss while run() ran)``, sampled every 10 ms."""
    high, done = [rss_mb()], threading.Event()

    def sample():
        while not done.is_set():
            high[0] = max(high[0], rss_mb())
            time.sleep(0.01)

    before = high[0]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return result, seconds, before, max(high[0], rss_mb())


def one(seconds: float, bands: bool) -> dict:
    import fullsize
    import paddle
    from ppdiffusers import AutoencoderKL
    from ppdiffusers.pipelines.audioldm.pipeline_audioldm import SpeechT5HifiGan

    from mgtoolkit.accel.hooks import HookRegistry
    from mgtoolkit.accel.tiling import tile_convolutions

    folder = fullsize.fullsize_dir("audioldm-s-full-v2")
    vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae")
    vocoder = SpeechT5HifiGan.from_pretrained(str(folder), subfolder="vocoder")
    for module in (vae, vocoder):
        module.eval()
    registry = HookRegistry()
    if bands:
        tile_convolutions(registry, vae, "vae", feature="bench")
        tile_convolutions(registry, vocoder, "vocoder", feature="bench")
    frames = int(round(seconds * 100)) // 4  # 100 mel frames a second, 4 to a latent row
    paddle.seed(0)
    latents = paddle.randn([1, int(vae.config.latent_channels), frames, 16])
    row = {"seconds": seconds, "bands": bands}
    with paddle.no_grad():
        mel, row["vae_s"], row["vae_rss_before"], row["vae_peak"] = peak_while(
            lambda: vae.decode(latents).sample
        )
        mel = mel.squeeze(1)
        wave, row["vocoder_s"], row["vocoder_rss_before"], row["vocoder_peak"] = peak_while(
            lambda: vocoder(mel)
        )
    row["mel_sha"] = hashlib.sha256(mel.numpy().tobytes()).hexdigest()[:16]
    row["wave_sha"] = hashlib.sha256(wave.numpy().tobytes()).hexdigest()[:16]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="the window's length (default 10)")
    parser.add_argument("--one", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.seconds, args.one == "on")), flush=True)
        return 0
    rows = []
    for variant in ("off", "on"):
        out = subprocess.run(
            [sys.executable, __file__, "--seconds", str(args.seconds), "--one", variant],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    same = rows[0]["mel_sha"] == rows[1]["mel_sha"] and rows[0]["wave_sha"] == rows[1]["wave_sha"]
    for stage in ("vae", "vocoder"):
        off, on = (r[f"{stage}_peak"] - r[f"{stage}_rss_before"] for r in rows)
        print(
            f"{stage:8s} +{off:6.0f} MiB -> +{on:6.0f} MiB   {rows[0][f'{stage}_s']:.1f} s -> {rows[1][f'{stage}_s']:.1f} s"
        )
    print(f"bands give the same mel and waveform bit for bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
