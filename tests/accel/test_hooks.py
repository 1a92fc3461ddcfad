"""The speed-ups are ordered, removable hooks in one registry per pipeline, and the loaded model turns
each on and off: after ``disable_*`` it makes exactly the waveform of a model never given that
speed-up (bit for bit, float32, tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
from test_speed_equivalence import _assert_close, _plain_pipe, _waves

from mgtoolkit.accel.hooks import PREDICTOR, SPLIT, STAGE_SWAP, HookRegistry, ModelHook

pytestmark = pytest.mark.filterwarnings("ignore")


# ---------------------------------------------------------------------------------------------
# The registry (no paddle).
# ---------------------------------------------------------------------------------------------
class Module:
    def forward(self, x):
        return [*x, "module"]

    def decode(self, x):
        return [*x, "decode"]


class Tag(ModelHook):
    def __init__(self, tag: str, order: int) -> None:
        self.tag, self.order = tag, order

    def new_forward(self, call, x):
        return call([*x, self.tag])


def test_hooks_nest_by_their_order_whatever_the_order_of_registration():
    module, registry = Module(), HookRegistry()
    registry.register_hook(Tag("swap", STAGE_SWAP), "low_memory/unet", module)
    registry.register_hook(Tag("split", SPLIT), "threads/unet", module)
    registry.register_hook(Tag("predictor", PREDICTOR), "predictors/unet", module)
    assert module.forward([]) == ["swap", "predictor", "split", "module"]  # outermost first
    assert registry.chain(module) == ["threads/unet", "predictors/unet", "low_memory/unet"]


def test_removing_a_hook_keeps_the_others_and_the_last_gives_the_class_method_back():
    module, registry = Module(), HookRegistry()
    for name, order in (("a", SPLIT), ("b", PREDICTOR), ("c", STAGE_SWAP)):
        registry.register_hook(Tag(name, order), name, module)
    registry.remove_hook("b")
    assert module.forward([]) == ["c", "a", "module"]
    registry.remove_hook("c")
    registry.remove_hook("a")
    assert "forward" not in vars(module)  # no instance attribute left behind
    assert module.forward.__func__ is Module.forward
    assert module.forward([]) == ["module"]
    registry.remove_hook("a")  # removing what is not there does nothing


def test_an_instance_attribute_held_before_is_put_back():
    module, registry = Module(), HookRegistry()

    def own(x):
        return [*x, "own"]

    module.forward = own
    registry.register_hook(Tag("t", SPLIT), "t", module)
    assert module.forward([]) == ["t", "own"]
    registry.remove_hook("t")
    assert vars(module)["forward"] is own


def test_hooks_on_several_calls_and_prefix_removal():
    module, registry = Module(), HookRegistry()
    registry.register_hook(Tag("s", SPLIT), "threads/unet", module)
    registry.register_hook(Tag("d", SPLIT), "threads/vae", module, "decode")
    registry.register_hook(Tag("w", STAGE_SWAP), "low_memory/vae.decode", module, "decode")
    assert module.decode([]) == ["w", "d", "decode"]
    registry.remove_hooks("threads/")
    assert registry.names() == ["low_memory/vae.decode"]
    assert module.decode([]) == ["w", "decode"] and module.forward([]) == ["module"]


def test_a_name_is_registered_once():
    module, registry = Module(), HookRegistry()
    registry.register_hook(Tag("t", SPLIT), "t", module)
    with pytest.raises(ValueError, match="registered already; remove_hook"):
        registry.register_hook(Tag("t", SPLIT), "t", module)


def test_the_registry_lives_on_its_owner():
    owner = type("Pipe", (), {})()
    assert HookRegistry.of(owner) is HookRegistry.of(owner)


# ---------------------------------------------------------------------------------------------
# On a pipeline.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


@pytest.fixture(scope="module")
def plain_waves(paddle):
    """What a pipeline never given any speed-up makes: one guidance pair, and three candidates, with
    BLAS on every core as mgtoolkit leaves it (whatever an earlier test's raw predictor run left)."""
    from mgtoolkit.accel.pieces import blas_on_all_cores

    blas_on_all_cores()
    pipe = _plain_pipe()
    return {seeds: _waves(paddle, pipe, 1.0, list(seeds)) for seeds in ((3,), (4, 5, 6))}


def _loaded(pipe):
    """A LoadedModel around ``pipe`` (not the load cache's: the test may change it at will)."""
    from mgtoolkit.models.audioldm import LoadedModel
    from mgtoolkit.models.plan import Plan
    from mgtoolkit.models.registry import resolve_model
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir

    plan = Plan(device="cpu", dtype="float32", optimize=False)
    return LoadedModel(
        resolve_model("tiny"), pipe, "cpu", "float32", 0.0, weights=str(tiny_audioldm_dir()), plan=plan
    )


def _same_as_plain(paddle, pipe, plain_waves):
    for seeds, want in plain_waves.items():
        np.testing.assert_array_equal(_waves(paddle, pipe, 1.0, list(seeds)), want)


def _plain_calls(pipe) -> None:
    for module in (pipe.unet, pipe.vae, pipe.vocoder, pipe.text_encoder):
        assert not {"forward", "decode", "get_text_features"} & set(vars(module)), type(module).__name__


def test_after_disable_threads_the_waveform_is_the_plain_one(paddle, plain_waves):
    model = _loaded(_plain_pipe())
    model.enable_threads(workers=2)
    assert model.report["applied"] == [
        f"{m}: batch/time split over 2 threads" for m in ("unet", "vae", "vocoder")
    ]
    _assert_close(_waves(paddle, model.pipe, 1.0, [4, 5, 6]), plain_waves[(4, 5, 6)])  # to float rounding
    model.disable_threads()
    _plain_calls(model.pipe)
    _same_as_plain(paddle, model.pipe, plain_waves)
    assert model.report["applied"] == [] and model.running_plan.optimize is False


def test_after_disable_low_memory_the_waveform_is_the_plain_one_and_nothing_is_stashed(
    paddle, plain_waves, monkeypatch, tmp_path
):
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    model = _loaded(_plain_pipe())
    model.enable_low_memory()
    assert model.pipe._mgtoolkit_lowmem.resident is None
    assert not any(p._is_initialized() for p in model.pipe.unet.parameters())
    _same_as_plain(paddle, model.pipe, plain_waves)  # low-memory mode is bit for bit already
    assert not list(tmp_path.glob("weights/*"))  # read back from the model folder, no stash
    assert model.info()["plan"]["low_memory"] is True
    model.disable_low_memory()
    _plain_calls(model.pipe)
    assert all(p._is_initialized() for p in model.pipe.unet.parameters())
    _same_as_plain(paddle, model.pipe, plain_waves)
    assert model.info()["plan"]["low_memory"] is False and model.report["low_memory"] is False


@pytest.mark.slow  # seconds: a whole tiny pipeline (make test runs it)
def test_after_disable_predictors_the_waveform_is_the_plain_one(paddle, plain_waves, monkeypatch, tmp_path):
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    model = _loaded(_plain_pipe())
    model.enable_predictors(("unet", "vae", "vocoder"))
    assert model.info()["plan"]["predictor_modules"] == ["unet", "vae", "vocoder"]
    assert model.info()["plan"]["predictors"] == "float32"
    _waves(paddle, model.pipe, 1.0, [3])  # exported, verified: the dygraph weights released
    engines = model.pipe._mgtoolkit_engines
    assert {e.state for e in engines.values()} == {"ready"}
    model.disable_predictors()
    assert {e.state for e in engines.values()} == {"dygraph"}
    _plain_calls(model.pipe)
    _same_as_plain(paddle, model.pipe, plain_waves)
    assert model.report["predictors"] == [] and model.info()["plan"]["predictors"] == "off"
    model.enable_predictors("vocoder")  # on again: the verified export is found, no new check
    assert model.pipe._mgtoolkit_engines["vocoder"].state == "ready"


def test_all_three_on_then_off_in_any_order_is_the_plain_pipeline(paddle, plain_waves, monkeypatch, tmp_path):
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    model = _loaded(_plain_pipe())
    model.enable_low_memory()
    model.enable_predictors("vocoder")
    model.enable_threads(workers=2)
    registry = HookRegistry.of(model.pipe)
    assert registry.chain(model.pipe.vocoder) == ["threads/vocoder", "predictors/vocoder"]
    assert registry.chain(model.pipe.unet) == [
        "threads/unet",
        "low_memory/trim/unet.forward",
        "low_memory/unet.forward",
    ]
    assert sorted(model.pipe._mgtoolkit_lowmem.stages) == ["text_encoder", "unet", "vae"]  # not the vocoder
    _waves(paddle, model.pipe, 1.0, [3])
    model.disable_predictors()  # low-memory mode now swaps the vocoder too
    assert sorted(model.pipe._mgtoolkit_lowmem.stages) == ["text_encoder", "unet", "vae", "vocoder"]
    model.disable_threads()
    _same_as_plain(paddle, model.pipe, plain_waves)
    model.disable_low_memory()
    _plain_calls(model.pipe)
    assert registry.names() == []
    _same_as_plain(paddle, model.pipe, plain_waves)


def test_disabling_one_speed_up_leaves_the_waveform_of_the_others(paddle):
    """Thread split and low-memory mode, then low-memory off: what the split alone makes, bit for bit."""
    split_only, both = _loaded(_plain_pipe()), _loaded(_plain_pipe())
    split_only.enable_threads(workers=2)
    both.enable_threads(workers=2)
    both.enable_low_memory()
    both.disable_low_memory()
    for seeds in ([3], [4, 5, 6]):
        np.testing.assert_array_equal(
            _waves(paddle, both.pipe, 1.0, seeds), _waves(paddle, split_only.pipe, 1.0, seeds)
        )


def test_undo_takes_every_hook_off(paddle, plain_waves, tmp_path):
    from mgtoolkit import accel

    pipe = _plain_pipe()
    accel.optimize(pipe, "cpu", threads=2, onednn=(), low_memory=True)
    assert HookRegistry.of(pipe).names() != []
    accel.undo(pipe)
    assert HookRegistry.of(pipe).names() == []
    _plain_calls(pipe)
    _same_as_plain(paddle, pipe, plain_waves)


def test_speed_ups_are_for_the_cpu(paddle):
    from mgtoolkit.errors import InvalidInputError

    model = _loaded(_plain_pipe())
    gpu = type(model)(model.spec, model.pipe, "gpu:0", "float16", 0.0)
    with pytest.raises(InvalidInputError, match="enable_low_memory.*device='cpu'"):
        gpu.enable_low_memory()
    gpu.disable_low_memory()  # nothing to take off
    with pytest.raises(InvalidInputError, match="precision"):
        model.enable_predictors(precision="float16")
