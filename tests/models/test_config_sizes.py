"""Issue 24: sizes in a model's configuration. A configuration that is not a small regular file, or
declares sizes no tensor backs, is refused in one line before anything is built; the published
models' sizes pass.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from crafted_models import _one_line, _tiny_pipeline, _tiny_writer

from mgtoolkit.errors import ModelUnavailableError

# --- configuration files that are not files of a configuration's size ----------------------------

_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import mgtoolkit as mg
from mgtoolkit.models import writers
kind, folder = sys.argv[1], sys.argv[2]
try:
    if kind == "writer":
        writers.load_writer(writers.resolve_writer(folder))
    else:
        mg.load_model(folder)
    print("LOADED")
except BaseException as exc:
    print(type(exc).__name__, str(exc).replace(chr(10), "|"))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "rel", "how"),
    [
        ("writer", "config.json", "dev-zero"),
        ("pipeline", "model_index.json", "dev-zero"),
        ("pipeline", "model_index.json", "huge"),
        ("pipeline", "unet/config.json", "huge"),
        ("writer", "tokenizer_config.json", "fifo"),
    ],
)
def test_a_config_that_is_not_a_small_regular_file_is_one_line(private_cache, kind, rel, how):
    """``config.json -> /dev/zero`` was read until memory ran out (writer=, before any link check);
    a FIFO blocked the load for ever; a 100 MB (sparse) configuration was read whole. Each is
    refused, in one line, under a memory limit in a child interpreter."""
    import subprocess
    import sys

    folder = _tiny_writer(private_cache, "cfg") if kind == "writer" else _tiny_pipeline(private_cache, "cfg")
    target = folder / rel
    target.unlink()
    if how == "dev-zero":
        target.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(target)
    else:
        with open(target, "wb") as fh:
            fh.write(b'{"_class_name": "AudioLDMPipeline", "x": "')
            fh.truncate(100 << 20)
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, kind, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.split()[0] in ("InvalidInputError", "ModelUnavailableError"), last
    assert "MemoryError" not in last and "Traceback" not in last, last


# --- sizes a configuration declares ----------------------------------------------------------------

_SIZES_UNDER_LIMIT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import mgtoolkit as mg
from mgtoolkit.models import clap, clip_tagger, writers
for kind, folder in json.loads(sys.argv[1]):
    try:
        if kind == "writer":
            writers.load_writer(writers.resolve_writer(folder))
        elif kind == "clap":
            clap.load_clap(folder)
        elif kind == "captioner":
            clip_tagger.load_clip_parts(folder, name="bomb")
        else:
            mg.load_model(folder)
        print("LOADED", flush=True)
    except BaseException as exc:
        print(type(exc).__name__, str(exc).replace(chr(10), "|"), flush=True)
"""

_PIPELINE_BOMBS = [
    ("text_encoder/config.json", ("vocab_size",), 10**9),
    ("text_encoder/config.json", ("max_position_embeddings",), 1 << 23),  # under the cap: vs tensors
    ("text_encoder/config.json", ("hidden_size",), 1e9),  # a float
    ("unet/config.json", ("block_out_channels",), [32, 1 << 22]),
    ("vae/config.json", ("layers_per_block",), 1 << 20),
    ("scheduler/scheduler_config.json", ("num_train_timesteps",), 2 * 10**9),
    ("tokenizer/tokenizer_config.json", ("model_max_length",), 1 << 36),
]
_WRITER_BOMBS = [
    ("config.json", ("vocab_size",), 10**9),
    ("config.json", ("max_position_embeddings",), 1 << 24),
    ("config.json", ("intermediate_size",), 1 << 22),
    ("config.json", ("num_hidden_layers",), 1 << 20),
    ("generation_config.json", ("max_new_tokens",), 10**12),
]
_CLAP_BOMBS = [
    ("config.json", ("text_config", "vocab_size"), 1 << 24),
    ("config.json", ("audio_config", "spec_size"), 1 << 22),
    ("config.json", ("audio_config", "depths"), [2, 1 << 20]),
    ("preprocessor_config.json", ("fft_window_size",), 1 << 22),
    ("preprocessor_config.json", ("nb_max_samples",), 1 << 30),
]
_CAPTIONER_BOMBS = [
    ("config.json", ("vision_config", "image_size"), 1 << 19),
    ("config.json", ("text_config", "max_position_embeddings"), 1 << 23),
    ("preprocessor_config.json", ("crop_size",), 1 << 20),
]


