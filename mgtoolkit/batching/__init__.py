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

import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import InvalidInputError
from ..tasks.text import validate_request
from ..types import GenerationRequest
from .local_engine import _run_local
from .output import open_output
from .ray_engine import CLUSTER_HINT as CLUSTER_HINT
from .ray_engine import MAX_ATTEMPTS, _check_actors, _import_ray, _run_ray
from .ray_engine import plan_actors as plan_actors
from .report import BatchSummary, _Reporter, _Tally
from .rows import Row, read_rows

__all__ = ["batch", "read_rows", "Row", "BatchSummary", "ENGINES", "MAX_ATTEMPTS"]

ENGINES = ("local", "ray")


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
    >>> from pathlib import Path
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
