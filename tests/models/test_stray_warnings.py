"""A warning from elsewhere in the process during a load does not fail a sound model.

paddlenlp records every warning raised while it copies weights into a model and reports them as
load errors; an unclosed file collected by another thread at that moment used to fail the load as
"some files are missing or damaged".
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.models.model_files import load_despite_stray_warnings, stray_warnings

STRAY = "unclosed file <_io.BufferedReader name='/tmp/elsewhere'>"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError(f"Error(s) in loading state_dict for ClapTextModel:\n\t{STRAY}"), [STRAY]),
        (
            RuntimeError(
                f"Error(s) in loading state_dict for M:\n\t{STRAY}\n\tunclosed <socket.socket fd=3>"
            ),
            [STRAY, "unclosed <socket.socket fd=3>"],
        ),
        (RuntimeError(f"Error(s) in loading state_dict for M:\n\t{STRAY}\n\tError size mismatch, w"), []),
        (RuntimeError("Error(s) in loading state_dict for M:\n\tMissing key(s): w"), []),
        (RuntimeError("Error(s) in loading state_dict for M"), []),
        (RuntimeError(STRAY), []),
        (ValueError(f"Error(s) in loading state_dict for M:\n\t{STRAY}"), []),
    ],
)
def test_only_loads_failed_by_nothing_but_stray_warnings_are_recognised(exc, expected):
    assert stray_warnings(exc) == expected


def test_a_load_is_made_once_more_only_after_stray_warnings():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"Error(s) in loading state_dict for M:\n\t{STRAY}")
        return "model"

    assert load_despite_stray_warnings(flaky) == "model" and len(calls) == 2

    def broken():
        calls.append(1)
        raise RuntimeError("Error(s) in loading state_dict for M:\n\tError size mismatch, w")

    calls.clear()
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_despite_stray_warnings(broken)
    assert len(calls) == 1


@pytest.fixture
def noisy_loads(monkeypatch):
    """Every paddle ``set_state_dict`` (what paddlenlp calls inside its warnings record) raises a
    ResourceWarning first, as a file collected by another thread would: on the first ``times``."""
    from mgtoolkit.runtime import import_paddle

    layer = import_paddle().nn.Layer
    original, seen = layer.set_state_dict, []

    def arm(times):
        def set_state_dict(self, *args, **kwargs):
            seen.append(type(self).__name__)
            if len(seen) <= times:
                warnings.warn(STRAY, ResourceWarning, stacklevel=2)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(layer, "set_state_dict", set_state_dict)
        return seen

    mg.unload()
    yield arm
    mg.unload()


def test_a_stray_warning_during_the_load_leaves_the_model_as_it_should_be(tiny_model, noisy_loads):
    kw = dict(audio_length_in_s=1.0, num_inference_steps=2, seed=5, rank=False)
    expected = mg.generate("rain on a tin roof", model=tiny_model, **kw).waveform
    mg.unload()
    seen = noisy_loads(times=1)
    model = mg.load_model("tiny")
    assert seen.count("ClapTextModelWithProjection") == 2  # the failed copy, then the load again
    np.testing.assert_array_equal(mg.generate("rain on a tin roof", model=model, **kw).waveform, expected)


def test_warnings_at_every_load_still_fail_in_one_line(noisy_loads):
    noisy_loads(times=10**6)
    with pytest.raises(ModelUnavailableError) as info:
        mg.load_model("tiny")
    message = str(info.value)
    assert "\n" not in message and "unclosed file" in message and message.startswith("model='tiny'")