def _set(path: Path, keys: tuple[str, ...], value) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    inner = data
    for key in keys[:-1]:
        inner = inner[key]
    inner[keys[-1]] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def _bomb_folders(root: Path, route: str) -> list[tuple[str, str, str, str]]:
    """``(kind, folder, file, key)`` for each size bomb of ``route``, each in a folder of its own."""
    from fixtures.hub_layouts import write_diffusers_folder

    from mgtoolkit.models.tiny.clap import tiny_clap_dir
    from mgtoolkit.models.tiny.clip import tiny_clip_dir
    from mgtoolkit.models.tiny.llm import tiny_dir as tiny_llm_dir
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    source, bombs, kind = {
        "pipeline": (lambda: tiny_dir("tiny"), _PIPELINE_BOMBS, "model"),
        "torch": (
            lambda: write_diffusers_folder(tiny_dir("tiny"), root / "torch-src"),
            _PIPELINE_BOMBS,
            "model",
        ),
        "writer": (lambda: tiny_llm_dir("qwen2"), _WRITER_BOMBS, "writer"),
        "clap": (tiny_clap_dir, _CLAP_BOMBS, "clap"),
        "captioner": (tiny_clip_dir, _CAPTIONER_BOMBS, "captioner"),
    }[route]
    src = Path(source())
    out = []
    for i, (rel, keys, value) in enumerate(bombs):
        folder = root / f"{route}-bomb-{i}"
        shutil.copytree(src, folder)
        _set(folder / rel, keys, value)
        out.append((kind, str(folder), rel, ".".join(keys)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("route", ["pipeline", "torch", "writer", "clap", "captioner"])
def test_a_declared_size_no_tensor_backs_is_refused_before_anything_is_built(private_cache, route):
    """A configuration declaring a vocabulary, position table, channel count, layer count, scheduler
    length, tokenizer length or feature extractor window of 1e9 (or one the tensors on disk cannot
    back) made paddle/numpy allocate it (8 to 128 GB) while building the model, before any weight was
    compared: swap or the OOM killer without a memory limit. Each is refused in one line naming the
    file and the key, before anything is built, in a child under a 3 GiB address-space limit; no
    entry is written."""
    import subprocess
    import sys

    cases = _bomb_folders(private_cache, route)
    done = subprocess.run(
        [sys.executable, "-c", _SIZES_UNDER_LIMIT, json.dumps([c[:2] for c in cases])],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()[-len(cases) :]
    assert len(lines) == len(cases), done.stdout[-2000:]
    for (_, folder, rel, key), line in zip(cases, lines, strict=True):
        assert line.startswith("ModelUnavailableError "), (key, line)
        assert f"{Path(folder, rel)}: {key}=" in line, (key, line)
        assert "crafted configuration" in line and "MemoryError" not in line, line
    converted = private_cache / "mg-cache" / "converted"
    assert not converted.exists() or not [p for p in converted.iterdir() if "bomb" in p.name]


# Published configurations (the sizes only) of the real models mgtoolkit loads, with a lower bound
# of the elements their weights hold: none may be refused.
_REAL_CONFIGS = {
    "qwen2-0.5b": (
        {
            "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151643,
            "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 131072,
            "max_window_layers": 24, "num_attention_heads": 14, "num_hidden_layers": 24,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "sliding_window": 131072, "tie_word_embeddings": True, "vocab_size": 151936,
        },
        494_000_000,
    ),
    "chatglm-6b": (
        {
            "bos_token_id": 130004, "eos_token_id": 130005, "mask_token_id": 130000,
            "gmask_token_id": 130001, "pad_token_id": 3, "hidden_size": 4096, "inner_hidden_size": 16384,
            "max_sequence_length": 2048, "num_attention_heads": 32, "num_layers": 28,
            "position_encoding_2d": True, "vocab_size": 130528, "quantization_bit": 0, "pre_seq_len": None,
        },
        6_100_000_000,
    ),
    "chatglm2-6b": (
        {
            "padded_vocab_size": 65024, "hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128,
            "num_layers": 28, "seq_length": 32768, "multi_query_group_num": 2, "num_attention_heads": 32,
            "eos_token_id": 2, "pad_token_id": 0, "layernorm_epsilon": 1e-05,
        },
        6_200_000_000,
    ),
    "blip2-opt-2.7b": (
        {
            "num_query_tokens": 32,
            "qformer_config": {
                "vocab_size": 30522, "hidden_size": 768, "intermediate_size": 3072,
                "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
                "encoder_hidden_size": 1408, "cross_attention_frequency": 2,
            },
            "text_config": {
                "vocab_size": 50272, "hidden_size": 2560, "ffn_dim": 10240, "max_position_embeddings": 2048,
                "num_attention_heads": 32, "num_hidden_layers": 32, "word_embed_proj_dim": 2560,
                "bos_token_id": 2, "eos_token_id": 50118, "pad_token_id": 1, "max_length": 20, "top_k": 50,
            },
            "vision_config": {
                "hidden_size": 1408, "image_size": 224, "intermediate_size": 6144, "num_attention_heads": 16,
                "num_hidden_layers": 39, "patch_size": 14,
            },
        },
        3_700_000_000,
    ),
    "audioldm-l-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [256, 512, 768, 1280], "cross_attention_dim": [256, 512, 768, 1280],
            "attention_head_dim": 8, "projection_class_embeddings_input_dim": 512,
        },
        600_000_000,
    ),
    "audioldm-m-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [192, 384, 576, 960], "cross_attention_dim": [192, 384, 576, 960],
            "attention_head_dim": 8, "projection_class_embeddings_input_dim": 512,
        },
        300_000_000,
    ),
    "audioldm2-unet": (
        {
            "sample_size": 128, "in_channels": 8, "out_channels": 8, "layers_per_block": 2,
            "block_out_channels": [128, 256, 384, 640], "attention_head_dim": 8,
            "cross_attention_dim": [[None], [768, 1024], [768, 1024], [768, 1024]],
        },
        300_000_000,
    ),
    "audioldm2-gpt2": (
        {"n_ctx": 1024, "n_positions": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_inner": None,
         "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256},
        120_000_000,
    ),
    "audioldm2-flan-t5-large": (
        {"vocab_size": 32128, "d_model": 1024, "d_ff": 2816, "d_kv": 64, "num_layers": 24,
         "num_decoder_layers": 24, "num_heads": 16, "relative_attention_num_buckets": 32,
         "relative_attention_max_distance": 128, "n_positions": 512, "eos_token_id": 1},
        335_000_000,
    ),
    "audioldm2-projection": (
        {"text_encoder_dim": 512, "text_encoder_1_dim": 1024, "langauge_model_dim": 768}, 1_180_000
    ),
    "musicldm-vocoder": (
        {"model_in_dim": 64, "sampling_rate": 16000, "upsample_initial_channel": 1024,
         "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
         "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3},
        50_000_000,
    ),
}  # fmt: skip

_REAL_OTHER_CONFIGS = {
    "scheduler_config.json": {
        "num_train_timesteps": 1000, "steps_offset": 1, "beta_end": 0.0195,
        "lambda_min_clipped": float("-inf"),  # DPMSolverMultistepScheduler's default
    },
    "preprocessor_config.json": {
        "chunk_length_s": 10, "feature_size": 64, "fft_window_size": 1024, "hop_length": 480,
        "max_length_s": 10, "sampling_rate": 48000, "nb_max_samples": 480000, "nb_max_frames": 1000,
        "frequency_min": 50, "frequency_max": 14000,
    },
    "tokenizer_config.json": {"model_max_length": 1000000000000000019884624838656, "bos_token": "</s>"},
    "generation_config.json": {"bos_token_id": 151643, "max_new_tokens": 2048, "top_k": 20},
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(_REAL_CONFIGS))
def test_the_sizes_of_real_models_pass(model):
    from mgtoolkit.models.config_sizes import check_config

    config, elements = _REAL_CONFIGS[model]
    check_config(config, Path(model, "config.json"), elements=elements)
    for rel, other in _REAL_OTHER_CONFIGS.items():
        check_config(other, Path(model, rel))


@pytest.mark.slow  # seconds: every tiny model built and checked (make test runs it)
def test_the_sizes_of_real_model_folders_pass(private_cache):
    """Every tiny model (pipelines, their torch layout, writers, CLAP, CLIP) passes the size check
    against its own tensors (the full-size ones: see test_the_sizes_of_real_models_pass)."""
    from fixtures.hub_layouts import write_diffusers_folder

    from mgtoolkit.models.config_sizes import check_sizes
    from mgtoolkit.models.store import _walk
    from mgtoolkit.models.tiny.clap import tiny_clap_dir
    from mgtoolkit.models.tiny.clip import tiny_clip_dir
    from mgtoolkit.models.tiny.llm import TINY_KINDS
    from mgtoolkit.models.tiny.llm import tiny_dir as tiny_llm_dir
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    folders = [tiny_dir(n) for n in ("tiny", "tiny-musicldm", "tiny-audioldm2")]
    folders += [write_diffusers_folder(tiny_dir("tiny"), private_cache / "torch-layout")]
    folders += [tiny_llm_dir(kind) for kind in TINY_KINDS] + [tiny_clap_dir(), tiny_clip_dir()]
    for folder in folders:
        check_sizes(Path(folder), _walk(Path(folder)), name=str(folder))
    # and as their classes complete them with the libraries' defaults
    from mgtoolkit.models.config_sizes import check_defaults
    from mgtoolkit.models.convert import _architecture_class, _part_classes

    for folder in folders:
        folder = Path(folder)
        model_class = None if (folder / "model_index.json").is_file() else _architecture_class(folder)
        check_defaults(folder, _part_classes(folder, model_class), name=str(folder))


def test_sizes_left_to_the_library_defaults_are_checked_too(private_cache):
    """A writer's config.json without its sizes is built with paddlenlp's defaults (Qwen2's: a
    7-billion-parameter geometry) around a few thousand tensor elements: refused like declared sizes."""
    from mgtoolkit.models import writers

    folder = _tiny_writer(private_cache, "defaults")
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "max_position_embeddings",
    ):
        data.pop(key, None)
    (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
    try:
        with pytest.raises(ModelUnavailableError) as caught:
            writers.load_writer(writers.resolve_writer(str(folder)))
    finally:
        writers.release_writers()
    _one_line(caught, "writer=", f"{folder / 'config.json'}: ", "crafted configuration")
    assert not list((private_cache / "mg-cache" / "converted").glob("defaults-*"))


@pytest.mark.parametrize(
    ("rel", "config", "key"),
    [
        ("scheduler_config.json", {"num_train_timesteps": 2e9}, "num_train_timesteps"),
        ("scheduler_config.json", {"num_train_timesteps": 1000, "steps_offset": 10**6}, "steps_offset"),
        ("config.json", {"vocab_size": float("nan"), "hidden_size": 8}, "vocab_size"),
        ("config.json", {"vocab_size": 100, "n_embd": 8, "n_positions": 1 << 14}, "n_positions"),
        (
            "config.json",
            {"vocab_size": 100, "hidden_size": 4096, "num_hidden_layers": 1000},
            "num_hidden_layers",
        ),
        ("config.json", {"upsample_rates": [64, 64, 64]}, "upsample_rates"),
        (
            "config.json",
            {"text_config": {"vision": {"hidden_size": 1 << 24}}},
            "text_config.vision.hidden_size",
        ),
        ("preprocessor_config.json", {"size": {"shortest_edge": 1 << 16}}, "size.shortest_edge"),
        (
            "preprocessor_config.json",
            {"sampling_rate": 48000, "max_length_s": 3600, "hop_length": 1},
            "max_length_s",
        ),
        ("tokenizer_config.json", {"model_max_length": 1 << 40}, "model_max_length"),
    ],
)
def test_each_size_rule_names_its_key(rel, config, key):
    """One line naming the file and the (nested) key, for each rule of config_sizes, without paddle."""
    from mgtoolkit.models.config_sizes import check_config

    where = Path("crafted", rel)
    with pytest.raises(ModelUnavailableError) as caught:
        check_config(
            config, where, elements=10_000 if rel == "config.json" else None, field="writer", name="x"
        )
    _one_line(caught, "writer='x'", f"{where}: {key}=", "crafted configuration")
