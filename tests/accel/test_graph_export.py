"""An export writes the same files without dy2static's source maps, and leaves paddle as it found it.

No timings here (the figure is in benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

from mgtoolkit.accel import export

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


_LAYER = """
import paddle


class Branchy(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        paddle.seed(3)
        self.a = paddle.nn.Conv2D(2, 4, 3, padding=1)
        self.b = paddle.nn.Conv2D(4, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if y.shape[0] > 1:
            y = paddle.nn.functional.silu(y)
        for _ in range(2):
            y = y + {step}
        return self.b(y)
"""


def _branchy_layer(folder, step=1.0):
    """A layer with a branch and a loop for dy2static to translate, from a source file of its own
    (dy2static caches its translations per source text)."""
    import importlib.util

    path = folder / f"branchy_{str(step).replace('.', '_')}.py"
    path.write_text(_LAYER.format(step=step))
    spec = importlib.util.spec_from_file_location(f"branchy_{id(path)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Branchy()


def _save(folder, prefix, step=1.0):
    from paddle.utils import unique_name

    with unique_name.guard():  # the same parameter names for every export of the same layer
        export.save(_branchy_layer(folder, step), str(prefix), [export.spec([None, 2, None, None])])


def _origin_map():
    from paddle.jit.dy2static.origin_info import global_origin_info_map

    return global_origin_info_map


def test_an_export_builds_no_source_maps_and_puts_the_translator_back(paddle, tmp_path):
    from paddle.jit.dy2static import program_translator as translator

    before = (translator.attach_origin_info, translator.create_and_update_origin_info_map)
    entries = len(_origin_map())
    _save(tmp_path, tmp_path / "model", step=2.0)
    assert len(_origin_map()) == entries
    assert (translator.attach_origin_info, translator.create_and_update_origin_info_map) == before


def test_with_source_maps_the_program_and_weights_are_the_same(paddle, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(export, "without_source_maps", contextlib.nullcontext)
        entries = len(_origin_map())
        _save(tmp_path, tmp_path / "with" / "model", step=3.0)
    assert len(_origin_map()) > entries  # dy2static maps what it translates when left alone
    (tmp_path / "again").mkdir()
    _save(tmp_path / "again", tmp_path / "without" / "model", step=3.0)
    with_maps, without_maps = (tmp_path / "with" / "model", tmp_path / "without" / "model")
    assert _program(without_maps) == _program(with_maps)
    assert (
        without_maps.with_suffix(".pdiparams").read_bytes()
        == with_maps.with_suffix(".pdiparams").read_bytes()
    )


def _program(prefix):
    """The exported program, without the layers' ``struct_name`` labels: they carry a per-process
    counter (``/Conv2D_2/``), so two exports in one process differ there and only there (two
    processes write the same bytes: checked on the full-size UNet)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node if not (isinstance(v, dict) and v.get("N") == "struct_name")]
        return node

    program = strip(json.loads(prefix.with_suffix(".json").read_text()))
    assert "struct_name" not in json.dumps(program)
    return program


def run_predictor(prefix, array, precision="float32", passes_off=()):
    """A new predictor of ``prefix``'s export run once on ``array``; its output."""
    from mgtoolkit.accel.pieces import blas_on_all_cores
    from mgtoolkit.accel.predictor import make_predictor

    predictor = make_predictor(prefix, precision, passes_off)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(array.shape))
    handle.copy_from_cpu(array)
    try:
        predictor.run()
    finally:  # a predictor's run leaves this thread's BLAS on one core: later tests' sums would differ
        blas_on_all_cores()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def test_the_exported_program_computes_what_the_layer_does(paddle, tmp_path):
    _save(tmp_path, tmp_path / "model", step=4.0)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 7)).astype("float32")
    got = run_predictor(tmp_path / "model", x)
    with paddle.no_grad():
        expected = _branchy_layer(tmp_path, 4.0)(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_translator_without_those_steps_is_left_alone(monkeypatch):
    from paddle.jit.dy2static import program_translator as translator

    monkeypatch.delattr(translator, "attach_origin_info")
    original = translator.create_and_update_origin_info_map
    with export.without_source_maps():
        assert translator.create_and_update_origin_info_map is original
    assert not hasattr(translator, "attach_origin_info")


@pytest.mark.parametrize(
    ("shape", "size", "scale"),
    [
        ((2, 3, 32, 4), (63, 8), None),  # 2n - 1: the UNet's odd lengths
        ((2, 3, 16, 2), (32, 4), None),
        ((1, 2, 63, 8), (125, 16), None),
        ((1, 2, 7, 3), None, 2.0),  # the VAE's plain doubling
    ],
)
def test_nearest_as_gathers_equals_interpolate(paddle, shape, size, scale):
    from mgtoolkit.accel.onednn import _nearest_as_gathers

    functional = paddle.nn.functional
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"))
    kwargs = {"size": list(size)} if size else {"scale_factor": scale}
    want = functional.interpolate(x, mode="nearest", **kwargs).numpy()
    got = _nearest_as_gathers(functional.interpolate, paddle)(x, mode="nearest", **kwargs).numpy()
    np.testing.assert_array_equal(got, want)
