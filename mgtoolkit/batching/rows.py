"""Rows: what a batch makes (a prompts file, a list of prompts, dicts of parameters or requests)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..analysis import conform
from ..errors import InvalidInputError, MgtoolkitError
from ..io.audio import safe_stem
from ..tasks.text import validate_request
from ..types import GenerationRequest

# CSV column aliases (the CLI's option names) -> GenerationRequest fields
_ALIASES = {
    "seconds": "audio_length_in_s",
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "n": "num_waveforms_per_prompt",
    "negative": "negative_prompt",
}
_NUMBER_FIELDS = {
    "audio_length_in_s": float,
    "guidance_scale": float,
    "num_inference_steps": int,
    "seed": int,
    "num_waveforms_per_prompt": int,
}
_FIELDS = frozenset(f.name for f in fields(GenerationRequest))
_GRID = {"bpm": float, "bars": int, "beats_per_bar": int, "key": str}
"""CSV columns that make each clip obey a grid (see :func:`mgtoolkit.conform`)."""


@dataclass(frozen=True, kw_only=True)
class Row:
    """One row of a batch: its number (the file's line, or 1, 2, ... for a list) and its request.

    ``error`` holds the problem of a row that cannot be made (then ``request`` is ``None``).
    """

    number: int
    request: GenerationRequest | None = None
    error: MgtoolkitError | None = None
    grid: Any = None

    def stem(self, seed: int) -> str:
        """The file stem of the row's clip made with ``seed``: ``NNNN-<prompt>_seed<seed>``
        (``NNNN-<prompt>_120bpm_Am_4bars_seed<seed>`` with a grid)."""
        label = f"{self.grid.label()}_" if self.grid is not None else ""
        return f"{self.number:04d}-{safe_stem(self.request.prompt, max_len=40)}_{label}seed{seed}"

    def stems(self) -> list[str]:
        """The file stems of the row's clips, one per candidate (seeds ``seed``, ``seed + 1``, ...)."""
        request = self.request
        return [self.stem(request.seed + k) for k in range(request.num_waveforms_per_prompt)]


def read_rows(rows: Any, base: GenerationRequest) -> list[Row]:
    """The rows of a prompts file or a list, each checked (a bad row carries its error).

    Parameters
    ----------
    rows : str, Path or iterable
        A ``.csv`` file whose header names request fields (or the CLI's option names), any other
        text file with one prompt a line (blank lines and ``#`` comments skipped), or a list of
        prompts, dicts of parameters or :class:`GenerationRequest`.
    base : GenerationRequest
        The defaults a row's empty cells take (its ``prompt`` is not used).

    Examples
    --------
    >>> base = GenerationRequest(prompt="", seed=0, model="tiny")
    >>> [(r.number, r.request.prompt, r.request.seed) for r in read_rows(["rain", {"prompt": "sea", "seed": "7"}], base)]
    [(1, 'rain', 0), (2, 'sea', 7)]
    """
    if isinstance(rows, (str, os.PathLike)):
        found = _read_file(Path(rows))
    elif isinstance(rows, Iterable) and not isinstance(rows, (bytes, dict)):
        found = [(n, _from_item(item, base)) for n, item in enumerate(rows, start=1)]
    else:
        raise InvalidInputError(
            "rows", type(rows).__name__, "is not a file or a list", "pass a path or a list of prompts"
        )
    return [_checked(number, item, base) for number, item in found]


def _read_file(path: Path) -> list[tuple[int, Any]]:
    try:
        text = path.expanduser().read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "file", str(path), f"cannot be read ({exc})", "pass a UTF-8 text or CSV file"
        ) from None
    if path.suffix.lower() == ".csv":
        return list(enumerate(csv.DictReader(text.splitlines()), start=2))
    lines = enumerate(text.splitlines(), start=1)
    return [(n, {"prompt": line}) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]


def _from_item(item: Any, base: GenerationRequest) -> Any:
    if isinstance(item, GenerationRequest):
        return item
    if isinstance(item, str):
        return {"prompt": item}
    if isinstance(item, dict):
        return item
    return InvalidInputError(
        "row", repr(item)[:40], "is not a prompt", "pass text, a dict or a GenerationRequest"
    )


def _checked(number: int, item: Any, base: GenerationRequest) -> Row:
    try:
        if isinstance(item, Exception):
            raise item
        grid = _row_grid(item) if isinstance(item, dict) else None
        request = item if isinstance(item, GenerationRequest) else _row_request(item, base)
        if grid is not None:
            grid, length = conform.generation_length(grid, request.audio_length_in_s, base.audio_length_in_s)
            request = request.replace(audio_length_in_s=length)
        return Row(number=number, request=validate_request(request), grid=grid)
    except MgtoolkitError as exc:
        return Row(number=number, error=exc)


def _row_grid(row: dict) -> Any:
    """The row's grid (``bpm``, ``bars``, ``beats_per_bar``, ``key`` cells), checked; ``None`` without one."""
    cells = {}
    for key, value in row.items():
        name = str(key or "").strip().replace("-", "_")
        if name not in _GRID or value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            cells[name] = _GRID[name](value.strip()) if isinstance(value, str) else value
        except ValueError:
            raise InvalidInputError(name, value, "is not a number", "fix that cell") from None
    return conform.check_grid(**cells)


def _row_request(row: dict, base: GenerationRequest) -> GenerationRequest:
    changes = {}
    for key, value in row.items():
        name = _ALIASES.get(str(key or "").strip(), str(key or "").strip())
        if name.replace("-", "_") in _GRID:
            continue
        if name not in _FIELDS:
            raise InvalidInputError(
                "column", key, "is not a parameter", f"use {', '.join(sorted(_FIELDS | set(_GRID)))}"
            )
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        if not isinstance(value, str):
            changes[name] = value
            continue
        try:
            changes[name] = _NUMBER_FIELDS.get(name, str)(value.strip())
        except ValueError:
            raise InvalidInputError(name, value, "is not a number", "fix that cell") from None
    return base.replace(**changes)
