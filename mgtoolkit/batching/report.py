"""The tally of a batch while it runs (the reporter writes each row's clips) and its summary."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from ..errors import MgtoolkitError
from ..types import Clip
from .output import _write_clip
from .rows import Row


@dataclass(frozen=True, kw_only=True)
class BatchSummary:
    """What a batch did.

    Attributes
    ----------
    out : str
        Where the files are.
    engine : str
        ``"local"`` or ``"ray"``; ``actors`` is how many ran (1 for local).
    made, skipped : int
        Rows generated, and rows whose files were all there already.
    failed : tuple of str
        ``"line N: problem"`` for each row that could not be made.
    retries : int
        Rows run again after their actor died.
    clips : int
        Files written (``written`` holds their paths).
    seconds, startup_s : float
        Wall time of the whole job, and of starting the engine (Ray's start and its actors).
    """

    out: str
    engine: str
    actors: int
    made: int
    skipped: int
    failed: tuple[str, ...]
    retries: int
    clips: int
    seconds: float
    startup_s: float
    written: tuple[str, ...]

    @property
    def clips_per_minute(self) -> float:
        """Clips written per minute of wall time, start-up included."""
        return 60.0 * self.clips / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        where = (
            f"on ray with {self.actors} actor{'s' if self.actors != 1 else ''}, {self.retries} retried, "
            f"start-up {self.startup_s:.1f} s"
            if self.engine == "ray"
            else "in this process"
        )
        return (
            f"batch: {self.made} made, {self.skipped} skipped, {len(self.failed)} failed "
            f"(skipped: already in {self.out})\n"
            f"batch: {self.clips} clips in {self.seconds:.1f} s ({self.clips_per_minute:.1f} clips/min) {where}"
        )


@dataclass
class _Tally:
    made: int = 0
    skipped: int = 0
    retries: int = 0
    actors: int = 1
    startup_s: float = 0.0

    def __post_init__(self):
        self.failed: list[str] = []
        self.written: list[str] = []


class _Reporter:
    """Writes a row's clips, counts it and moves the bar; row errors go above the bar."""

    def __init__(self, output, tally: _Tally, progress: bool | TextIO, total: int, echo: TextIO | None):
        from tqdm import tqdm

        self.output, self.tally, self.echo, self.tqdm = output, tally, echo, tqdm
        self.err = None if progress is False else sys.stderr if progress is True else progress
        if progress is True:
            from tqdm.auto import tqdm as auto  # a widget in a notebook, text elsewhere

            self.bar = auto(total=total, desc="batch", unit="row")
        else:
            self.bar = tqdm(
                total=total, desc="batch", unit="row", file=self.err, disable=not total or not self.err
            )

    def _say(self, text: str, file: TextIO | None) -> None:
        if file is not None:
            self.tqdm.write(text, file=file)

    def made(self, row: Row, clips: Sequence[Clip]) -> None:
        for clip in clips:
            try:
                path = _write_clip(self.output, row.stem(clip.seed), clip)
            except OSError as exc:  # a full disk or a lost mount: every later row would fail too
                raise MgtoolkitError(
                    f"line {row.number}: cannot write to {self.output.shown} ({exc.strerror or exc}); "
                    "make room or choose another out, then run again: what was written is kept"
                ) from None
            if path is not None:
                self.tally.written.append(path)
                self._say(path, self.echo)
        self.tally.made += 1
        self.bar.update(1)

    def skipped(self, row: Row) -> None:
        self.tally.skipped += 1
        self.bar.update(1)

    def failed(self, row: Row, error: BaseException | str) -> None:
        self.tally.failed.append(f"line {row.number}: {error}")
        self._say(f"mgtoolkit: line {row.number}: {error}", self.err)
        self.bar.update(1)
