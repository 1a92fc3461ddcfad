"""Convolutions in row tiles: the same output with a bounded scratch buffer (low-memory mode).

Paddle's CPU convolution unfolds its whole input before multiplying (im2col): a buffer of
``in_channels/groups × kernel area × output positions`` floats. At the far end of AudioLDM's VAE
decoder (256 channels, 3×3, a 10 s spectrogram of 1024 × 64) that is 604 MB for one convolution,
more than the decoder's weights and activations together, and it is what ran a 10 s window out of
Binder's 2 GiB. A :class:`TiledConv` hook runs such a convolution over bands of output rows (time),
each band reading the input rows it needs (its halo) with the zero padding only at the true edges,
so the buffer is one band's. Every output value is the same dot product over the same inputs in the
same order: the result equals the whole convolution bit for bit (``tests/accel/test_tiling.py``).

Only plain convolutions are tiled: stride 1 along the tiled axis, zero padding given as numbers,
``NCHW``/``NCL``, more than one output channel per group (with one, the BLAS multiplies a matrix by
a vector and sums in an order that depends on the length: 1e-6 from the whole result). Anything
else, and any convolution whose buffer fits, runs as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from .hooks import HookRegistry, ModelHook

__all__ = ["TiledConv", "BUFFER_BYTES", "tile_convolutions", "buffer_bytes"]

BUFFER_BYTES = 64 * 1024**2
"""The largest im2col buffer a tiled convolution may need (a band's); bigger ones are cut in bands."""

MIN_BAND_POSITIONS = 4096
"""The fewest output positions a band may have: a band that small still multiplies through the
BLAS's blocked matrix product, as the whole convolution does (much smaller products take other
kernels, which sum in another order)."""

TILED = 0
"""Order of a tile hook: it wraps the convolution's own call, inside every other speed-up."""


def _geometry(layer: Any) -> tuple[int, int, int] | None:
    """``(kernel, dilation, padding)`` along the tiled axis (rows of ``NCHW``, length of ``NCL``),
    or ``None`` when the layer is not a plain zero-padded, stride-1 convolution there."""
    fmt = getattr(layer, "_data_format", None)
    if getattr(layer, "_padding_mode", "zeros") != "zeros" or fmt not in ("NCHW", "NCL"):
        return None
    if fmt == "NCHW" and getattr(layer, "_padding_algorithm", "EXPLICIT") != "EXPLICIT":
        return None
    stride, dilation, kernel = (
        list(getattr(layer, a, None) or []) for a in ("_stride", "_dilation", "_kernel_size")
    )
    padding = getattr(layer, "_updated_padding", None) if fmt == "NCHW" else getattr(layer, "_padding", None)
    padding = [padding] * len(kernel) if isinstance(padding, int) else list(padding or [])
    if not kernel or len(padding) != len(kernel) or not all(isinstance(p, int) for p in padding):
        return None
    if stride[0] != 1 or int(layer._out_channels) // int(layer._groups) == 1:
        return None  # one output channel per group: a matrix-vector product, summed in an order
    # that depends on the band's length (1e-6 away from the whole convolution's), so it runs whole
    return int(kernel[0]), int(dilation[0]), int(padding[0])


def buffer_bytes(layer: Any, shape: tuple[int, ...], itemsize: int = 4) -> int:
    """The im2col buffer of ``layer`` on an input of ``shape``: in-channels per group × kernel
    area × output positions (stride 1, 'same'-style padding: as many positions as input)."""
    area = math.prod(int(k) for k in layer._kernel_size)
    positions = math.prod(int(s) for s in shape[2:])
    return int(layer._in_channels) // int(layer._groups) * area * positions * itemsize


def bands(rows: int, count: int) -> Iterator[tuple[int, int]]:
    """``count`` bands of output rows ``[a, b)`` covering ``0 .. rows``, as even as they come."""
    step = math.ceil(rows / count)
    for a in range(0, rows, step):
        yield a, min(rows, a + step)


class TiledConv(ModelHook):
    """Run one convolution band by band when its im2col buffer would exceed ``budget`` bytes."""

    order = TILED

    def __init__(
        self,
        layer: Any,
        geometry: tuple[int, int, int],
        budget: int = BUFFER_BYTES,
        min_positions: int = MIN_BAND_POSITIONS,
    ) -> None:
        self.layer, self.budget, self.min_positions = layer, int(budget), max(1, int(min_positions))
        self.kernel, self.dilation, self.padding = geometry

    def new_forward(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        if not _plain_call(self.layer, args, kwargs):
            return call(*args, **kwargs)
        x = args[0]
        shape = tuple(int(s) for s in x.shape)
        if len(shape) not in (3, 4):
            return call(*args, **kwargs)
        rows = shape[2] + 2 * self.padding - self.dilation * (self.kernel - 1)
        per_row = math.prod(shape[3:])  # output positions in one row
        most = max(1, rows * per_row // self.min_positions)
        count = min(rows, most, math.ceil(buffer_bytes(self.layer, shape, x.element_size()) / self.budget))
        if count < 2:
            return call(*args, **kwargs)
        return self._tiled(x, rows, count)

    def _tiled(self, x: Any, rows: int, count: int) -> Any:
        import paddle
        import paddle.nn.functional as F

        height = int(x.shape[2])
        reach = self.dilation * (self.kernel - 1)
        outs = []
        for a, b in bands(rows, count):
            lo, hi = a - self.padding, b - self.padding + reach  # the input rows band [a, b) reads
            piece = x[:, :, max(lo, 0) : min(hi, height)]
            top, bottom = max(0, -lo), max(0, hi - height)
            if top or bottom:  # zero rows where the whole convolution pads
                edge = [0, 0, top, bottom] if x.ndim == 4 else [top, bottom]
                piece = F.pad(piece, edge, data_format="NCHW" if x.ndim == 4 else "NCL")
            outs.append(self._conv(piece))
        return paddle.concat(outs, axis=2)

    def _conv(self, piece: Any) -> Any:
        import paddle.nn.functional as F

        layer = self.layer
        common = dict(stride=layer._stride, dilation=layer._dilation, groups=layer._groups)
        if piece.ndim == 4:
            width = int(layer._updated_padding[1])
            return F.conv2d(piece, layer.weight, layer.bias, padding=[0, width], **common)
        return F.conv1d(piece, layer.weight, layer.bias, padding=0, **common)


def _plain_call(layer: Any, args: tuple, kwargs: dict) -> bool:
    """A call of the convolution alone: its input, and for a LoRA-ready convolution without a LoRA
    (ppdiffusers' ``LoRACompatibleConv``) the ``scale`` it then ignores."""
    if getattr(layer, "lora_layer", None) is not None:
        return False
    extra = len(args) - 1 + len(kwargs)
    return len(args) >= 1 and (extra == 0 or (_lora_ready(layer) and extra == 1 and set(kwargs) <= {"scale"}))


def _lora_ready(layer: Any) -> bool:
    return hasattr(layer, "lora_layer")


def _convolutions(module: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """The convolutions under ``module`` that compute a plain convolution: paddle's own, or a
    subclass that only adds an optional LoRA (tiled only while it has none)."""
    import paddle

    for name, layer in module.named_sublayers(prefix=prefix):
        base = paddle.nn.Conv2D if isinstance(layer, paddle.nn.Conv2D) else paddle.nn.Conv1D
        if not isinstance(layer, base):
            continue
        if type(layer).forward is base.forward or _lora_ready(layer):
            yield name, layer


def tile_convolutions(
    registry: HookRegistry,
    module: Any,
    prefix: str,
    *,
    feature: str,
    budget: int = BUFFER_BYTES,
    min_positions: int = MIN_BAND_POSITIONS,
) -> int:
    """Hook every plain convolution under ``module`` (named ``<feature>/tile/<prefix>.<path>``) so
    that it runs in bands when its buffer would pass ``budget``; returns how many were hooked.

    Taken off with the feature's other hooks (``registry.remove_hooks(f"{feature}/")``).
    """
    hooked = 0
    for name, layer in _convolutions(module, prefix):
        geometry = _geometry(layer)
        if geometry is not None:
            hook = TiledConv(layer, geometry, budget, min_positions)
            registry.register_hook(hook, f"{feature}/tile/{name}", layer)
            hooked += 1
    return hooked
