"""Run the VAE decoder and the vocoder (and, on request, the UNet) through Paddle Inference with oneDNN.

CPU only. Paddle's dygraph kernels leave much of a CPU unused; its inference predictor runs the
same layers as oneDNN primitives with bias, residual and activation fused in. On the full-size
AudioLDM-S (2 cores, 5 s clip) the VAE decode goes from 3.5 to about 2.0 s and the vocoder from
5.1 to about 3.1 s. The UNet gains little in a whole call (a step 0.75 → 0.72 s) for about
0.8 GB more, so it is compiled only when asked for. Figures: ``benchmarks/README.md``.

This module decides which modules run as predictors (:func:`compile_mode`, :func:`auto_precision`)
and routes their calls through one :class:`~.predictor.Engine` each (:func:`compile_pipeline`), as
hooks in the pipeline's :class:`~.hooks.HookRegistry` (``predictors/<module>``;
:func:`remove_predictors` takes them off). The engine exports the module on its first call
(:mod:`.export`), verifies the predictor against dygraph within :data:`TOLERANCE` of the output's
peak, then releases the dygraph weights; they wait in the file the model was loaded from, and are
read back if the predictor fails later (the module then runs in dygraph for good: the call goes
on, and so does the session). Later loads of the same weights find the verified files (the
fingerprint covers paddle's version, the config and a sample of every weight) and release the
dygraph weights at once.

``precision="bfloat16"`` (``mg.load_model(dtype="bfloat16")`` on CPUs with AVX512_BF16 or AMX)
builds the UNet, VAE and vocoder predictors with ``enable_onednn_bfloat16()``; each is verified
within :data:`BF16_TOLERANCE` relative L2 of float32 dygraph (the vocoder on the mel spectrogram of
its waveform, :func:`waveform_mel`), in its own ``verdict-bfloat16.json``. The vocoder's is built
without :data:`VOCODER_BF16_PASSES_OFF`.

The cost is memory: a run takes memory in proportion to its activations, about 0.7 GB for the
VAE and 1.7 GB for the vocoder at 5 s, and what it frees stays in glibc's heap (with or without
oneDNN). The vocoder therefore runs in overlapping pieces, the heap the VAE and vocoder runs freed
goes back to the system (:mod:`.footprint`), and ``auto`` compiles only on machines with at least
:data:`AUTO_MIN_MEMORY` (a cgroup limit counts).

``MGTOOLKIT_COMPILE``: ``auto`` (default: full-size models, that is a UNet of at least
:data:`AUTO_MIN_PARAMS` weights, on machines with room), ``1`` (VAE and vocoder, always), ``0``
(never), or a list such as ``unet,vae,vocoder``: the default of :func:`mgtoolkit.accel.optimize`'s ``onednn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import setting
from . import footprint
from .export import nearest_as_gathers as _nearest_as_gathers  # noqa: F401 - importable from here
from .export import save as _save
from .export import spec, unet_forward, unet_supported, vae_decode
from .hooks import PREDICTOR, HookRegistry, ModelHook
from .pieces import fingerprint, memory_limit_bytes, stitch, vocoder_receptive_frames
from .predictor import Engine

__all__ = [
    "Engine",
    "auto_precision",
    "compile_mode",
    "compile_pipeline",
    "remove_predictors",
    "full_size",
    "parse_modules",
    "roomy",
    "fingerprint",
    "memory_limit_bytes",
    "FEATURE",
]

FEATURE = "predictors"
"""The predictors' name in the pipeline's :class:`~.hooks.HookRegistry` (hooks ``predictors/<module>``)."""
TOLERANCE = 1e-4  # largest |predictor - dygraph| accepted, relative to the reference's peak
BF16_TOLERANCE = 1e-2  # largest relative L2 of a bfloat16 predictor's output against float32 dygraph
AUTO_MIN_PARAMS = 20_000_000
AUTO_MIN_MEMORY = 12 * 1024**3  # the predictors keep their activations: ~1.6 GB more at 5 s, ~2 GB at 10 s
MODULES = ("unet", "vae", "vocoder")
BF16_MODULES = ("unet", "vae", "vocoder")
VOCODER_BF16_PASSES_OFF = ("operator_unsqueeze_onednn_fuse_pass",)
"""Left out of the bfloat16 vocoder's passes: it folds the unsqueeze before each 1-D convolution into
the convolution, which paddle 3.3.1's bfloat16 passes then reject ("The input of Op(Conv) should be a
4-D or 5-D Tensor"). Without it the vocoder runs in bfloat16: 1.3 s of CPU for 346 frames instead of
2.8–3.8 s, the waveform's mel 4.8e-3 relative L2 from float32 (full-size, random weights)."""
DEFAULT_MODULES = ("vae", "vocoder")  # the UNet gains ~2% in a whole call for ~0.8 GB more: opt-in


