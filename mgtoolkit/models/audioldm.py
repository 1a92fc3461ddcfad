"""AudioLDM-family pipelines from ppdiffusers: loading (cached) and one generation call.

paddle and ppdiffusers are imported inside the functions, never at module import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GenerationCancelled, InvalidInputError, MgtoolkitWarning, ModelUnavailableError
from ..runtime import PIPELINE_LOCK, import_paddle
from .registry import ModelSpec
from .speedups import SpeedUps

if TYPE_CHECKING:
    from .plan import Plan

__all__ = [
    "SCHEDULERS",
    "LoadedModel",
    "load",
    "unload",
    "latent_shape",
    "initial_latents",
    "PromptTruncatedWarning",
]

# name -> ppdiffusers scheduler class; "ddim" is what AudioLDM ships with.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++-karras": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


class PromptTruncatedWarning(MgtoolkitWarning):
    """The prompt was longer than the text encoder takes and its end was dropped."""


@dataclass(frozen=True)
class LoadedModel(SpeedUps):
    """A loaded pipeline and the facts about it that the core needs; its speed-ups go on and off
    with the ``enable_*``/``disable_*`` methods (:class:`~mgtoolkit.models.speedups.SpeedUps`)."""

    spec: ModelSpec
    pipe: Any
    device: str
    dtype: str
    load_s: float
    allow_unsafe_pickle: bool = False
    weights: str = ""
    """The folder the weights were read from (a converted copy for torch-format weights)."""
    plan: Plan | None = None
    """How it runs (:func:`mgtoolkit.models.plan.plan`, settled once the weights told the UNet's size)."""
    report: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """What :func:`mgtoolkit.accel.optimize` applied (``{}``: the plain pipeline), kept up to date
    by the ``enable_*``/``disable_*`` methods."""
    _changed: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return int(np.prod(self.pipe.vocoder.config.upsample_rates))

    @property
    def min_audio_length_in_s(self) -> float:
        """One latent frame: the shortest clip the pipeline accepts (0.04 s for AudioLDM)."""
        return self.hop_length * int(self.pipe.vae_scale_factor) / self.sample_rate

    def snap_seconds(self, seconds: float) -> float:
        """``seconds`` rounded to a whole number of samples (``3.0`` for ``2.9999999999999996``)."""
        return round(seconds * self.sample_rate) / self.sample_rate

    def pipeline_seconds(self, seconds: float) -> float:
        """What to pass ppdiffusers so that it keeps exactly ``round(seconds * rate)`` samples.

        The pipelines cut to ``int(audio_length_in_s * rate)``; half a sample more makes that cut
        land on the rounded count whatever the float error.
        """
        return (round(seconds * self.sample_rate) + 0.5) / self.sample_rate

    @property
    def max_prompt_tokens(self) -> int:
        return int(self.pipe.tokenizer.model_max_length)

    def info(self) -> dict[str, Any]:
        plan = self.running_plan
        return {
            "name": self.spec.name,
            "source": self.spec.source,
            "pipeline": type(self.pipe).__name__,
            "license": self.spec.license,
            "device": self.device,
            "dtype": plan.run_dtype if self._changed and plan is not None else self.dtype,
            **({"allow_unsafe_pickle": True} if self.allow_unsafe_pickle else {}),
            **({"plan": plan.record()} if plan is not None else {}),
        }


def load(spec: ModelSpec, plan: Plan) -> LoadedModel:
    """Load (once per process and ``plan``) the pipeline of ``spec`` as ``plan`` says.

    The plan (:func:`mgtoolkit.models.plan.plan`) is the cache key: the device, the dtype the
    weights load in, the speed-ups :func:`mgtoolkit.accel.optimize` applies, low-memory mode.
    Weights in any published form load (see :mod:`mgtoolkit.models.weights`); pickled ``.bin`` /
    ``.pdparams`` files are read through :mod:`mgtoolkit.models.safe_pickle`, with its full
    unpickler only when ``plan.allow_unsafe_pickle``. :func:`mgtoolkit.load_model` is the public door.
    """
    with PIPELINE_LOCK:
        return _load_cached(spec, plan)


def unload() -> None:
    """Forget every loaded pipeline and give the memory back."""
    with PIPELINE_LOCK:
        _load_cached.cache_clear()
    gc.collect()
    import sys

    if "paddle" in sys.modules:
        paddle = sys.modules["paddle"]
        if paddle.device.is_compiled_with_cuda():
            paddle.device.cuda.empty_cache()


def import_ppdiffusers():
    """Import ppdiffusers (quietly, through :func:`~mgtoolkit.models.model_files.import_ppdiffusers_quietly`),
    or say which package to install."""
    from .model_files import import_ppdiffusers_quietly

    import_paddle_or_explain()
    return import_ppdiffusers_quietly()


def import_paddle_or_explain():
    try:
        return import_paddle()
    except ImportError as exc:
        raise ImportError(
            "mgtoolkit needs PaddlePaddle to run a model: pip install 'mgtoolkit[cpu]' on a CPU, or the "
            f"paddlepaddle-gpu build matching your CUDA on a GPU ({exc})"
        ) from exc


@lru_cache(maxsize=2)
def _load_cached(spec: ModelSpec, plan: Plan) -> LoadedModel:
    t0 = time.perf_counter()
    paddle = import_paddle()
    paddle.set_device(plan.device)
    import_ppdiffusers()
    folder = _weights_folder(spec, plan.allow_unsafe_pickle)
    from ppdiffusers.utils import logging as pp_logging

    bar_was_on = pp_logging.is_progress_bar_enabled()
    pp_logging.disable_progress_bar()  # the per-component loading bar is noise in a notebook
    try:
        cls = _pipeline_class(spec, folder)
        if cls.__name__ != spec.pipeline:  # a hub id whose name did not tell its pipeline
            spec = dataclasses.replace(spec, pipeline=cls.__name__)
        pipe = _from_pretrained(cls, spec, str(folder), plan.dtype)
    finally:
        if bar_was_on:
            pp_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    for part in ("unet", "vae", "text_encoder", "vocoder"):
        module = getattr(pipe, part, None)
        if module is not None and hasattr(module, "eval"):
            module.eval()
    plan, report = _prepare(pipe, plan)
    seconds = time.perf_counter() - t0
    return LoadedModel(
        spec, pipe, plan.device, plan.run_dtype, seconds, plan.allow_unsafe_pickle, str(folder), plan, report
    )


def _prepare(pipe: Any, plan: Plan) -> tuple[Plan, dict[str, Any]]:
    """Apply ``plan``'s speed-ups to ``pipe`` (settling ``full_size_only`` on its UNet); the settled
    plan and what was applied."""
    from .. import accel
    from ..accel.onednn import full_size

    if plan.full_size_only:
        plan = plan.settled(getattr(pipe, "unet", None) is not None and full_size(pipe.unet))
    if not plan.prepares:
        return plan, {}
    report = accel.optimize(
        pipe,
        plan.device,
        threads=None if plan.optimize else 1,
        onednn=plan.modules,
        precision="bfloat16" if plan.predictors == "bfloat16" else "float32",
        low_memory=plan.low_memory,
    )
    return plan, dict(report)


def _weights_folder(spec: ModelSpec, allow_unsafe: bool):
    """The folder ppdiffusers is given for ``spec``: always one mgtoolkit built, from a local folder,
    a Hugging Face cache snapshot or a download: configurations, tokenizer files and safetensors
    only, torch weights and pickles converted (see :func:`mgtoolkit.models.weights.paddle_folder`);
    a tiny model's own build in a cache nobody else can write into."""
    from . import weights

    if spec.is_tiny:
        from .tiny.pipelines import tiny_dir

        weights.check_cache_root(name=spec.name)
        return tiny_dir(spec.source)
    folder = weights.locate(spec.source)
    if folder is None:
        size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
        folder = weights.fetch_repo(spec.source, name=spec.name, size=size)
    return weights.paddle_folder(folder, name=spec.name, allow_unsafe=allow_unsafe)


def _pipeline_class(spec: ModelSpec, folder):
    """The ppdiffusers pipeline class the folder's ``model_index.json`` names; a preset must get the
    pipeline it is (a MusicLDM folder passed for an AudioLDM preset is refused)."""
    from pathlib import Path

    from .model_files import MODEL_INDEX, read_model_index
    from .registry import PRESETS

    index = Path(folder) / MODEL_INDEX
    name = read_model_index(Path(folder), name=spec.name).get("_class_name")
    if name is None:
        raise ModelUnavailableError(
            f"model={spec.name!r}: {index} names no _class_name (no pipeline); download the model again."
        )
    if not isinstance(name, str):  # ["module", "Class"]: a pipeline in the folder's own module.py
        raise ModelUnavailableError(
            f"model={spec.name!r}: {index}: _class_name {name!r} names a custom pipeline module; mgtoolkit "
            "reads configurations, tokenizer files and tensors from a model, never its code."
        )
    if spec.name in PRESETS and name != spec.pipeline:
        raise ModelUnavailableError(
            f"model={spec.name!r}: {folder} holds a {name}, and the preset is a {spec.pipeline}; "
            f"pass the folder itself as model= (its own pipeline is then used) or fetch the preset again."
        )
    cls = getattr(import_ppdiffusers(), name, None)
    if cls is None or name not in _PIPELINES:
        raise ModelUnavailableError(
            f"model={spec.name!r}: {folder} holds a {name}, which is not a text-to-audio pipeline "
            f"mgtoolkit runs; pass an {', '.join(sorted(_PIPELINES))} folder."
        )
    return cls


_PIPELINES = ("AudioLDMPipeline", "AudioLDM2Pipeline", "MusicLDMPipeline")


def _from_pretrained(cls, spec: ModelSpec, folder: str, dtype: str):
    """``cls.from_pretrained`` on a paddle-format folder (modules built empty and filled from the
    files: no second copy of the weights), with one clear line when the files do not load."""
    paddle = import_paddle()
    local_only = {
        "from_hf_hub": False,
        "from_aistudio": False,
        "from_diffusers": False,
    }  # our folder as it is
    from .model_files import load_despite_stray_warnings

    try:
        return load_despite_stray_warnings(
            lambda: cls.from_pretrained(
                folder, low_cpu_mem_usage=True, paddle_dtype=getattr(paddle, dtype), **local_only
            )
        )
    except Exception as exc:  # noqa: BLE001 - paddlenlp/ppdiffusers raise anything; one line for the user
        if isinstance(exc, ModelUnavailableError):
            raise
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelUnavailableError(
            f"model={spec.name!r}: {folder} does not load as a {cls.__name__} ({type(exc).__name__}: {detail}); "
            "some files are missing or damaged: download the model again, or pass another folder."
        ) from None


def holding_pipeline_lock(fn: Callable) -> Callable:
    """Decorate ``fn`` to run under :data:`PIPELINE_LOCK` (it drives a cached pipeline's modules)."""

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with PIPELINE_LOCK:
            return fn(*args, **kwargs)

    return locked


@contextlib.contextmanager
def seeded_generator(paddle):
    """Yield ``make(seed)`` giving ppdiffusers generators; leave paddle's global RNG as it was.

    With ppdiffusers imported, ``paddle.Generator()`` is a state tracker whose ``manual_seed``
    reseeds paddle's global CPU generator and keeps a named entry for ever. Here the caller's
    random stream is restored afterwards and the entries are removed. (Only stochastic samplers
    draw from it; the starting noise comes from numpy.)
    """
    tracker = paddle.Generator()
    state = paddle.get_rng_state()
    names: list[str] = []

    def make(seed: int) -> str:
        names.append(tracker.manual_seed(seed, generator_name=f"mgtoolkit-{uuid.uuid4().hex}"))
        return names[-1]

    try:
        yield make
    finally:
        for name in names:
            tracker.remove(name)
        paddle.set_rng_state(state)


def make_scheduler(pipe, name: str | None):
    """A fresh scheduler of the named kind, configured from the model's own."""
    if name is None:
        return pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    if name not in SCHEDULERS:
        raise InvalidInputError(
            "scheduler",
            name,
            "is not a known sampler",
            f"use one of {', '.join(SCHEDULERS)} or None for the model's own",
        )
    cls = getattr(import_ppdiffusers(), SCHEDULERS[name])
    extra = {"use_karras_sigmas": True} if name.endswith("karras") else {}
    if name.startswith("dpm++"):
        extra["algorithm_type"] = "dpmsolver++"
    return cls.from_config(pipe.scheduler.config, **extra)


def latent_shape(model: LoadedModel, audio_length_in_s: float) -> tuple[int, int, int]:
    """(channels, height, width) of one candidate's latents, as the pipeline computes them."""
    pipe = model.pipe
    scale = pipe.vae_scale_factor
    height = int(audio_length_in_s * model.sample_rate / model.hop_length)
    height = int(np.ceil(height / scale)) * scale
    return (
        int(pipe.unet.config.in_channels),
        height // scale,
        int(pipe.vocoder.config.model_in_dim) // scale,
    )


def initial_latents(shape: tuple[int, ...], seeds: list[int]) -> np.ndarray:
    """Standard-normal starting latents, one block per seed, drawn with numpy.

    The seed alone decides them, whatever else ran in the process before.
    """
    return np.stack([np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) for seed in seeds])


