"""Fixtures of the widget tests: a history of their own, and a temporary working directory."""

from __future__ import annotations

import pytest

from mgtoolkit.notebook.widgets import History


@pytest.fixture()
def history():
    return History()


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
