"""Fixtures of the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "mg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", raising=False)
    return tmp_path
