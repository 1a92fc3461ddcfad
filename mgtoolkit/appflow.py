"""A drop-in for PaddleMIX's ``Appflow(app="music_generation", models=[...])``.

The example of PaddleMIX's music_generation document runs with only its import changed
(``from mgtoolkit.appflow import Appflow``) and returns ``{'result': ...}`` as it does: the
waveform (numpy, 16 kHz) for music, the text for a caption. Unlike the original,
``negative_prompt``, ``guidance_scale`` and the generator's seed take effect, the chat model's
answer is cleaned before it becomes the music prompt, and a missing or unknown ``models`` says so.

>>> from mgtoolkit.appflow import Appflow
>>> task = Appflow(app="music_generation", models=["cvssp/audioldm"])
>>> wave = task(prompt="smooth jazz", audio_length_in_s=1, num_inference_steps=2, seed=1)["result"]  # doctest: +SKIP

With ``MGTOOLKIT_MODEL=tiny`` every model name maps to the tiny models, so the example runs offline.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .errors import InvalidInputError

__all__ = ["Appflow", "APPS"]

APPS = ("music_generation",)
_EXAMPLE_MODELS = (
    "models=['cvssp/audioldm'], ['miniGPT4/MiniGPT4-7B'] or ['THUDM/chatglm-6b', 'cvssp/audioldm']"
)
_CALL_KEYS = {
    "prompt",
    "negative_prompt",
    "num_inference_steps",
    "audio_length_in_s",
    "guidance_scale",
    "generator",
    "seed",
    "image",
    "minigpt4_text",
    "instruction",
}


def _classify(name: Any) -> tuple[str, str]:
    """``("captioner" | "writer" | "audio", resolved name)`` for one entry of ``models``."""
    from .models.captioners import resolve_captioner
    from .models.registry import PRESETS, resolve_model
    from .models.writers import resolve_writer

    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name).strip():
        raise InvalidInputError(
            "models", name, "holds an entry that is not a model name", f"pass {_EXAMPLE_MODELS}"
        )
    for kind, resolve in (("captioner", resolve_captioner), ("writer", resolve_writer)):
        try:
            return kind, resolve(name).name
        except InvalidInputError:
            pass
    try:
        spec = resolve_model(name)
    except InvalidInputError:
        spec = None
    if spec is not None and (spec.name in PRESETS or spec.is_local or "ldm" in spec.name.lower()):
        return "audio", spec.name
    raise InvalidInputError(
        "models",
        name,
        "is not a model the music_generation app knows",
        f"pass {_EXAMPLE_MODELS}, or mgtoolkit presets / local model folders",
    )


def _seed_of(generator: Any, seed: Any) -> int | None:
    """The seed of a ``paddle.Generator().manual_seed(n)`` (or ``seed=`` given directly).

    Once ppdiffusers is imported, ``paddle.Generator`` is its RNG-state tracker, whose
    ``manual_seed(n)`` returns a state *name* (a time stamp) after calling ``paddle.seed(n)``; on the
    CPU that leaves the default CPU generator seeded with ``n``, which is where the seed is read.
    """
    if seed is not None or generator is None:
        return seed
    if isinstance(generator, (list, tuple)) and generator:
        generator = generator[0]
    if hasattr(generator, "initial_seed"):
        return int(generator.initial_seed()) % (2**32 - 16)
    if isinstance(generator, str) and _is_tracker_state(generator):
        from .runtime import import_paddle

        return int(import_paddle().base.core.default_cpu_generator().initial_seed()) % (2**32 - 16)
    raise InvalidInputError(
        "generator",
        generator,
        "is not a paddle.Generator",
        "pass paddle.Generator().manual_seed(120), or seed=120",
    )


def _is_tracker_state(name: str) -> bool:
    try:
        from ppdiffusers.utils.paddle_utils import RNG_STATE_TRACKER
    except ImportError:
        return False
    return name in RNG_STATE_TRACKER.states_


class Appflow:
    """PaddleMIX-style façade over :mod:`mgtoolkit` for the ``music_generation`` app.

    Parameters
    ----------
    app : str
        ``"music_generation"``.
    models : list of str
        Which stages this task runs, as in the PaddleMIX document:
        ``["cvssp/audioldm"]`` (text → music), ``["miniGPT4/MiniGPT4-7B"]`` (image → caption),
        ``["THUDM/chatglm-6b", "cvssp/audioldm"]`` (instruction → chat answer → music); a captioner,
        a writer and an audio model together run image → music. mgtoolkit preset names and local
        folders work too. With ``MGTOOLKIT_MODEL=tiny`` all map to the tiny models.

    Raises
    ------
    InvalidInputError
        Naming ``app`` or ``models`` when missing, unknown, or two of a kind.

    Examples
    --------
    >>> sorted(Appflow(app="music_generation", models=["THUDM/chatglm-6b", "cvssp/audioldm"]).stages)
    ['audio', 'writer']
    """

    def __init__(self, app: str = "music_generation", models: list[str] | str | None = None, **kwargs: Any):
        if app not in APPS:
            raise InvalidInputError(
                "app", app, "is not an app mgtoolkit provides", "use app='music_generation'"
            )
        if models is None or (not isinstance(models, str) and len(models) == 0):
            raise InvalidInputError(
                "models",
                models,
                "is missing (the original fails with KeyError: 'default')",
                f"pass {_EXAMPLE_MODELS}",
            )
        names = [models] if isinstance(models, (str, os.PathLike)) else list(models)
        self.app, self.models, self.stages = app, names, {}
        for name in names:
            kind, resolved = _classify(name)
            if kind in self.stages:
                raise InvalidInputError(
                    "models",
                    names,
                    f"names two {kind} models",
                    "pass at most one captioner, one chat model and one audio model",
                )
            self.stages[kind] = resolved
        if self._tiny:
            self.stages = {kind: "tiny" for kind in self.stages}
        self.options = kwargs

    @property
    def _tiny(self) -> bool:
        from .models.registry import default_model

        return default_model() == "tiny"

    def __repr__(self) -> str:
        return f"Appflow(app={self.app!r}, models={self.models!r}) -> {self.stages}"

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        """Run the task on keyword inputs, as PaddleMIX's ``task(...)``; returns ``{'result': ...}``.

        Inputs: ``prompt``, ``negative_prompt``, ``num_inference_steps``, ``audio_length_in_s``,
        ``guidance_scale``, ``generator`` (its seed is used) or ``seed``, ``image``,
        ``minigpt4_text`` (the question to the captioner), ``instruction`` (writer template).
        """
        unknown = sorted(set(inputs) - _CALL_KEYS)
        if unknown:
            raise InvalidInputError(
                unknown[0],
                inputs[unknown[0]],
                "is not an input of the music_generation app",
                f"use {', '.join(sorted(_CALL_KEYS))}",
            )
        seed = _seed_of(inputs.pop("generator", None), inputs.pop("seed", None))
        if "image" in inputs:
            return self._from_image(inputs, seed)
        if "prompt" not in inputs:
            raise InvalidInputError(
                "prompt", None, "is missing", "pass prompt='...' (or image=... for a caption)"
            )
        if "writer" in self.stages:
            return self._from_instruction(inputs, seed)
        return self._music(inputs.pop("prompt"), inputs, seed)

    # ---------------------------------------------------------------------------------------- stages

    def _require(self, kind: str, wanted: str) -> str:
        if kind not in self.stages:
            raise InvalidInputError(
                "models",
                self.models,
                f"has no {kind} model, needed for {wanted}",
                f"create the task with {_EXAMPLE_MODELS}",
            )
        return self.stages[kind]

    def _generation_args(self, inputs: dict[str, Any], seed: int | None) -> dict[str, Any]:
        args = {
            k: inputs[k]
            for k in ("negative_prompt", "num_inference_steps", "audio_length_in_s", "guidance_scale")
            if k in inputs
        }
        return {**args, "seed": seed, "model": self._require("audio", "making music")}

    def _music(self, prompt: str, inputs: dict[str, Any], seed: int | None, **extra: Any) -> dict[str, Any]:
        from .api import generate

        clip = generate(prompt, **self._generation_args(inputs, seed))
        clip = clip.with_extra(**extra) if extra else clip
        return {"result": clip.waveform, "clip": clip, "prompt": prompt}

    def _from_image(self, inputs: dict[str, Any], seed: int | None) -> dict[str, Any]:
        from .api import image_to_music
        from .tasks.image import describe_image

        captioner = self._require("captioner", "describing an image")
        question = inputs.get("minigpt4_text")
        if "audio" not in self.stages:  # image -> caption, as PaddleMIX's MiniGPT4 task
            return {"result": describe_image(inputs["image"], captioner, question=question)}
        story = image_to_music(
            inputs["image"],
            captioner=captioner,
            writer=self.stages.get("writer", "template"),
            question=question,
            instruction=inputs.get("instruction"),
            **self._generation_args(inputs, seed),
        )
        return {
            "result": story.clip.waveform,
            "clip": story.clip,
            "caption": story.caption,
            "prompt": story.music_prompt,
        }

    def _from_instruction(self, inputs: dict[str, Any], seed: int | None) -> dict[str, Any]:
        """Chat model answers the (already filled-in) instruction; its cleaned answer becomes the prompt."""
        from . import prompts
        from .models import writers
        from .runtime import pick_device
        from .tasks.image import WriterFallbackWarning

        instruction = inputs.pop("prompt")
        spec = writers.resolve_writer(self.stages["writer"])
        loaded = writers.load_writer(spec, pick_device(None))
        try:
            answer = writers.complete(loaded, instruction)
        finally:
            writers.release_writers()
        prompt = prompts.clean_answer(answer, instruction=instruction)
        if not prompts.is_usable(prompt):
            warnings.warn(
                WriterFallbackWarning(f"chat answer unusable ({answer.strip()[:40]!r}), used template"),
                stacklevel=3,
            )
            prompt = prompts.template_prompt(instruction)
        if "audio" not in self.stages:
            return {"result": prompt}
        return self._music(prompt, inputs, seed, chat_answer=answer[:2000], writer=spec.name)
