"""The local engine: every row in this process, one after another."""

from __future__ import annotations

from typing import Any

from ..analysis import conform
from ..errors import MgtoolkitError
from ..tasks.text import generate_clips
from ..types import Clip, GenerationRequest
from .report import _Reporter
from .rows import Row


def _make(request: GenerationRequest, device: str | None, grid: Any = None) -> list[Clip]:
    """A row's clips in seed order (files are named by seed; ranking would only cost time), each
    conformed to the row's grid if it has one."""
    clips = generate_clips(request, device=device, rank=False)
    return clips if grid is None else [conform.conform_clip(c, grid) for c in clips]


def _run_local(rows: list[Row], report: _Reporter, *, device: str | None, fault) -> None:
    for row in rows:
        try:
            if fault is not None:
                fault(row.number)
            clips = _make(row.request, device, row.grid)
        except MgtoolkitError as exc:  # this row's problem; a failed write stops the job
            report.failed(row, exc)
            continue
        report.made(row, clips)
