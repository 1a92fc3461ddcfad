"""Convolutions in row bands (low-memory mode's bounded im2col buffer): the same output bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from test_speed_equivalence import _plain_pipe, _waves

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


def _tiled_once(conv, budget, min_positions=1):
    """Hook ``conv`` with a :class:`TiledConv` of ``budget`` bytes; returns (registry, bands used)."""
    from mgtoolkit.accel import tiling
    from mgtoolkit.accel.hooks import HookRegistry

    registry = HookRegistry()
    assert (
        tiling.tile_convolutions(
            registry, _Holder(conv), "m", feature="test", budget=budget, min_positions=min_positions
        )
        == 1
    )
    hook = registry.get_hook("test/tile/m.conv")
    calls = []
    original = hook._conv
    hook._conv = lambda piece: calls.append(piece.shape) or original(piece)
    return registry, calls


class _Holder:
    """A module holding one convolution (named ``conv``), for ``named_sublayers``."""

    def __init__(self, conv):
        self.conv = conv

    def named_sublayers(self, prefix=""):
        return [(f"{prefix}.conv", self.conv)]


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda nn: nn.Conv2D(6, 5, 3, padding=1), [2, 6, 37, 9]),  # the VAE's 3x3
        (lambda nn: nn.Conv2D(8, 6, 3, padding=1, groups=2), [1, 8, 20, 5]),
        (lambda nn: nn.Conv2D(4, 4, (3, 1), padding=(1, 0), dilation=(2, 1)), [1, 4, 25, 3]),
        (lambda nn: nn.Conv2D(4, 3, 3, padding=0), [1, 4, 19, 6]),  # no padding: rows shrink
        (lambda nn: nn.Conv2D(4, 3, 1), [1, 4, 30, 6]),  # 1x1
        (lambda nn: nn.Conv1D(5, 4, 11, padding=25, dilation=5), [2, 5, 300]),  # HiFi-GAN's resblock
        (lambda nn: nn.Conv1D(5, 4, 7, padding=3), [1, 5, 123]),  # HiFi-GAN's conv_pre / conv_post
    ],
)
def test_a_tiled_convolution_equals_the_whole_one_bit_for_bit(paddle, make, shape):
    paddle.seed(0)
    conv = make(paddle.nn)
    x = paddle.randn(shape)
    with paddle.no_grad():
        want = conv(x).numpy()
        registry, bands = _tiled_once(conv, budget=1024)
        got = conv(x).numpy()
    assert len(bands) > 2  # really cut in bands
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    registry.remove_hook("test/tile/m.conv")
    assert "forward" not in vars(conv)  # the convolution's own call again


def test_a_convolution_whose_buffer_fits_runs_whole(paddle):
    conv = paddle.nn.Conv2D(2, 2, 3, padding=1)
    with paddle.no_grad():
        _, bands = _tiled_once(conv, budget=10**9)
        conv(paddle.randn([1, 2, 16, 4]))
    assert bands == []


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.Conv2D(2, 2, 3, stride=2, padding=1),  # strided: the encoder's downsampling
        lambda nn: nn.Conv2D(2, 2, 3, padding=1, padding_mode="reflect"),
        lambda nn: nn.Conv2D(2, 2, 3, padding="SAME"),
        lambda nn: nn.Conv2D(2, 2, 3, padding=[1, 1, 0, 2]),  # uneven padding
        lambda nn: nn.Conv2D(2, 2, 3, padding=1, data_format="NHWC"),
        lambda nn: nn.Conv1DTranspose(2, 2, 4, stride=2),
        lambda nn: nn.Conv1D(8, 1, 7, padding=3),  # one output channel: summed in another order in bands
        lambda nn: nn.Conv2D(4, 2, 3, padding=1, groups=2),
    ],
)
def test_only_plain_convolutions_are_hooked(paddle, make):
    from mgtoolkit.accel import tiling
    from mgtoolkit.accel.hooks import HookRegistry

    assert tiling.tile_convolutions(HookRegistry(), _Holder(make(paddle.nn)), "m", feature="t", budget=1) == 0


def test_a_lora_ready_convolution_is_tiled_and_its_scale_ignored_while_it_has_no_lora(paddle):
    from mgtoolkit.models.audioldm import import_ppdiffusers

    import_ppdiffusers()
    from ppdiffusers.models.lora import LoRACompatibleConv

    paddle.seed(1)
    conv = LoRACompatibleConv(4, 4, 3, padding=1)
    x = paddle.randn([1, 4, 40, 8])
    with paddle.no_grad():
        want = conv(x, 1.0).numpy()
        _, bands = _tiled_once(conv, budget=1024)
        got = conv(x, 1.0).numpy()
    assert len(bands) > 2
    np.testing.assert_array_equal(got, want)


def test_a_band_keeps_the_fewest_positions_that_take_the_blocked_product(paddle):
    conv = paddle.nn.Conv1D(4, 4, 3, padding=1)
    with paddle.no_grad():
        _, bands = _tiled_once(conv, budget=1024, min_positions=4096)
        conv(paddle.randn([1, 4, 10000]))  # a 480 kB buffer would want 469 bands of 21 positions
    assert [int(shape[-1]) for shape in bands] == [
        5002,
        5002,
    ]  # two bands of 5,000 outputs, each reading a row of halo or zeros either side


def _record_bands(hook, name, banded):
    original = hook._tiled

    def tiled(*args):
        banded.append(name)
        return original(*args)

    hook._tiled = tiled


@pytest.mark.slow  # seconds: a whole tiny pipeline (make test runs it)
def test_the_tiny_pipeline_with_its_long_convolutions_in_bands_makes_the_same_waveform(paddle):
    from mgtoolkit.accel import tiling
    from mgtoolkit.accel.hooks import HookRegistry

    plain, tiled = _plain_pipe(), _plain_pipe()
    registry = HookRegistry.of(tiled)
    for name in ("unet", "vae", "vocoder"):
        tiling.tile_convolutions(registry, getattr(tiled, name), name, feature="t", budget=4096)
    banded = []
    for name in registry.names("t/"):
        _record_bands(registry.get_hook(name), name, banded)
    want = _waves(paddle, plain, 4.0, [3, 4])
    np.testing.assert_array_equal(_waves(paddle, tiled, 4.0, [3, 4]), want)
    assert any(n.startswith("t/tile/vae.decoder.") for n in banded)  # 400 x 64 spectrogram positions
    assert any(n.startswith("t/tile/vocoder.resblocks.") for n in banded)
    registry.remove_hooks("t/")
    assert not registry.names()
    np.testing.assert_array_equal(_waves(paddle, tiled, 4.0, [3, 4]), want)


def test_low_memory_mode_tiles_its_stages_and_takes_the_tiles_off_with_it(paddle, tmp_path):
    from mgtoolkit.accel import lowmem
    from mgtoolkit.accel.hooks import HookRegistry

    pipe = _plain_pipe()
    lowmem.enable(pipe, cache=tmp_path)
    registry = HookRegistry.of(pipe)
    tiles = registry.names("low_memory/tile/")
    assert any(n.startswith("low_memory/tile/vae.decoder.") for n in tiles)
    assert any(n.startswith("low_memory/tile/unet.") for n in tiles)
    assert any(n.startswith("low_memory/tile/vocoder.") for n in tiles)
    assert any("convolutions run in row bands" in line for line in registry.applied["low_memory"])
    lowmem.disable(pipe)
    assert not registry.names("low_memory/")


def test_low_memory_mode_gives_the_heap_back_once_per_unet_call_and_caps_the_arenas(
    paddle, tmp_path, monkeypatch
):
    from mgtoolkit.accel import footprint, lowmem
    from mgtoolkit.accel.hooks import HookRegistry

    capped = []
    monkeypatch.setattr(footprint, "cap_arenas", lambda count=1: capped.append(count) or True)
    pipe, plain = _plain_pipe(), _plain_pipe()
    lowmem.enable(pipe, cache=tmp_path)
    registry = HookRegistry.of(pipe)
    assert capped == [1]
    assert registry.chain(pipe.unet)[-2:] == ["low_memory/trim/unet.forward", "low_memory/unet.forward"]
    trims = []
    monkeypatch.setattr(footprint, "trim_heap", lambda **_: trims.append(1) or True)
    np.testing.assert_array_equal(_waves(paddle, pipe, 1.0, [3]), _waves(paddle, plain, 1.0, [3]))
    assert len(trims) == 3  # one per UNet call: 3 steps, the guidance pair in one call
    lowmem.disable(pipe)
    assert not registry.names("low_memory/")


def test_cap_arenas_sets_glibcs_arena_maximum(monkeypatch):
    from mgtoolkit.accel import footprint

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(footprint, "_libc", Libc)
    assert footprint.cap_arenas(1) is True
    assert calls == [(-8, 1)]  # M_ARENA_MAX
    monkeypatch.setattr(footprint, "_libc", lambda: None)
    assert footprint.cap_arenas(1) is False  # no glibc: nothing set
