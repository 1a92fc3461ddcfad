"""Many prompts to many files: the batch job, in this process or over a Ray cluster.

``mg.batch(rows, out=...)`` (and ``python -m mgtoolkit batch``) turns rows (a prompts file, a
list of prompts, dicts of parameters or requests) into ``NNNN-<prompt>_seed<k>.wav`` files with JSON
sidecars. ``engine="ray"`` spreads the rows over a pool of Ray actors, each holding its loaded model
(one per GPU on GPU nodes; one per node, using all its cores, on CPU nodes). The contract is the same
for both engines:

- the same file names, sidecars and seeds (a row's clips are the same wherever it runs);
- every clip is written exactly once: only this process writes files (the actors compute), each file
  through a temporary file and an atomic rename that never overwrites, the WAV last; a rerun skips
  what exists, so a stopped job resumes where it was;
- a failing row is reported and the rest go on; a row whose actor dies (a killed process, a lost
  node) is run again on another actor and counted as a retry.

Ray is imported only for ``engine="ray"``; it is the optional extra ``mgtoolkit[cluster]``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import types
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from .analysis import conform
from .errors import InvalidInputError, MgtoolkitError
from .io.audio import ensure_writable_dir, safe_stem, wav_bytes, write_atomic
from .tasks.text import generate_clips, validate_request
from .types import Clip, GenerationRequest

__all__ = ["batch", "read_rows", "Row", "BatchSummary", "ENGINES", "MAX_ATTEMPTS"]

ENGINES = ("local", "ray")
MAX_ATTEMPTS = 3
"""Runs of one row before it is reported failed (a row that kills every actor must not kill them all)."""

CLUSTER_HINT = "install the cluster extra: pip install 'mgtoolkit[cluster]'"

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


# ---------------------------------------------------------------------------------------------
# Rows: what to make.
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Output: a local folder or any filesystem fsspec/pyarrow can write. Only this process writes.
# ---------------------------------------------------------------------------------------------
class _Folder:
    """A local folder: atomic, never-overwriting writes (:func:`mgtoolkit.io.audio.write_atomic`)."""

    def __init__(self, out: str | os.PathLike, field: str):
        self.root = ensure_writable_dir(out, field)
        self.shown = str(self.root)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def read(self, name: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of ``name`` (a regular file, not followed through a symlink)."""
        path = self.root / name
        if path.is_symlink() or not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(limit)

    def write(self, name: str, data: bytes) -> str:
        return str(write_atomic(self.root / name, lambda tmp: tmp.write_bytes(data)))


class _Remote:
    """A folder on an fsspec filesystem (``memory://``, ``s3://``, ``gs://``, a shared disk...).

    A file is written under a temporary name and moved into place (object stores make it appear
    whole); one that exists is never written again.
    """

    def __init__(self, url: str, field: str):
        self.fs, self.root = _filesystem(url, field)
        self.shown = url.rstrip("/")
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                field, url, f"cannot be created ({exc})", "choose a folder you can write to"
            ) from None

    def _path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(name)))

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self._path(name))

    def read(self, name: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of ``name``, if it is there."""
        if not self.exists(name):
            return None
        with self.fs.open(self._path(name), "rb") as handle:
            return handle.read(limit)

    def write(self, name: str, data: bytes) -> str:
        path = self._path(name)
        if self.fs.exists(path):
            raise FileExistsError(f"{path} exists; mgtoolkit never overwrites")
        tmp = self._path(f".mg-{uuid.uuid4().hex}.part")
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return f"{self.shown}/{name}"


def _filesystem(url: str, field: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path)`` for ``url``; pyarrow's filesystems where fsspec lacks one."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as fsspec_error:
        try:
            from fsspec.implementations.arrow import ArrowFSWrapper
            from pyarrow import fs as pafs

            arrow, path = pafs.FileSystem.from_uri(url)
            return ArrowFSWrapper(arrow), path
        except Exception:  # noqa: BLE001 - neither library can write there
            raise InvalidInputError(
                field,
                url,
                f"is not a filesystem fsspec or pyarrow can write ({fsspec_error})",
                "pass a folder or e.g. s3://bucket/path",
            ) from None


def open_output(out: str | os.PathLike, field: str = "out") -> _Folder | _Remote:
    """Where a batch writes: a local folder, or a URL with a ``scheme://``."""
    if isinstance(out, str) and "://" in out and not out.startswith("file://"):
        return _Remote(out, field)
    return _Folder(str(out).removeprefix("file://"), field)


def _write_clip(output: _Folder | _Remote, stem: str, clip: Clip) -> str | None:
    """Write ``stem.json`` then ``stem.wav`` (the WAV marks it done); ``None`` if it exists."""
    if output.exists(f"{stem}.wav"):
        return None
    metadata = {**clip.metadata(), "file": f"{stem}.wav"}
    if output.exists(f"{stem}.json"):  # a sidecar without its WAV: left by a run that was stopped?
        if not _our_sidecar(output, stem):
            raise FileExistsError(
                f"{output.shown}/{stem}.json exists and was not written by mgtoolkit; move it away"
            )
        output.remove(f"{stem}.json")
    output.write(
        f"{stem}.json", (json.dumps(metadata, indent=2, ensure_ascii=False, default=_plain) + "\n").encode()
    )
    try:
        return output.write(f"{stem}.wav", wav_bytes(clip.waveform, clip.sample_rate))
    except FileExistsError:
        return None


def _our_sidecar(output: _Folder | _Remote, stem: str) -> bool:
    """Whether ``stem.json`` is a sidecar a batch wrote for ``stem.wav`` (JSON naming that WAV,
    with mgtoolkit's version): only such a file is replaced, never someone else's."""
    data = output.read(f"{stem}.json", 10_000_000)
    try:
        sidecar = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(sidecar, dict)
        and sidecar.get("file") == f"{stem}.wav"
        and "mgtoolkit_version" in sidecar
        and isinstance(sidecar.get("parameters"), dict)
    )