def compile_mode(environ: dict | None = None) -> tuple[str, ...]:
    """The modules to compile, from ``MGTOOLKIT_COMPILE``, or ``("auto",)``.

    ``auto`` (default), ``on``/``1`` (VAE decoder and vocoder, whatever the model or machine),
    ``off``/``0``, or a comma-separated choice of ``unet``, ``vae``, ``vocoder``.
    """
    return parse_modules(setting("MGTOOLKIT_COMPILE", environ=environ))


def parse_modules(value: Any) -> tuple[str, ...]:
    """A ``predictors=`` / ``MGTOOLKIT_COMPILE`` value as module names, ``()`` or ``("auto",)``.

    Examples
    --------
    >>> parse_modules("off"), parse_modules(True), parse_modules("unet, vae"), parse_modules("auto")
    ((), ('vae', 'vocoder'), ('unet', 'vae'), ('auto',))
    """
    if isinstance(value, bool):
        return DEFAULT_MODULES if value else ()
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value) or "off"
    value = str(value).strip().lower()
    if value in ("0", "false", "no", "off", "none"):
        return ()
    if value in ("1", "true", "yes", "on"):
        return DEFAULT_MODULES
    chosen = tuple(part.strip() for part in value.split(",") if part.strip() in MODULES)
    return chosen or ("auto",)


def roomy(memory_bytes: int | None) -> bool:
    """Whether a machine with ``memory_bytes`` (``None``: unknown) has room for the predictors."""
    return memory_bytes is None or memory_bytes >= AUTO_MIN_MEMORY


def full_size(unet: Any) -> bool:
    """Whether ``unet`` is full-size (at least :data:`AUTO_MIN_PARAMS` weights): ``auto`` compiles only those."""
    return _count(unet) >= AUTO_MIN_PARAMS


def auto_precision(pipe: Any, *, bf16_cpu: bool | None = None) -> str:
    """The CPU dtype ``dtype=None`` gets: ``"bfloat16"`` where it was measured to pay, else ``"float32"``.

    bfloat16 runs in oneDNN predictors, so it is chosen only where the float32 predictors would
    run by themselves (``MGTOOLKIT_COMPILE=auto``, a full-size model, a machine with at least
    :data:`AUTO_MIN_MEMORY`) on a CPU with AVX512_BF16 or AMX. There, on the full-size AudioLDM-S,
    a whole 5 s call took 15.4 s against 20.9 s in float32 (1.36x; quiet machine, 2026-11-26), and
    each stage stayed within 1e-2 relative L2 of float32 (UNet step 8.1e-3, VAE 5.1e-3; the text
    encoder stays float32; the vocoder has run in bfloat16 too since 2026-12-02, see
    :data:`VOCODER_BF16_PASSES_OFF`). Tiny and small models, small machines, low-memory mode
    and ``MGTOOLKIT_COMPILE=0`` stay float32, as does ``MGTOOLKIT_DTYPE=float32``.
    """
    if not bfloat16_possible(bf16_cpu=bf16_cpu) or not _auto_modules(pipe.unet):
        return "float32"
    return "bfloat16"


def bfloat16_possible(
    *, bf16_cpu: bool | None = None, memory_bytes: int | None | str = "probe", modules: Any = None
) -> bool:
    """Whether :func:`auto_precision` could pick bfloat16 on this machine, before any model loads.

    ``MGTOOLKIT_COMPILE=auto`` (or ``modules=("auto",)``), at least :data:`AUTO_MIN_MEMORY` and a
    CPU with AVX512_BF16 or AMX; the model's size is checked once it is loaded. The facts not
    passed are read from this machine; :func:`mgtoolkit.models.plan.plan` passes them all.
    """
    from ..runtime import cpu_has_bfloat16

    if (compile_mode() if modules is None else parse_modules(modules)) != ("auto",):
        return False
    if not roomy(memory_limit_bytes() if memory_bytes == "probe" else memory_bytes):  # type: ignore[arg-type]
        return False
    return cpu_has_bfloat16() if bf16_cpu is None else bool(bf16_cpu)


