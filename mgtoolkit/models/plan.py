"""How a model runs, decided once: ``plan(spec, options, machine) -> Plan``. Pure: no paddle.

:class:`LoadOptions` is what the user asks for (``None``: the environment's default, see
:meth:`LoadOptions.with_defaults`); :class:`Machine` is what the machine has; :func:`plan` turns
both into a :class:`Plan`: the device, the dtype, the oneDNN predictors (off, float32 or
bfloat16), low-memory mode and the thread split. The plan is the key of the model cache, the
loaded model carries it, and every clip's sidecar records it. The rules, and how the
``MGTOOLKIT_*`` variables combine, are tabled in ``docs/configuration.md``.

Examples
--------
>>> from mgtoolkit.models.registry import resolve_model
>>> big = Machine(memory_bytes=32 * 1024**3, bf16_cpu=True, gpu=False, cores=8)
>>> p = plan(resolve_model("audioldm-s-full-v2"), LoadOptions(device="cpu").with_defaults({}), big)
>>> p.device, p.dtype, p.predictors, p.modules, p.full_size_only, p.low_memory
('cpu', 'float32', 'bfloat16', ('unet', 'vae', 'vocoder'), True, False)
>>> plan(resolve_model("tiny"), LoadOptions(device="cpu", low_memory=True).with_defaults({}), big).low_memory
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..accel import lowmem, onednn
from ..config import flag, setting
from ..errors import InvalidInputError
from ..runtime import pick_device, pick_dtype
from .registry import ModelSpec

__all__ = ["LoadOptions", "Machine", "Plan", "plan"]

_ENV = {
    "device": "MGTOOLKIT_DEVICE",
    "dtype": "MGTOOLKIT_DTYPE",
    "optimize": "MGTOOLKIT_OPTIMIZE",
    "predictors": "MGTOOLKIT_COMPILE",
    "low_memory": "MGTOOLKIT_LOW_MEMORY",
    "allow_unsafe_pickle": "MGTOOLKIT_ALLOW_UNSAFE_PICKLE",
}


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """What a user asks of a model load; ``None`` leaves a field to its ``MGTOOLKIT_*`` default.

    Attributes
    ----------
    device : {"auto", "cpu", "gpu", "gpu:N"}, optional
        ``MGTOOLKIT_DEVICE``.
    dtype : {"auto", "float32", "float16", "bfloat16"}, optional
        ``MGTOOLKIT_DTYPE``.
    optimize : bool, optional
        The CPU speed-ups that keep every output (thread split, float32 predictors);
        ``MGTOOLKIT_OPTIMIZE``.
    predictors : str, bool or tuple of str, optional
        Modules run as oneDNN predictors: ``"auto"``, ``"off"``, ``"on"`` or names among
        ``unet``, ``vae``, ``vocoder``; ``MGTOOLKIT_COMPILE``.
    low_memory : bool or "auto", optional
        ``MGTOOLKIT_LOW_MEMORY``.
    allow_unsafe_pickle : bool, optional
        ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE``.
    """

    device: str | None = None
    dtype: str | None = None
    optimize: bool | None = None
    predictors: str | bool | tuple[str, ...] | None = None
    low_memory: bool | str | None = None
    allow_unsafe_pickle: bool | None = None

    def given(self) -> dict[str, Any]:
        """The fields set (not ``None``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def over(self, earlier: LoadOptions) -> LoadOptions:
        """``earlier`` with the fields set here replacing its own."""
        return dataclasses.replace(earlier, **self.given())

    def with_defaults(self, environ: Mapping[str, str] | None = None) -> LoadOptions:
        """Every ``None`` field filled from its ``MGTOOLKIT_*`` variable (or that variable's default).

        Examples
        --------
        >>> LoadOptions(dtype="float32").with_defaults({"MGTOOLKIT_OPTIMIZE": "0"})
        LoadOptions(device='auto', dtype='float32', optimize=False, predictors='auto', low_memory='auto', allow_unsafe_pickle=False)
        """
        filled = {}
        for name, var in _ENV.items():
            if getattr(self, name) is None:
                on_off = name in ("optimize", "allow_unsafe_pickle")
                filled[name] = flag(var, environ=environ) if on_off else setting(var, environ=environ).lower()
        return dataclasses.replace(self, **filled)


@dataclass(frozen=True, kw_only=True)
class Machine:
    """The facts about this machine that :func:`plan` needs.

    Attributes
    ----------
    memory_bytes : int or None
        The memory this process may use (a cgroup limit counts); ``None`` where unknown.
    bf16_cpu : bool
        The CPU computes in bfloat16 (AVX512_BF16 or AMX).
    gpu : bool
        paddle sees a CUDA GPU.
    cores : int
        Usable cores.
    """

    memory_bytes: int | None = None
    bf16_cpu: bool = False
    gpu: bool = False
    cores: int = 1

    @classmethod
    def detect(cls, *, gpu: bool = True) -> Machine:
        """This machine; ``gpu=False`` skips asking paddle for a GPU (no paddle import)."""
        from ..accel.pieces import memory_limit_bytes, usable_cores
        from ..runtime import _gpu_available, cpu_has_bfloat16

        return cls(
            memory_bytes=memory_limit_bytes(),
            bf16_cpu=cpu_has_bfloat16(),
            gpu=_gpu_available() if gpu else False,
            cores=usable_cores(),
        )


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How one model runs: the model cache's key, carried by the loaded model, in every sidecar.

    Attributes
    ----------
    device : str
        ``"cpu"``, ``"gpu"`` or ``"gpu:N"``.
    dtype : str
        The dtype the weights load in (``float32`` on a CPU: bfloat16 runs in predictors).
    optimize : bool
        The CPU speed-ups that keep every output: the thread split (and float32 predictors).
    predictors : {"off", "float32", "bfloat16"}
        The arithmetic of the oneDNN predictors (CPU); ``bfloat16`` for the UNet, the VAE decoder
        and the vocoder (checked on its waveform's mel).
    modules : tuple of str
        The modules run as predictors.
    full_size_only : bool
        The predictors apply only if the UNet is full-size (20 M weights or more), which only
        the loaded weights tell (:meth:`settled`); otherwise none run.
    low_memory : bool
        Only the running stage's weights in memory (CPU).
    allow_unsafe_pickle : bool
        Pickled weights read with the full unpickler.
    """

    device: str
    dtype: str
    optimize: bool
    predictors: str = "off"
    modules: tuple[str, ...] = ()
    full_size_only: bool = False
    low_memory: bool = False
    allow_unsafe_pickle: bool = False

    @property
    def prepares(self) -> bool:
        """Whether the loaded pipeline is changed at all (``False``: the plain ppdiffusers pipeline)."""
        return self.optimize or self.predictors != "off" or self.low_memory

    @property
    def run_dtype(self) -> str:
        """The dtype the clips are computed in (``bfloat16`` where bfloat16 predictors run)."""
        return "bfloat16" if self.predictors == "bfloat16" and not self.full_size_only else self.dtype

    def settled(self, full_size: bool) -> Plan:
        """This plan once the weights tell whether the UNet is full-size (no ``full_size_only`` left)."""
        if not self.full_size_only:
            return self
        if full_size:
            return dataclasses.replace(self, full_size_only=False)
        return dataclasses.replace(self, full_size_only=False, predictors="off", modules=())

    def record(self) -> dict[str, Any]:
        """The plan as a sidecar records it."""
        return {
            "device": self.device,
            "dtype": self.run_dtype,
            "optimize": self.optimize,
            "predictors": self.predictors,
            "predictor_modules": list(self.modules),
            "low_memory": self.low_memory,
        }


def plan(spec: ModelSpec, options: LoadOptions, machine: Machine) -> Plan:
    """Decide how ``spec`` runs with ``options`` (``None`` fields: built-in defaults) on ``machine``.

    The rules (the table: ``docs/configuration.md``):

    1. ``device``: ``auto`` is the GPU when there is one; a GPU asked for must exist.
    2. On a GPU, the weights load in ``dtype`` (``auto``: float16); no predictors, no low-memory mode.
    3. On a CPU the weights load in float32. ``low_memory`` ``auto`` is on under 4 GB.
    4. ``dtype="bfloat16"`` (a CPU with AVX512_BF16 or AMX) is bfloat16 predictors for the UNet, VAE
       decoder and vocoder, whatever ``optimize``, ``predictors`` and ``low_memory`` say: on a CPU
       bfloat16 exists only as predictors.
    5. ``dtype="auto"`` is bfloat16 predictors where that was measured to pay: speed-ups on, not
       low-memory, ``predictors="auto"``, 12 GB or more, a bfloat16 CPU, a full-size UNet. Choosing
       the predictors yourself (``predictors="vae"``, ``"on"``) chooses float32 ones unless
       ``dtype="bfloat16"``.
    6. Otherwise the predictors are float32: none with speed-ups off or in low-memory mode; the
       modules named by ``predictors``; for ``auto`` the VAE decoder and vocoder of a full-size UNet
       on a machine with 12 GB or more.

    Raises
    ------
    InvalidInputError
        For a device, dtype, ``low_memory`` or ``predictors`` value that is not known, or one the
        machine cannot run.
    """
    options = options.over(LoadOptions(device="auto", dtype="auto", optimize=True, predictors="auto",
                                       low_memory="auto", allow_unsafe_pickle=False))  # fmt: skip
    device = pick_device(options.device, gpu=machine.gpu)
    asked = _asked_dtype(options.dtype)
    dtype = pick_dtype(device, asked, bf16_cpu=machine.bf16_cpu)
    unsafe, speedups = bool(options.allow_unsafe_pickle), bool(options.optimize)
    if device != "cpu":
        return Plan(device=device, dtype=dtype, optimize=speedups, allow_unsafe_pickle=unsafe)
    low = _low_memory(options.low_memory, machine.memory_bytes)
    modules = _modules(options.predictors)
    base = Plan(device="cpu", dtype="float32", optimize=speedups, low_memory=low, allow_unsafe_pickle=unsafe)
    if dtype == "bfloat16":  # rule 4
        return dataclasses.replace(base, predictors="bfloat16", modules=onednn.MODULES)
    possible = onednn.bfloat16_possible(
        bf16_cpu=machine.bf16_cpu, memory_bytes=machine.memory_bytes, modules=modules
    )
    if asked is None and speedups and not low and not spec.is_tiny and possible:  # rule 5
        return dataclasses.replace(base, predictors="bfloat16", modules=onednn.MODULES, full_size_only=True)
    if not speedups or low or not modules:  # rule 6
        return base
    if modules != ("auto",):
        return dataclasses.replace(base, predictors="float32", modules=modules)
    if spec.is_tiny or not onednn.roomy(machine.memory_bytes):
        return base
    return dataclasses.replace(
        base, predictors="float32", modules=onednn.DEFAULT_MODULES, full_size_only=True
    )


def _asked_dtype(dtype: Any) -> str | None:
    """``dtype`` lower-cased, ``None`` for ``auto``."""
    if not isinstance(dtype, str):
        raise InvalidInputError("dtype", dtype, "is not a dtype name", "use 'auto', 'float32' or 'bfloat16'")
    dtype = dtype.strip().lower()
    return None if dtype in ("", "auto") else dtype


def _low_memory(value: Any, memory_bytes: int | None) -> bool:
    if not isinstance(value, (bool, str)):
        raise InvalidInputError("low_memory", value, "is not on, off or auto", "pass True, False or 'auto'")
    asked = lowmem.switch(value)
    if asked is None and value.strip().lower() not in ("", "auto"):
        raise InvalidInputError("low_memory", value, "is not on, off or auto", "pass True, False or 'auto'")
    if asked is not None:
        return asked
    return lowmem.small_machine(memory_bytes)


def _modules(value: Any) -> tuple[str, ...]:
    modules = onednn.parse_modules(value)
    words = str(value).replace(",", " ").lower().split() if isinstance(value, str) else []
    if modules == ("auto",) and words not in ([], ["auto"]):
        raise InvalidInputError(
            "predictors",
            value,
            "names no module",
            "pass 'auto', 'off', 'on' or names among unet, vae, vocoder",
        )
    return modules
