"""Loading a text-to-audio model: options and machine -> plan -> cached pipeline.

:func:`load_model` is the public door (``mg.load_model``); :func:`use_model` is what the tasks call
with their ``model=`` argument (a name, a folder or a loaded model). Settings survive between
calls: a task naming a model uses the options of that model's latest :func:`load_model`, with the
task's own explicit ``device=``/``dtype=`` on top, so ``mg.load_model(name, low_memory=True)``
followed by ``mg.generate(..., model=name)`` runs on that one low-memory pipeline.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .plan import LoadOptions, Machine, Plan, plan
from .registry import ModelSpec, resolve_model

if TYPE_CHECKING:
    from .audioldm import LoadedModel

__all__ = ["load_model", "unload", "forget_settings", "use_model", "spec_of", "split_model", "plan_for"]

_LATEST: dict[ModelSpec, LoadOptions] = {}
"""Per model, the options of its latest :func:`load_model` (as given: ``None`` stays a default)."""
_LATEST_LOCK = threading.Lock()


def load_model(
    model: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    optimize: bool | None = None,
    low_memory: bool | str | None = None,
    allow_unsafe_pickle: bool | None = None,
    predictors: str | bool | tuple[str, ...] | None = None,
) -> LoadedModel:
    """Load a text-to-audio model (cached per process and plan) and return it.

    Later tasks naming the same model (``mg.generate(..., model=name)``) run on this one: the
    options given here are remembered for it until the next ``load_model`` of it or :func:`unload`.
    Each option left ``None`` is its ``MGTOOLKIT_*`` default; how they combine is tabled in
    ``docs/configuration.md`` and decided by :func:`mgtoolkit.models.plan.plan`.

    Parameters
    ----------
    model : str, optional
        Preset, hub id or directory; ``None`` uses ``$MGTOOLKIT_MODEL`` or the default.
    device : {"auto", "cpu", "gpu"}, optional
        ``None`` means ``$MGTOOLKIT_DEVICE`` or automatic (GPU if paddle sees one).
    dtype : {"auto", "float32", "float16", "bfloat16"}, optional
        ``bfloat16`` on a CPU with AVX512_BF16 or AMX runs the UNet, VAE decoder and vocoder as
        oneDNN bfloat16 predictors (the weights load in float32; the text encoder stays float32).
        ``None`` means ``$MGTOOLKIT_DTYPE`` (``auto``): float16 on a GPU; on a CPU
        bfloat16 where it was measured to pay (full-size model, machine with 12 GB or more, such
        a CPU, speed-ups on and predictors ``auto``: 1.36x faster, each stage within 1e-2 of
        float32), float32 elsewhere. The dtype used is recorded in the clip's sidecar; same seed
        and dtype give the same waveform.
    optimize : bool, optional
        Apply :func:`mgtoolkit.accel.optimize` (CPU speed-ups that keep every output); ``None``
        means yes unless ``MGTOOLKIT_OPTIMIZE=0``. Optimised and plain pipelines are cached apart.
    low_memory : bool or "auto", optional
        Keep only the running stage's weights in memory, and no float32 predictors (same output,
        a little slower); ``None`` means ``MGTOOLKIT_LOW_MEMORY`` (``auto``: on when the machine or
        its cgroup has under 4 GB). CPU only.
    allow_unsafe_pickle : bool, optional
        Read pickled weights (``.bin``, ``.pdparams``) with the full unpickler (code in them runs);
        ``None`` means ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` (off). Recorded in the clip's sidecar when on.
    predictors : str, bool or tuple of str, optional
        Modules run as oneDNN predictors on a CPU: ``"auto"``, ``"off"``, ``"on"`` (VAE decoder and
        vocoder) or names among ``unet``, ``vae``, ``vocoder``; ``None`` means ``MGTOOLKIT_COMPILE``.

    Returns
    -------
    LoadedModel
        With ``.pipe`` (the ppdiffusers pipeline), ``.plan`` (how it runs) and ``.report`` (what
        the speed-ups applied).
    """
    options = LoadOptions(
        device=device,
        dtype=dtype,
        optimize=optimize,
        predictors=predictors,
        low_memory=low_memory,
        allow_unsafe_pickle=allow_unsafe_pickle,
    )
    spec = resolve_model(model)
    loaded = _load(spec, options)
    with _LATEST_LOCK:
        _LATEST[spec] = options
    return loaded


def unload(*, forget: bool = True) -> None:
    """Release every cached model (and the GPU memory it held).

    ``forget=True`` also forgets the options each was loaded with (the next task loads with the
    ``MGTOOLKIT_*`` defaults); ``False`` keeps them, so the next task loads each model as before
    (the image chain makes room for its captioner this way).
    """
    from . import audioldm

    if forget:
        forget_settings()
    audioldm.unload()


def forget_settings() -> None:
    """Forget the options of every earlier :func:`load_model` (tasks then load with the
    ``MGTOOLKIT_*`` defaults), keeping the cached pipelines. The test suite's fixture calls it
    after each test, so that no test runs on the options another one loaded with."""
    with _LATEST_LOCK:
        _LATEST.clear()


def spec_of(model: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a ``model=`` argument: a name, a folder, ``None`` or a loaded model."""
    from .audioldm import LoadedModel

    if isinstance(model, LoadedModel):
        return model.spec
    if isinstance(model, ModelSpec):
        return model
    return resolve_model(model)


def split_model(model: Any) -> tuple[Any, LoadedModel | None]:
    """A task's ``model=`` as (what its request records, the loaded model or ``None``).

    A loaded model is recorded by its name (its folder for a local one); anything else as given.
    """
    from .audioldm import LoadedModel

    if isinstance(model, LoadedModel):
        return (model.spec.source if model.spec.is_local else model.spec.name), model
    return model, None


def use_model(
    model: Any, spec: ModelSpec | None = None, *, device: str | None = None, dtype: str | None = None
) -> LoadedModel:
    """The loaded model a task runs on.

    Parameters
    ----------
    model : str, path, LoadedModel or None
        A loaded model runs as it was loaded. A name or folder runs with the options of its latest
        :func:`load_model` (the ``MGTOOLKIT_*`` defaults if there was none), ``device``/``dtype``
        replacing theirs when given.
    spec : ModelSpec, optional
        ``model`` already resolved (the tasks resolve it once, to check their request).

    Raises
    ------
    InvalidInputError
        If ``device`` or ``dtype`` is given with a loaded model.
    """
    from .audioldm import LoadedModel

    if isinstance(model, LoadedModel):
        for field, value in (("device", device), ("dtype", dtype)):
            if value is not None:
                raise InvalidInputError(
                    field,
                    value,
                    "cannot change a model that is already loaded",
                    f"drop {field}=, or pass mg.load_model(..., {field}={value!r}) as model=",
                )
        return model
    spec = spec or spec_of(model)
    with _LATEST_LOCK:
        latest = _LATEST.get(spec, LoadOptions())
    return _load(spec, LoadOptions(device=device, dtype=dtype).over(latest))


def plan_for(spec: ModelSpec, options: LoadOptions) -> Plan:
    """The plan ``options`` (``None`` fields: the environment's defaults) give ``spec`` on this machine."""
    options = options.with_defaults()
    cpu_only = options.device == "cpu"
    return plan(spec, options, Machine.detect(gpu=not cpu_only))


def _load(spec: ModelSpec, options: LoadOptions) -> LoadedModel:
    from . import audioldm

    chosen = plan_for(spec, options)
    stash = contextlib.nullcontext()
    if chosen.low_memory:
        from ..accel.lowmem import stashing_loads

        stash = stashing_loads()  # never the whole model in memory
    with stash:
        return audioldm.load(spec, chosen)
