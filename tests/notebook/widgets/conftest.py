"""Fixtures of the widget tests: a history of their own, a temporary working directory, and
stand-in backends that count their calls."""

from __future__ import annotations

import pytest
from visitor_standins import Calls

from mgtoolkit.notebook.widgets import History


@pytest.fixture()
def history():
    return History()


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def calls():
    return Calls()
