"""``import mgtoolkit`` stays light: no paddle, ppdiffusers, paddlenlp, ipywidgets or matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["paddle", "ppdiffusers", "paddlenlp", "ipywidgets", "matplotlib", "librosa", "IPython"]


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_does_not_load_heavy_packages():
    loaded = _modules_after("import mgtoolkit as mg; mg.generate; mg.GenerationRequest; mg.PRESETS")
    assert not [m for m in HEAVY if m in loaded]


def test_validating_a_request_stays_light():
    loaded = _modules_after(
        "import mgtoolkit as mg\nmg.validate_request(mg.GenerationRequest(prompt='calm piano', model='tiny'))"
    )
    assert not [m for m in HEAVY if m in loaded]


def test_unknown_attribute_is_an_attribute_error():
    import mgtoolkit as mg

    try:
        mg.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_submodules_are_attributes_on_first_use():
    import mgtoolkit as mg

    assert mg.plots.waveshow is mg.waveshow
    assert "plots" in dir(mg) and callable(mg.prompts.template_prompt)