def _auto_modules(unet: Any) -> tuple[str, ...]:
    return DEFAULT_MODULES if full_size(unet) and roomy(memory_limit_bytes()) else ()


def compile_pipeline(
    pipe: Any,
    device: str,
    *,
    modules: tuple[str, ...] | None = None,
    cache: Path | None = None,
    precision: str = "float32",
) -> list[str]:
    """Route ``pipe``'s UNet, VAE decode and vocoder through verified oneDNN predictors.

    Parameters
    ----------
    pipe : AudioLDMPipeline or MusicLDMPipeline
        A loaded pipeline; its modules' calls are wrapped in place (hooks ``predictors/<module>``).
    device : str
        Nothing is done off the CPU.
    modules : tuple of str, optional
        Any of ``"unet"``, ``"vae"``, ``"vocoder"``, or ``("auto",)``; default :func:`compile_mode`.
    cache : Path, optional
        Where exports go; default ``<mgtoolkit cache>/compiled``.
    precision : {"float32", "bfloat16"}
        The predictors' arithmetic: ``bfloat16`` uses oneDNN's bfloat16 kernels for the modules
        in :data:`BF16_MODULES` (each verified within :data:`BF16_TOLERANCE` relative L2 of float32
        dygraph; the vocoder's on its waveform's mel spectrogram).

    Returns
    -------
    list of str
        The modules routed (``"unet"``, ``"vae"``, ``"vocoder"``); each still falls back to dygraph
        if its export does not verify.
    """
    done = getattr(pipe, "_mgtoolkit_engines", None)
    if done is not None:
        return sorted(done)
    unet = getattr(pipe, "unet", None)
    if device != "cpu" or unet is None:
        return []
    modules = compile_mode() if modules is None else tuple(modules)
    if modules == ("auto",):
        modules = _auto_modules(unet)
    if not modules:
        return []
    if cache is None:
        from ..config import cache_root

        cache = cache_root() / "compiled"
    folder = getattr(pipe, "name_or_path", None)
    registry, engines = HookRegistry.of(pipe), {}
    for name, route in (("unet", UnetPredictor), ("vae", VaePredictor), ("vocoder", VocoderPredictor)):
        module = getattr(pipe, name, None)
        if module is not None and name in modules:
            loaded_from = Path(folder) / name if folder else None
            hook = route.build(module, cache, precision if name in BF16_MODULES else "float32", loaded_from)
            if hook is not None:
                registry.register_hook(hook, f"{FEATURE}/{name}", module, hook.attr)
                engines[name] = hook.engine
    pipe._mgtoolkit_engines = engines
    registry.applied[FEATURE] = [
        f"{n}: oneDNN {precision} inference predictor, verified on first use" for n in sorted(engines)
    ]
    return sorted(engines)


def remove_predictors(pipe: Any, reason: str = "the predictors were turned off") -> None:
    """Run ``pipe``'s modules in dygraph again: each predictor's dygraph weights read back, its
    hook taken off (a later :func:`compile_pipeline` builds them again from the verified files).

    Raises
    ------
    RuntimeError
        If a predictor's weights file is gone from the cache: load the model again instead.
    """
    for engine in (getattr(pipe, "_mgtoolkit_engines", None) or {}).values():
        engine.fall_back(reason)
    registry = HookRegistry.of(pipe)
    registry.remove_hooks(f"{FEATURE}/")
    registry.applied.pop(FEATURE, None)
    if hasattr(pipe, "_mgtoolkit_engines"):
        del pipe._mgtoolkit_engines


