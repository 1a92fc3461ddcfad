"""Exporting a module as a static graph that Paddle Inference's oneDNN predictor takes.

What :mod:`.onednn` hands its :class:`~.predictor.Engine` to write ``model.json`` /
``model.pdiparams``. Four details are deliberate (each measured):

- the UNet's sinusoidal timestep embedding is computed outside the graph: the oneDNN predictor got
  it wrong (0.36 max error on the UNet output), and it is a few hundred numbers;
- nearest-neighbour upsampling is exported as index gathers (:func:`nearest_as_gathers`): the
  oneDNN predictor rejects the interpolate op's scale attribute
  (``ConvertPirAttribute2RuntimeAttribute``);
- the UNet forward is restated in :func:`unet_forward` for the configurations AudioLDM and MusicLDM
  use, without ppdiffusers' Python-side shape test that a dynamic length cannot pass;
- dy2static's source maps (from the translated code back to the original lines, used only to word
  its error messages) are not built (:func:`without_source_maps`): they were 40% of the UNet's
  export (18.6 → 9.7 s of CPU on the full-size AudioLDM-S), and the files written are the same
  byte for byte. (A failed export is reported in one line and the module stays in dygraph anyway.)

paddle is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "save",
    "spec",
    "vae_decode",
    "unet_supported",
    "unet_forward",
    "nearest_as_gathers",
    "export_patches",
    "without_source_maps",
]

_EXPORT_LOCK = threading.Lock()  # exports patch a paddle function for their duration


def save(layer: Any, prefix: str, specs: list) -> None:
    """``paddle.jit.save`` of ``layer`` with :func:`export_patches` in place (see the module docstring)."""
    import warnings

    import paddle

    with _EXPORT_LOCK, export_patches(paddle), paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        static = paddle.jit.to_static(layer, input_spec=specs, full_graph=True)
        paddle.jit.save(static, prefix)


def vae_decode(vae: Any, z: Any) -> Any:
    """What ``AutoencoderKL.decode`` computes, as the exported graph."""
    return vae.decoder(vae.post_quant_conv(z))


@contextlib.contextmanager
def export_patches(paddle):
    """While an export traces: nearest-neighbour ``interpolate`` as index gathers
    (:func:`nearest_as_gathers`) and no source maps (:func:`without_source_maps`)."""
    functional = paddle.nn.functional
    original = functional.interpolate
    functional.interpolate = nearest_as_gathers(original, paddle)
    try:
        with without_source_maps():
            yield
    finally:
        functional.interpolate = original


_SOURCE_MAPS = {  # dy2static's two steps that map translated code back to source lines
    "attach_origin_info": lambda root, func: root,
    "create_and_update_origin_info_map": lambda *args, **kwargs: {},
}


@contextlib.contextmanager
def without_source_maps():
    """dy2static's translation without its source maps, for the duration (the program is the same).

    The maps only word dy2static's own error messages. On a paddle whose translator does not
    have both steps by these names, nothing is changed.
    """
    try:
        from paddle.jit.dy2static import program_translator as translator
    except ImportError:  # another paddle: translate as it does
        translator = None
    saved = {name: getattr(translator, name, None) for name in _SOURCE_MAPS}
    if translator is None or not all(callable(f) for f in saved.values()):
        yield
        return
    for name, stand_in in _SOURCE_MAPS.items():
        setattr(translator, name, stand_in)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(translator, name, original)


def nearest_as_gathers(original: Callable, paddle) -> Callable:
    """``interpolate`` that writes nearest-neighbour NCHW resizing as repeats and index gathers.

    Paddle's nearest rule (``align_corners=False``) takes source index ``floor(i * n_in / n_out)``;
    for the sizes a UNet meets (``n_out`` is ``2 n_in`` or ``2 n_in - 1``) integer division gives
    exactly that. Other modes go to the original.
    """

    @paddle.jit.not_to_static
    def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=False, align_mode=0,
                    data_format="NCHW", name=None):  # fmt: skip
        factors = scale_factor if isinstance(scale_factor, (list, tuple)) else (scale_factor, scale_factor)
        plain = mode != "nearest" or data_format != "NCHW" or align_corners
        if plain or (size is None and any(f is None or float(f) != 2.0 for f in factors)):
            return original(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                            align_mode=align_mode, data_format=data_format, name=name)  # fmt: skip
        if size is None:
            return paddle.repeat_interleave(paddle.repeat_interleave(x, 2, axis=2), 2, axis=3)
        shape = paddle.shape(x)
        for axis in (2, 3):
            n_in, n_out = shape[axis].astype("int64"), size[axis - 2]
            n_out = paddle.full([], n_out, "int64") if isinstance(n_out, int) else n_out.astype("int64")
            x = paddle.index_select(x, (paddle.arange(n_out, dtype="int64") * n_in) // n_out, axis=axis)
        return x

    return interpolate


def spec(shape: list, dtype: str = "float32"):
    from paddle.static import InputSpec

    return InputSpec(shape, dtype)


# ---------------------------------------------------------------------------------------------
# UNet.
# ---------------------------------------------------------------------------------------------
def unet_supported(unet: Any) -> bool:
    c = unet.config
    return (
        getattr(unet, "class_embedding", None) is not None
        and c.get("class_embed_type") in ("simple_projection", "projection")
        and c.get("addition_embed_type") is None
        and c.get("encoder_hid_dim_type") is None
        and c.get("time_cond_proj_dim") is None
        and not c.get("center_input_sample")
        and c.get("time_embedding_type", "positional") == "positional"
        and getattr(unet, "data_format", "NCHW") == "NCHW"
        and unet.mid_block is not None
    )


def unet_forward(unet: Any, sample: Any, t_emb: Any, class_labels: Any) -> Any:
    """UNet2DConditionModel's forward for a class-conditioned UNet without cross-attention input."""
    import paddle

    emb = unet.time_embedding(t_emb.cast(sample.dtype), None)
    class_emb = unet.class_embedding(class_labels.cast(sample.dtype)).cast(sample.dtype)
    emb = paddle.concat([emb, class_emb], axis=-1) if unet.config.class_embeddings_concat else emb + class_emb
    sample = unet.conv_in(sample)
    skips = (sample,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, more = block(hidden_states=sample, temb=emb, encoder_hidden_states=None)
        else:
            sample, more = block(hidden_states=sample, temb=emb)
        skips += more
    if getattr(unet.mid_block, "has_cross_attention", False):
        sample = unet.mid_block(sample, emb, encoder_hidden_states=None)
    else:
        sample = unet.mid_block(sample, emb)
    last = len(unet.up_blocks) - 1
    for i, block in enumerate(unet.up_blocks):
        taken, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
        size = paddle.shape(skips[-1])[2:] if i < last else None  # always force the skip's size
        if getattr(block, "has_cross_attention", False):
            sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=taken,
                           encoder_hidden_states=None, upsample_size=size)  # fmt: skip
        else:
            sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=taken, upsample_size=size)
    if unet.conv_norm_out is not None:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    return unet.conv_out(sample)
