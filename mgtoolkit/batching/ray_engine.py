"""The Ray engine: rows spread over a pool of Ray actors, each holding its loaded model.

Ray is imported only here, and only for ``engine="ray"``.
"""

from __future__ import annotations

import os
import time
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError, MgtoolkitError
from ..types import GenerationRequest
from .local_engine import _make
from .report import _Reporter
from .rows import Row

MAX_ATTEMPTS = 3
"""Runs of one row before it is reported failed (a row that kills every actor must not kill them all)."""

CLUSTER_HINT = "install the cluster extra: pip install 'mgtoolkit[cluster]'"


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
