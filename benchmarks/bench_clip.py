"""The ``clip`` captioner at full size: memory and time of a first load (with its conversion), a later
load, and one picture tagged, each in a fresh process.

The model is ``openai/clip-vit-base-patch32``'s geometry with random weights (speed and memory do not
depend on weight values), laid out as transformers publishes it (torch-layout ``model.safetensors``,
``config.json``, tokenizer and processor files), and, with ``--hf-cache``, placed in a Hugging Face
cache as its first download leaves it (``models--openai--clip-vit-base-patch32/snapshots/<rev>``),
so ``captioner="clip"`` finds it offline. The numbers, from the model card's ``config.json``:

- text tower: 49,408-token vocabulary, 12 layers x 512, 8 heads, 2,048 MLP, 77 positions, quick_gelu;
- vision tower: 224 px in 32 px patches, 12 layers x 768, 12 heads, 3,072 MLP, quick_gelu;
- projection 512, ``logit_scale`` initialised at 2.6592.

The numbers are :data:`mgtoolkit.models.architectures.CLIP_B32`. The tokenizer is the tiny CLIP's
small CLIP-format BPE (:mod:`mgtoolkit.models.tiny.clip`; its ids stay below the real vocabulary size).

Usage::

    python benchmarks/bench_clip.py --work /tmp/clip-bench            # build, then measure
    python benchmarks/bench_clip.py --hf-cache ~/.cache/huggingface/hub --build-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mgtoolkit.models.architectures import CLIP_B32, clip_preprocessor
from mgtoolkit.models.tiny.clip import write_clip_tokenizer_files

REPO = "openai/clip-vit-base-patch32"
REVISION = "0000000000000000000000000000000000000000"
TEXT, VISION, PROJECTION = CLIP_B32["text"], CLIP_B32["vision"], CLIP_B32["projection"]
_TORCH_LINEAR = (
    "q_proj.weight",
    "k_proj.weight",
    "v_proj.weight",
    "out_proj.weight",
    "fc1.weight",
    "fc2.weight",
)


def write_fullsize_clip(folder: Path) -> Path:
    """Write the full-size random CLIP into ``folder`` in transformers' layout; return ``folder``."""
    import paddle
    from ppdiffusers.transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    paddle.seed(0)
    config = CLIPConfig.from_text_vision_configs(
        CLIPTextConfig(**TEXT), CLIPVisionConfig(**VISION), projection_dim=PROJECTION["projection_dim"]
    )
    model = CLIPModel(config)
    state = {}
    for key, value in model.state_dict().items():
        array = value.numpy()
        if key.endswith(_TORCH_LINEAR) or key.endswith("_projection.weight"):
            array = array.T  # paddle's Linear is [in, out]; torch's [out, in]
        state[key] = np.ascontiguousarray(array)
    del model
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    hf_config = {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        **PROJECTION,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": {**TEXT, "model_type": "clip_text_model"},
        "vision_config": {**VISION, "model_type": "clip_vision_model"},
    }
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    write_clip_tokenizer_files(folder)
    tokenizer = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    processor = clip_preprocessor(224)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    return folder


def lay_in_hf_cache(hub: Path) -> Path:
    """The full-size CLIP as its first download leaves it in the Hugging Face cache ``hub``."""
    repo = hub / ("models--" + REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    if not (snapshot / "model.safetensors").is_file():
        write_fullsize_clip(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION, encoding="utf-8")
    return snapshot


_MEASURE = """
import json, resource, sys, time
t0 = time.perf_counter()
import mgtoolkit as mg
from mgtoolkit.models import weights
t1 = time.perf_counter()
tags = mg.tag_image(mg.example_image(), captioner=sys.argv[1], keep_loaded=True)
t2 = time.perf_counter()
again = mg.tag_image(mg.example_image(), captioner=sys.argv[1], keep_loaded=True)
t3 = time.perf_counter()
print(json.dumps({"load_and_tag_s": round(t2 - t1, 2), "tag_s": round(t3 - t2, 2),
                  "conversions": weights.conversions_done(),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "caption": tags.caption}))
"""


def measure(captioner: str, env: dict) -> dict:
    """One fresh process: load the captioner, tag the example image twice; its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, captioner], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mgtoolkit-clip-bench"))
    parser.add_argument("--hf-cache", type=Path, help="lay the model in this Hugging Face cache")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    hub = args.hf_cache or args.work / "hub"
    t0 = time.perf_counter()
    snapshot = lay_in_hf_cache(hub)
    print(f"laid out in {time.perf_counter() - t0:.1f} s: {snapshot}")
    if args.build_only:
        return
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "MGTOOLKIT_CACHE": str(args.work / "cache"),
        "MGTOOLKIT_MODEL": "audioldm-s-full-v2",
    }
    for run in ("first load (converts once)", "later load (the converted copy)"):
        print(run, json.dumps(measure("clip", env)))


if __name__ == "__main__":
    main()