def _plain(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)


# ---------------------------------------------------------------------------------------------
# The summary.
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The job.
# ---------------------------------------------------------------------------------------------
def batch(
    rows: Any,
    *,
    out: str | os.PathLike = "outputs",
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    actor_cpus: float | None = None,
    actor_gpus: float | None = None,
    device: str | None = None,
    negative_prompt: str | None = None,
    audio_length_in_s: float = 5.0,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.5,
    seed: int = 0,
    num_waveforms_per_prompt: int = 1,
    model: str | None = None,
    scheduler: str | None = None,
    progress: bool | TextIO = True,
    echo: TextIO | None = None,
    _fault: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Make every row's clips into ``out``, skipping what is there; in this process or on Ray.

    Parameters
    ----------
    rows : str, Path or list
        A prompts file (``.csv`` with parameter columns, or one prompt a line), or a list of
        prompts, dicts of parameters or :class:`GenerationRequest` (see :func:`read_rows`).
    out : str or Path
        A folder, or any URL fsspec/pyarrow can write (``s3://bucket/clips``, ``memory://x``).
    engine : {"local", "ray"}
        ``"ray"`` spreads the rows over Ray actors (needs ``mgtoolkit[cluster]``).
    address : str, optional
        The Ray cluster (``"auto"``, ``"ray://head:10001"``); ``None`` joins a running
        ``ray.init()`` or starts a local one.
    actors : int, optional
        Actors in the pool; default one per GPU, or one per node on CPU-only clusters.
    actor_cpus, actor_gpus : float, optional
        Resources of each actor; default the node's cores (CPU) or one GPU.
    device : str, optional
        ``"cpu"``/``"gpu"``; default: a GPU where the actor has one.
    negative_prompt, audio_length_in_s, num_inference_steps, guidance_scale, seed, num_waveforms_per_prompt, model, scheduler
        Defaults for the cells a row leaves empty (as :func:`mgtoolkit.generate`); ``seed``
        defaults to 0 so that a rerun makes the same files.
    progress : bool or file
        A progress bar over rows (tqdm; a file such as ``sys.stderr`` to draw it there).
    echo : file, optional
        Each written WAV path is printed there as it lands.

    Returns
    -------
    BatchSummary
        Rows made, skipped and failed, retries, clips per minute; ``print()`` it.

    Examples
    --------
    >>> summary = batch(["calm piano"], out=getfixture("tmp_path"), model="tiny",
    ...                 audio_length_in_s=0.5, num_inference_steps=2, progress=False)
    >>> summary.made, [Path(p).name for p in summary.written]
    (1, ['0001-calm-piano_seed0.wav'])
    """
    if engine not in ENGINES:
        raise InvalidInputError("engine", engine, "is not a batch engine", f"use one of {', '.join(ENGINES)}")
    base = validate_request(
        GenerationRequest(
            prompt="placeholder",
            negative_prompt=negative_prompt,
            audio_length_in_s=audio_length_in_s,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=seed,
            num_waveforms_per_prompt=num_waveforms_per_prompt,
            model=model,
            scheduler=scheduler,
        )
    ).replace(prompt="")
    _check_actors(actors)
    ray = _import_ray() if engine == "ray" else None
    todo = read_rows(rows, base)
    output = open_output(out)
    started = time.perf_counter()
    tally = _Tally(actors=0 if engine == "ray" else 1)
    report = _Reporter(output, tally, progress, len(todo), echo)
    with report.bar:
        pending = []
        for row in todo:
            if row.error is not None:
                report.failed(row, row.error)
            elif all(output.exists(f"{s}.wav") for s in row.stems()):
                report.skipped(row)
            else:
                pending.append(row)
        if ray is None:
            _run_local(pending, report, device=device, fault=_fault)
        else:
            sizes = {"actors": actors, "actor_cpus": actor_cpus, "actor_gpus": actor_gpus}
            _run_ray(ray, pending, report, address=address, device=device, fault=_fault, **sizes)
    return BatchSummary(
        out=output.shown,
        engine=engine,
        actors=tally.actors,
        made=tally.made,
        skipped=tally.skipped,
        failed=tuple(tally.failed),
        retries=tally.retries,
        clips=len(tally.written),
        seconds=time.perf_counter() - started,
        startup_s=tally.startup_s,
        written=tuple(tally.written),
    )


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


# ---------------------------------------------------------------------------------------------
# The Ray engine.
# ---------------------------------------------------------------------------------------------
def _import_ray() -> types.ModuleType:
    try:
        import ray
    except ImportError:
        raise MgtoolkitError(f"engine='ray' needs Ray, which is not installed; {CLUSTER_HINT}") from None
    return ray


class _Worker:
    """A Ray actor: one process holding the loaded model, making the clips of one row per call."""

    def __init__(self, device: str | None, fault: Callable[[int], None] | None):
        self.device, self.fault = device, fault

    def pid(self) -> int:
        return os.getpid()

    def make(self, number: int, request: GenerationRequest, grid: Any = None) -> tuple[str, Any]:
        if self.fault is not None:
            self.fault(number)
        try:
            return "ok", _make(request, self.device, grid)
        except MgtoolkitError as exc:
            return "error", str(exc)


def plan_actors(
    nodes: list[dict],
    *,
    actors: int | None = None,
    actor_cpus: float | None = None,
    actor_gpus: float | None = None,
) -> list[dict]:
    """Ray options of each actor of the pool, from the alive nodes' resources (``ray.nodes()``).

    One actor per GPU on GPU nodes; one per node using all its cores on CPU-only nodes; ``actors``
    sets the count (CPU: cores shared out evenly), ``actor_cpus``/``actor_gpus`` the size.

    Examples
    --------
    >>> cpu = [{"Alive": True, "NodeID": "a", "Resources": {"CPU": 8.0}}]
    >>> plan_actors(cpu)
    [{'num_cpus': 8.0, 'node': 'a'}]
    >>> plan_actors(cpu, actors=2)
    [{'num_cpus': 4.0}, {'num_cpus': 4.0}]
    >>> plan_actors([{"Alive": True, "NodeID": "g", "Resources": {"CPU": 16.0, "GPU": 2.0}}])
    [{'num_cpus': 1, 'num_gpus': 1}, {'num_cpus': 1, 'num_gpus': 1}]
    """
    _check_actors(actors)
    alive = [n for n in nodes if n.get("Alive", True)]
    gpus = sum(n["Resources"].get("GPU", 0) for n in alive)
    cpus = sum(n["Resources"].get("CPU", 0) for n in alive)
    if gpus and actor_gpus != 0:
        size = actor_gpus or 1
        plan = [{"num_cpus": actor_cpus or 1, "num_gpus": size}] * (actors or max(1, int(gpus // size)))
        return _fitting(plan, "GPU", gpus)
    if actors is None and actor_cpus is None:
        return [
            {"num_cpus": n["Resources"].get("CPU", 1), "node": n["NodeID"]}
            for n in alive
            if n["Resources"].get("CPU")
        ]
    count = actors or max(1, int(cpus // actor_cpus))
    size = actor_cpus or max(1.0, (cpus // count) if cpus else 1.0)
    return _fitting([{"num_cpus": size}] * count, "CPU", cpus)


def _check_actors(actors: Any) -> None:
    if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
        raise InvalidInputError(
            "actors", actors, "is not a whole number of at least 1", "pass e.g. 2, or None"
        )


def _fitting(plan: list[dict], resource: str, total: float) -> list[dict]:
    """``plan``, or a one-line error when its actors need more than the cluster has (they would wait forever)."""
    key = "num_gpus" if resource == "GPU" else "num_cpus"
    need = sum(p[key] for p in plan)
    if need > total:
        raise InvalidInputError(
            "actors",
            len(plan),
            f"need {need:g} {resource}s and the cluster has {total:g}",
            "pass fewer actors, or smaller ones with actor_cpus=/actor_gpus=",
        )
    return plan


def _start_actor(ray, worker_class, plan: dict, device: str | None, fault):
    options = {"num_cpus": plan["num_cpus"], "num_gpus": plan.get("num_gpus", 0), "max_restarts": 0}
    if "node" in plan:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(plan["node"], soft=True)
    if device is None:
        device = "gpu" if plan.get("num_gpus") else "cpu"
    return worker_class.options(**options).remote(device, fault)


def _run_ray(
    ray,
    rows: list[Row],
    report: _Reporter,
    *,
    address: str | None,
    actors: int | None,
    actor_cpus: float | None,
    actor_gpus: float | None,
    device: str | None,
    fault,
) -> None:
    if not rows:
        return
    started = time.perf_counter()
    report.bar.set_description("batch (starting Ray)")
    _connect(ray, address)
    plans = plan_actors(ray.nodes(), actors=actors, actor_cpus=actor_cpus, actor_gpus=actor_gpus)
    worker_class = ray.remote(_Worker)
    pool = [(_start_actor(ray, worker_class, p, device, fault), p) for p in plans]
    ray.get([actor.pid.remote() for actor, _ in pool])
    report.tally.actors = len(pool)
    report.tally.startup_s = time.perf_counter() - started
    report.bar.set_description("batch")
    try:
        _dispatch(ray, rows, report, pool, lambda p: _start_actor(ray, worker_class, p, device, fault))
    finally:
        for actor, _ in pool:
            ray.kill(actor)


def _connect(ray, address: str | None) -> None:
    """Join the running Ray, the cluster at ``address``, or start a local one; one line if it fails."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, plain Exception...
        ray.shutdown()
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MgtoolkitError(
            f"Ray did not start or connect (address={address!r}): {reason}; "
            "start a cluster with `ray start --head` and pass its address (--ray auto), or try again"
        ) from None


def _dispatch(ray, rows: list[Row], report: _Reporter, pool: list, restart: Callable) -> None:
    """Feed one row at a time to each idle actor; a dead actor's row goes back in the queue."""
    queue = deque(rows)
    attempts = dict.fromkeys((row.number for row in rows), 0)
    idle = deque(pool)
    running: dict[Any, tuple[Any, dict, Row]] = {}
    replacements = len(pool)  # a pool may lose and replace each of its actors once
    while queue or running:
        while queue and idle:
            actor, plan = idle.popleft()
            row = queue.popleft()
            attempts[row.number] += 1
            running[actor.make.remote(row.number, row.request, row.grid)] = (actor, plan, row)
        if not running:  # rows left, no actor left
            for row in queue:
                report.failed(row, "no Ray actor left to run it")
            return
        [done], _ = ray.wait(list(running), num_returns=1)
        actor, plan, row = running.pop(done)
        try:
            status, value = ray.get(done)
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            if replacements > 0:
                replacements -= 1
                idle.append((restart(plan), plan))
            if attempts[row.number] < MAX_ATTEMPTS:
                report.tally.retries += 1
                queue.append(row)
            else:
                report.failed(row, f"its actor died {MAX_ATTEMPTS} times ({type(exc).__name__})")
            continue
        idle.append((actor, plan))
        if status == "ok":
            report.made(row, value)
        else:
            report.failed(row, value)
