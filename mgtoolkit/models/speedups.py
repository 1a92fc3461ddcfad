"""A loaded model's speed-ups, on and off: diffusers-style ``enable_*``/``disable_*`` methods.

:class:`SpeedUps` is what :class:`~mgtoolkit.models.audioldm.LoadedModel` gets them from. Each
method puts a speed-up's hooks on the pipeline (:mod:`mgtoolkit.accel`) or takes them off, under
the pipeline lock, and keeps the model's record up to date: :attr:`SpeedUps.running_plan` (what
every clip's sidecar records) and ``report``. After ``disable_*``, the pipeline computes exactly
what a model never given that speed-up computes.

The model is the one :func:`mgtoolkit.load_model`'s cache hands out for its plan: a change here
holds for every task that names it, until it is unloaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..runtime import PIPELINE_LOCK

if TYPE_CHECKING:
    from .plan import Plan

__all__ = ["SpeedUps"]


class SpeedUps:
    """The ``enable_*``/``disable_*`` methods of a loaded model (a mixin: the model has ``pipe``,
    ``device``, ``plan``, ``weights``, ``report`` and ``_changed``)."""

    pipe: Any
    device: str
    plan: Plan | None
    weights: str
    report: dict[str, Any]
    _changed: dict[str, Any]

    @property
    def running_plan(self) -> Plan | None:
        """:attr:`plan` with what ``enable_*``/``disable_*`` changed since: what a clip records."""
        if self.plan is None or not self._changed:
            return self.plan
        return dataclasses.replace(self.plan, **self._changed)

    def enable_threads(self, workers: int | None = None) -> None:
        """Split the UNet, VAE decoder and vocoder work over ``workers`` threads (default: the
        usable cores); the same waveform to float rounding."""
        from ..accel.threads import split_threads

        self._change("enable_threads", lambda: split_threads(self.pipe, workers=workers), optimize=True)

    def disable_threads(self) -> None:
        """Run every module on the calling thread again (exactly what a model never split computes)."""
        from ..accel.threads import undo_split

        self._change("", lambda: undo_split(self.pipe), optimize=False)

    def enable_predictors(
        self, modules: str | bool | tuple[str, ...] = "on", *, precision: str = "float32"
    ) -> None:
        """Run ``modules`` (``"on"``: VAE decoder and vocoder; ``"auto"``, or names among ``unet``,
        ``vae``, ``vocoder``) as verified oneDNN predictors in ``precision`` (``"float32"``, or
        ``"bfloat16"`` on a CPU with AVX512_BF16 or AMX). Predictors already on stay as they are:
        :meth:`disable_predictors` first to choose others."""
        from ..accel import onednn

        if precision not in ("float32", "bfloat16"):
            raise InvalidInputError(
                "precision", precision, "is not a predictor precision", "pass 'float32' or 'bfloat16'"
            )
        if precision == "bfloat16":
            from ..runtime import pick_dtype

            pick_dtype("cpu", "bfloat16")  # one line if this CPU has no bfloat16 kernels
        chosen = onednn.parse_modules(modules)
        routed = self._change(
            "enable_predictors",
            lambda: self._outside_low_memory(
                lambda: onednn.compile_pipeline(self.pipe, "cpu", modules=chosen, precision=precision)
            ),
        )
        self._changed.update(
            predictors=precision if routed else "off", modules=tuple(routed), full_size_only=False
        )

    def disable_predictors(self) -> None:
        """Run every module in dygraph again, its weights read back (exactly what a model without
        predictors computes)."""
        from ..accel.onednn import remove_predictors

        self._change(
            "",
            lambda: self._outside_low_memory(lambda: remove_predictors(self.pipe)),
            predictors="off",
            modules=(),
        )

    def enable_low_memory(self) -> None:
        """Keep only the running stage's weights in memory (read back from the folder the model was
        loaded from where they are the same bit for bit); the same waveform, bit for bit."""
        from ..accel.lowmem import enable

        self._change(
            "enable_low_memory",
            lambda: enable(self.pipe, folder=Path(self.weights) if self.weights else None),
            low_memory=True,
        )

    def disable_low_memory(self) -> None:
        """Read every stage's weights back and keep them in memory."""
        from ..accel.lowmem import disable

        self._change("", lambda: disable(self.pipe), low_memory=False)

    def _change(self, enabling: str, action: Callable[[], Any], **plan: Any) -> Any:
        """Run ``action`` on the pipeline under its lock; record ``plan`` changes and refresh the report."""
        from ..accel import applied

        if enabling and self.device != "cpu":
            raise InvalidInputError(
                "device", self.device, f"{enabling}() is a CPU speed-up", "load the model with device='cpu'"
            )
        if self.device != "cpu":
            return None
        with PIPELINE_LOCK:
            result = action()
            self._changed.update(plan)
            now = applied(self.pipe)
            self.report.update(now)
            getattr(self.pipe, "_mgtoolkit_optimizations", {}).update(now)
        return result

    def _outside_low_memory(self, action: Callable[[], Any]) -> Any:
        """``action`` with low-memory mode off meanwhile (on again after, around the new set of
        predictors: a stage a predictor runs is not swapped)."""
        from ..accel import lowmem

        low = lowmem.is_on(self.pipe)
        if low:
            lowmem.disable(self.pipe)
        try:
            return action()
        finally:
            if low:
                lowmem.enable(self.pipe, folder=Path(self.weights) if self.weights else None)