def encode_prompts(model: LoadedModel, prompts: list[str]):
    """CLAP text embeddings of ``prompts`` in one batch, padded to the longest, L2-normalised.

    Equal (to float precision) to the pipeline's own encoding, which pads to 512 tokens: CLAP
    pools the first token under the attention mask, so padding changes no value, only the cost.
    """
    paddle = import_paddle()
    pipe = model.pipe
    limit = model.max_prompt_tokens
    inputs = pipe.tokenizer(
        prompts,
        padding="longest",
        truncation=True,
        max_length=limit,
        return_attention_mask=True,
        return_tensors="pd",
    )
    _warn_truncation(pipe.tokenizer, prompts, limit)
    out = pipe.text_encoder(inputs.input_ids, attention_mask=inputs.attention_mask)
    embeds = paddle.nn.functional.normalize(out.text_embeds, axis=-1)
    return embeds.cast(pipe.unet.dtype)


def _warn_truncation(tokenizer, prompts: list[str], limit: int) -> None:
    for text in prompts:
        ids = tokenizer(text, truncation=False)["input_ids"]
        if len(ids) > limit:
            kept = tokenizer.decode(ids[1 : limit - 1])
            warnings.warn(
                PromptTruncatedWarning(
                    f"prompt is {len(ids)} tokens; the text encoder takes {limit}, so only "
                    f"{kept[-40:]!r}... and what comes before it is used"
                ),
                stacklevel=4,
            )