def _count(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# A module's calls through its engine: one hook per module.
# ---------------------------------------------------------------------------------------------
class _Route(ModelHook):
    """A module's call run by ``engine``'s predictor; calls the export cannot take, and a predictor
    that failed, run the wrapped call (dygraph)."""

    order = PREDICTOR
    attr = "forward"

    def __init__(self, engine: Engine, module: Any) -> None:
        self.engine, self.module = engine, module

    @classmethod
    def build(cls, module: Any, cache: Path, precision: str, loaded_from: Path | None) -> _Route | None:
        """The route for ``module``, or ``None`` if its export is not supported."""
        raise NotImplementedError

    def _dygraph(self, name: str, call: Callable, *args: Any, **kwargs: Any) -> Any:
        """A call the export cannot take: the module goes back to dygraph for good, and runs it."""
        self.engine.fall_back(f"the {name} was called with arguments its export does not take")
        return call(*args, **kwargs)


def _engine(
    kind: str, module: Any, cache: Path, export, parts, precision, component, loaded_from, **extra: Any
) -> Engine:
    """The engine of ``parts`` (modules of ``component``), verified within this module's tolerances
    (``extra``: :class:`~.predictor.Engine`'s ``measure`` and ``passes_off``)."""
    return Engine(
        cache / fingerprint(kind, module),
        export,
        parts,
        precision,
        None if loaded_from is None else (component, loaded_from),
        tolerance=BF16_TOLERANCE if precision == "bfloat16" else TOLERANCE,
        **extra,
    )


def waveform_mel(sampling_rate: int, n_mels: int) -> Callable[[Any], Any]:
    """``measure(waveform) -> mel power spectrogram`` (1,024-point FFT, hop 10 ms, ``n_mels`` bands):
    what a bfloat16 vocoder is checked on. A waveform's fine phase does not survive bfloat16 as
    well as what is heard does: on the full-size vocoder (random weights) the raw waveform was
    1.04e-2 relative L2 from float32 and its mel 4.8e-3."""

    def measure(waveform: Any) -> Any:
        import librosa
        import numpy as np

        samples = np.asarray(waveform, np.float32).reshape(-1)
        return librosa.feature.melspectrogram(
            y=samples, sr=sampling_rate, n_fft=1024, hop_length=max(1, sampling_rate // 100), n_mels=n_mels
        )

    measure.name = "mel"  # type: ignore[attr-defined]
    return measure


def _exporter(inner: Any, compute: Callable[..., Any], specs: list) -> Callable[[str], None]:
    """``export(prefix)``: save ``compute(inner, *inputs)`` for up to three inputs shaped like ``specs``."""

    def export(prefix: str) -> None:
        import paddle

        class Exported(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, x0, x1=None, x2=None):  # paddle.jit needs named inputs, not *inputs
                return compute(self.inner, *(x0, x1, x2)[: len(specs)])

        _save(Exported(), prefix, specs)

    return export


class UnetPredictor(_Route):
    """A class-conditioned UNet (no cross-attention input) through its predictor; the timestep
    embedding is computed here, outside the graph (see :mod:`.export`)."""

    @classmethod
    def build(cls, unet, cache, precision, loaded_from):
        if not unet_supported(unet):
            return None
        c = unet.config
        t_dim = (
            int(unet.time_proj.num_channels)
            if hasattr(unet.time_proj, "num_channels")
            else int(c.block_out_channels[0])
        )
        class_dim = int(c.projection_class_embeddings_input_dim)
        specs = [spec([None, int(c.in_channels), None, None]), spec([None, t_dim]), spec([None, class_dim])]
        export = _exporter(unet, unet_forward, specs)
        return cls(_engine("unet", unet, cache, export, (unet,), precision, unet, loaded_from), unet)

    def new_forward(
        self, original, sample, timestep, encoder_hidden_states=None, class_labels=None, *args, **kwargs
    ):
        import paddle

        unet, engine = self.module, self.engine
        extra = {
            k: v
            for k, v in kwargs.items()
            if v is not None and k not in ("return_dict", "cross_attention_kwargs")
        }
        if (
            args
            or extra
            or encoder_hidden_states is not None
            or class_labels is None
            or kwargs.get("cross_attention_kwargs")
        ):
            return self._dygraph("unet", original, sample, timestep, *args,
                                 encoder_hidden_states=encoder_hidden_states, class_labels=class_labels,
                                 **kwargs)  # fmt: skip
        batch = int(sample.shape[0])
        steps = timestep if paddle.is_tensor(timestep) else paddle.to_tensor([timestep], dtype="int64")
        steps = steps.reshape([-1]).expand([batch])
        t_emb = unet.time_proj(steps).cast("float32")
        arrays = [sample.numpy(), t_emb.numpy(), class_labels.cast("float32").numpy()]

        def reference():
            return original(
                sample, timestep, encoder_hidden_states=None, class_labels=class_labels
            ).sample.numpy()

        out = engine.run(arrays, reference)
        if out is None:
            return original(sample, timestep, encoder_hidden_states=None, class_labels=class_labels, **kwargs)
        out = paddle.to_tensor(out, dtype=sample.dtype)
        return _unet_output(out) if kwargs.get("return_dict", True) else (out,)


def _unet_output(sample: Any):
    from ppdiffusers.models.unet_2d_condition import UNet2DConditionOutput

    return UNet2DConditionOutput(sample=sample)


class VaePredictor(_Route):
    """The VAE's ``decode`` (post-quant conv and decoder) through its predictor; the encoder stays."""

    attr = "decode"

    @classmethod
    def build(cls, vae, cache, precision, loaded_from):
        if getattr(vae, "post_quant_conv", None) is None or getattr(vae, "decoder", None) is None:
            return None
        specs = [spec([None, int(vae.config.latent_channels), None, None])]
        parts = (vae.decoder, vae.post_quant_conv)
        export = _exporter(vae, vae_decode, specs)
        return cls(_engine("vae-decoder", vae, cache, export, parts, precision, vae, loaded_from), vae)

    def new_forward(self, original, z, return_dict: bool = True, *args, **kwargs):
        import paddle

        if args or kwargs:
            return self._dygraph("VAE decoder", original, z, return_dict, *args, **kwargs)
        out = self.engine.run([z.cast("float32").numpy()], lambda: original(z).sample.numpy())
        if out is None:
            return original(z, return_dict)
        out = paddle.to_tensor(out, dtype=z.dtype)
        return _decoder_output(out) if return_dict else (out,)


def _decoder_output(sample: Any):
    from ppdiffusers.models.vae import DecoderOutput

    return DecoderOutput(sample=sample)


class VocoderPredictor(_Route):
    """The HiFi-GAN vocoder through its predictor, in equal overlapping pieces one at a time
    (:func:`.footprint.vocoder_windows`: a run's activations set the memory's high-water mark)."""

    def __init__(self, engine: Engine, vocoder: Any) -> None:
        super().__init__(engine, vocoder)
        config = vocoder.config
        self.hop, self.margin = int(math.prod(config.upsample_rates)), vocoder_receptive_frames(config)

    @classmethod
    def build(cls, vocoder, cache, precision, loaded_from):
        config = getattr(vocoder, "config", None)
        if config is None or not hasattr(config, "model_in_dim"):
            return None
        specs = [spec([None, None, int(config.model_in_dim)])]
        export = _exporter(vocoder, type(vocoder).forward, specs)  # the class's forward: not a hooked one
        extra = {}
        if precision == "bfloat16":
            rate = int(getattr(config, "sampling_rate", 16000))
            extra = {
                "measure": waveform_mel(rate, int(config.model_in_dim)),
                "passes_off": VOCODER_BF16_PASSES_OFF,
            }
        engine = _engine(
            "vocoder", vocoder, cache, export, (vocoder,), precision, vocoder, loaded_from, **extra
        )
        return cls(engine, vocoder)

    def new_forward(self, original, spectrogram):
        if spectrogram.ndim != 3:
            return self._dygraph("vocoder", original, spectrogram)
        windows = footprint.vocoder_windows(int(spectrogram.shape[1]), footprint.piece_frames(), self.margin)
        if len(windows) == 1:
            return self._run(original, spectrogram)
        return stitch([self._run(original, spectrogram[:, a:b]) for _, _, a, b in windows], windows, self.hop)

    def _run(self, original, spectrogram):
        import paddle

        out = self.engine.run([spectrogram.cast("float32").numpy()], lambda: original(spectrogram).numpy())
        return original(spectrogram) if out is None else paddle.to_tensor(out, dtype=spectrogram.dtype)
