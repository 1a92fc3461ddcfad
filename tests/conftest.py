"""Shared fixtures. Every test runs offline on the tiny models.

MGTOOLKIT_MODEL is set in os.environ (not only in a fixture) so that notebook kernels started by
nbval inherit it.
"""

from __future__ import annotations

import os

os.environ["MGTOOLKIT_MODEL"] = "tiny"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

# Short and cheap, but the real AudioLDMPipeline code path.
FAST = {"audio_length_in_s": 1.0, "num_inference_steps": 3, "model": "tiny"}


@pytest.fixture(autouse=True)
def _load_settings_per_test():
    """No test runs on the options another test passed to ``load_model`` (a task naming a model
    uses its latest load's options); the cached pipelines stay, for speed."""
    yield
    from mgtoolkit.models.loading import forget_settings

    forget_settings()


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny AudioLDM, loaded once (built into the cache on first use)."""
    import mgtoolkit as mg

    return mg.load_model("tiny")


@pytest.fixture(scope="session")
def fast():
    """Keyword arguments for a short tiny generation (copy before changing: ``{**fast, ...}``)."""
    return dict(FAST)