def run(
    model: LoadedModel,
    *,
    prompt: str,
    negative_prompt: str | None,
    audio_length_in_s: float,
    num_inference_steps: int,
    guidance_scale: float,
    seeds: list[int],
    scheduler: str | None = None,
    callback: Callable[[int, int, Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """One pipeline call making ``len(seeds)`` waveforms; returns (waveforms [n, samples], timings).

    ``callback(step, num_inference_steps, latents)`` gets the latents as numpy (copied from the
    device only when there is a callback); a set ``cancel`` stops at the next step with
    :class:`~mgtoolkit.errors.GenerationCancelled`.
    """
    GenerationCancelled.raise_if_set(cancel, "before the first step")
    paddle = import_paddle()
    pipe = model.pipe
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # 1. Starting noise from the seeds (numpy), so the seed owns the result.
    audio_length_in_s = model.pipeline_seconds(audio_length_in_s)
    shape = latent_shape(model, audio_length_in_s)
    latents = paddle.to_tensor(initial_latents(shape, seeds)).cast(pipe.unet.dtype)
    # 2. A per-call copy of the pipeline with its own scheduler (the cached one stays untouched).
    call_pipe = type(pipe)(**{**pipe.components, "scheduler": make_scheduler(pipe, scheduler)})
    call_pipe.set_progress_bar_config(disable=True)
    kwargs: dict[str, Any] = {}
    # 3. Text: AudioLDM gets embeddings we encode in one short batch; others get the strings.
    with paddle.no_grad():
        if model.spec.pipeline == "AudioLDMPipeline":
            texts = [prompt] + ([negative_prompt or ""] if guidance_scale > 1.0 else [])
            embeds = encode_prompts(model, texts)
            kwargs["prompt_embeds"] = embeds[:1]
            if guidance_scale > 1.0:
                kwargs["negative_prompt_embeds"] = embeds[1:]
        else:
            kwargs.update(prompt=prompt, negative_prompt=negative_prompt)
    timings["text_s"] = time.perf_counter() - t0
    marks: dict[str, float] = {}

    def on_step(step: int, timestep: int, lat) -> None:
        marks.setdefault("first", time.perf_counter())
        marks["last"] = time.perf_counter()
        GenerationCancelled.raise_if_set(cancel, f"after step {step + 1} of {num_inference_steps}")
        if callback is not None:
            callback(step, num_inference_steps, lat.numpy())

    # 4. The pipeline itself: denoise, decode the mel with the VAE, vocode. MusicLDM and AudioLDM 2
    #    re-order several candidates by CLAP score, which would break the seed of each: one call
    #    per seed (mgtoolkit ranks afterwards, keeping each clip's seed).
    groups = (
        [[i] for i in range(len(seeds))]
        if model.spec.pipeline in ("MusicLDMPipeline", "AudioLDM2Pipeline")
        else [list(range(len(seeds)))]
    )
    audios = []
    with PIPELINE_LOCK, seeded_generator(paddle) as seed_generator:
        for group in groups:
            out = call_pipe(
                audio_length_in_s=audio_length_in_s,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                num_waveforms_per_prompt=len(group),
                latents=latents[group[0] : group[-1] + 1],
                generator=seed_generator(int(seeds[group[0]])),
                callback=on_step,
                callback_steps=1,
                output_type="np",
                **kwargs,
            )
            audios.append(np.asarray(out.audios, dtype=np.float32).reshape(len(group), -1))
    end = time.perf_counter()
    timings["denoise_s"] = marks.get("last", end) - t0 - timings["text_s"]
    timings["decode_s"] = end - marks.get("last", end)
    timings["total_s"] = end - t0
    return np.concatenate(audios), timings
