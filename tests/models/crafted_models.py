"""Helpers of the crafted-model tests: copies of the tiny models to craft, JSON edits, and the
one-line check every refusal must pass. (Not a test module; pytest puts this folder on
``sys.path``, so the tests import it by name.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _one_line(exc_info, *parts: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def _tiny_pipeline(root: Path, name: str) -> Path:
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    folder = root / name
    shutil.copytree(tiny_dir("tiny"), folder)
    return folder


def _tiny_writer(root: Path, name: str) -> Path:
    from mgtoolkit.models.tiny.llm import tiny_dir

    folder = root / name
    shutil.copytree(tiny_dir("qwen2"), folder)
    return folder
