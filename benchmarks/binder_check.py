"""The Binder check: every notebook top to bottom, as a class runs it, inside mybinder.org's 2 GiB.

``make binder-check`` (or ``python benchmarks/binder_check.py``) does what a class does on Binder:

1. Lays the models a class downloads into a Hugging Face cache exactly as a first download leaves
   them (full-size geometry, random weights; :func:`fullsize.lay_hf_cache`): AudioLDM-S (the default
   model), ``laion/clap-htsat-unfused`` and ``openai/clip-vit-base-patch32``. Once; kept in
   ``--hf-home`` for the next run.
2. Runs each ``notebooks/**/[0-9]*.ipynb`` (found by glob) top to bottom with nbclient, in a copy of the
   notebook in a scratch folder (so ``outputs/`` stays out of the repository), offline
   (``HF_HUB_OFFLINE=1``), on the real default model (``MGTOOLKIT_MODEL`` and
   ``MGTOOLKIT_LOW_MEMORY`` unset: the notebooks choose as they would on Binder), with an empty
   ``MGTOOLKIT_CACHE`` of its own, inside a cgroup v1 memory limit (``--limit-mb``, 2048; memsw too
   where the kernel has it). The runner and its kernel are both in the group, as a Binder pod's
   server and kernel are.
3. Prints per notebook: seconds, peak memory (the group's ``memory.max_usage_in_bytes``, page cache
   included as Binder counts it, so a notebook that reads weights sits at the limit; emptied and
   reset between notebooks; the machine's page cache is dropped first, so that libraries and
   weights are charged to the group as on a fresh pod), the kernel's max RSS (shared libraries
   included), the first error (cell index in
   the notebook + one line; an out-of-memory kill says so), the disk it used (its
   ``MGTOOLKIT_CACHE`` plus what the HF cache grew), and the total. The table is also written as
   markdown (``--out``, default ``build/binder-check.md``) for docs/notebooks.md.

Making a cgroup needs root and cgroup v1 (``/sys/fs/cgroup/memory``). Where that is not possible the
check says so, runs without a limit and reports the runner's and kernel's peak RSS instead: figures
to read, not a proof that the notebooks fit.

Timings on a shared machine are noisy; the peak and the errors are what this check is for. On a
shared machine the peak is also too low by whatever other processes keep mapped (a page is charged
to the group that first touched it: paddle's 0.7 GB of libraries when another paddle process runs):
take the final figures on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
MiB = 1024**2


# ---------------------------------------------------------------------------------------------
# The cgroup.
# ---------------------------------------------------------------------------------------------
class MemoryGroup:
    """A cgroup v1 memory group with a hard limit (``None`` members when it cannot be made)."""

    def __init__(self, limit_bytes: int, name: str | None = None):
        self.limit = limit_bytes
        self.path: Path | None = None
        self.why_not = ""
        name = name or f"mgtoolkit-binder-check-{os.getpid()}"
        if os.geteuid() != 0:
            self.why_not = "not root: a cgroup cannot be made"
        elif not (CGROUP_ROOT / "memory.limit_in_bytes").exists():
            self.why_not = f"no cgroup v1 memory controller at {CGROUP_ROOT}"
        else:
            try:
                path = CGROUP_ROOT / name
                path.mkdir(exist_ok=True)
                (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (path / "memory.memsw.limit_in_bytes").exists():  # no swap either, as on Binder
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                self.path = path
            except OSError as exc:
                self.why_not = f"could not make {CGROUP_ROOT / name}: {exc}"

    @property
    def enforced(self) -> bool:
        return self.path is not None

    def _read(self, name: str) -> str:
        assert self.path is not None
        return (self.path / name).read_text()

    def reset(self) -> None:
        """Empty the group's page cache and reset its peak (between notebooks)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            (self.path / "memory.force_empty").write_text("0")
        for name in ("memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes", "memory.failcnt"):
            with contextlib.suppress(OSError):
                (self.path / name).write_text("0")

    def peak(self) -> int | None:
        return int(self._read("memory.max_usage_in_bytes")) if self.path else None

    def oom_kills(self) -> int:
        if self.path is None:
            return 0
        for line in self._read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def join(self) -> None:
        """Put the calling process in the group (``preexec_fn`` of the runner)."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()


# ---------------------------------------------------------------------------------------------
# One notebook (the child process, inside the group).
# ---------------------------------------------------------------------------------------------
def run_one(notebook: Path, result: Path, timeout: int) -> None:
    """Execute ``notebook`` in place with nbclient; write ``{"seconds", "error", "peak_rss"}``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    error = None
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        error = _first_error(nb) or str(exc).strip().splitlines()[-1]
    except DeadKernelError:
        error = f"cell {_running_cell(nb)}: the kernel died"
    except CellTimeoutError:
        error = f"cell {_running_cell(nb)}: no result within {timeout} s"
    seconds = time.perf_counter() - t0
    nbformat.write(nb, notebook)
    result.write_text(json.dumps({"seconds": seconds, "error": error, "peak_rss": _children_peak_rss()}))


def _first_error(nb) -> str | None:
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                value = (out.get("evalue") or "").strip().splitlines()
                return f"cell {index}: {out.get('ename')}: {value[0] if value else ''}"[:300]
    return None


def _running_cell(nb) -> int:
    """The index of the cell that was running: the last code cell given an execution count."""
    started = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count")]
    return started[-1] if started else 0


def _children_peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------
# The whole check (the parent, outside the group).
# ---------------------------------------------------------------------------------------------
def disk_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (symlinks not followed: blobs count once)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    total += os.stat(path).st_blocks * 512
    return total


def drop_caches() -> None:
    """Drop the machine's clean page cache (root), so that the libraries and weights a notebook
    reads are charged to its group, as on a fresh Binder pod. Pages other processes keep mapped
    (paddle's 0.7 GB of libraries, if another paddle runs) stay charged to their first user: on a
    shared machine the peak is then that much too low."""
    with contextlib.suppress(OSError):
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")


def find_notebooks(folder: Path, wanted: tuple[str, ...] = ()) -> list[Path]:
    """``folder``'s numbered notebooks, its subfolders' too (``zh/01_...``), by glob: the course
    may be renumbered; ``wanted``: name prefixes to keep."""
    found = sorted(
        p
        for p in folder.rglob("[0-9]*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and "outputs" not in p.parts
    )
    return [p for p in found if not wanted or p.name.startswith(wanted)]


def notebook_env(hf_home: Path, cache: Path, code: Path = REPO) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MGTOOLKIT_", "HF_", "JPY_"))}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        MGTOOLKIT_CACHE=str(cache),
        PYTHONPATH=os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])]),
        PYTHONUNBUFFERED="1",
    )
    return env


def check_notebook(notebook: Path, args, group: MemoryGroup, scratch: Path) -> dict:
    """Run one notebook in a fresh copy with an empty cache; return its row."""
    work = scratch / notebook.relative_to(args.notebooks).with_suffix("")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy = work / notebook.name
    shutil.copy(notebook, copy)
    cache = work / "mgtoolkit-cache"
    hub = args.hf_home / "hub"
    hub_before = disk_bytes(hub)
    if args.drop_caches:
        drop_caches()
    group.reset()
    kills_before = group.oom_kills()
    result = work / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", str(copy), "--result", str(result)]
    cmd += ["--timeout", str(args.timeout)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=notebook_env(args.hf_home, cache, args.code),
        cwd=work,
        preexec_fn=group.join,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    row = {
        "notebook": notebook.relative_to(args.notebooks).as_posix(),
        "seconds": wall,
        "error": None,
        "peak_bytes": group.peak(),
        "rss_bytes": None,
    }
    if result.is_file():
        done = json.loads(result.read_text())
        row["seconds"], row["error"], row["rss_bytes"] = done["seconds"], done["error"], done["peak_rss"]
        if not group.enforced:
            row["peak_bytes"] = done["peak_rss"]
    else:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        row["error"] = f"runner exited {proc.returncode}: {tail[-1] if tail else ''}"[:300]
    kills = group.oom_kills() - kills_before
    if kills:
        row["error"] = f"{row['error'] or 'no error reported'} [out-of-memory kill x{kills}]"
    row["cache_bytes"] = disk_bytes(cache)
    row["hf_growth_bytes"] = disk_bytes(hub) - hub_before
    row["disk_bytes"] = row["cache_bytes"] + row["hf_growth_bytes"]
    if not args.keep:
        shutil.rmtree(cache, ignore_errors=True)
    return row


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / MiB:,.0f} MiB"


def table(rows: list[dict], args, group: MemoryGroup, laid_bytes: int) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    limit = (
        f"cgroup v1 limit {args.limit_mb} MiB (memsw too), peak = the group's memory.max_usage_in_bytes"
        if group.enforced
        else f"NO memory limit ({group.why_not}); peak = the runner's and kernel's max RSS"
    )
    lines = [
        f"Binder check, {when}: {limit}; offline, an empty MGTOOLKIT_CACHE per notebook, the default model "
        f"from an HF cache laid as a download leaves it ({laid_bytes / 1e9:.2f} GB: full-size geometry, "
        "random weights). Machine shared: times are noisy.",
        "",
        "| notebook | seconds | peak memory | kernel max RSS | first error | disk (MGTOOLKIT_CACHE + HF cache growth) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        error = (r["error"] or "none").replace("|", "\\|")
        lines.append(
            f"| {r['notebook']} | {r['seconds']:.0f} | {_mb(r['peak_bytes'])} | {_mb(r.get('rss_bytes'))} | "
            f"{error} | {_mb(r['disk_bytes'])} |"
        )
    peaks = [r["peak_bytes"] for r in rows if r["peak_bytes"] is not None]
    rss = [r["rss_bytes"] for r in rows if r.get("rss_bytes") is not None]
    failed = sum(1 for r in rows if r["error"])
    lines.append(
        f"| **total** ({len(rows)} notebooks, {failed} failed) | {sum(r['seconds'] for r in rows):.0f} | "
        f"{_mb(max(peaks) if peaks else None)} (max) | {_mb(max(rss) if rss else None)} (max) | | "
        f"{_mb(max((r['disk_bytes'] for r in rows), default=0))} (max) |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=Path, default=REPO / "notebooks", help="folder of the notebooks")
    parser.add_argument("--only", default="", help="comma-separated name prefixes, e.g. 01,06")
    parser.add_argument("--limit-mb", type=int, default=2048, help="cgroup memory limit (Binder: 2048)")
    parser.add_argument("--hf-home", type=Path, default=REPO / "build" / "binder-check" / "hf")
    parser.add_argument(
        "--scratch", type=Path, default=None, help="where notebooks run (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "binder-check.md")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument(
        "--models", default="audioldm-s-full-v2,clap,clip", help="what to lay in the HF cache"
    )
    parser.add_argument("--keep", action="store_true", help="keep each notebook's MGTOOLKIT_CACHE")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout mgtoolkit is imported from")
    parser.add_argument(
        "--no-drop-caches",
        dest="drop_caches",
        action="store_false",
        help="keep the page cache between notebooks",
    )
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(args.run_one, args.result, args.timeout)
        return 0

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    import fullsize

    args.hf_home = args.hf_home.resolve()
    print(f"laying the models in {args.hf_home / 'hub'} (once) ...", file=sys.stderr, flush=True)
    fullsize.lay_hf_cache(
        args.hf_home / "hub", tuple(filter(None, args.models.split(","))), work=args.hf_home
    )
    laid_bytes = disk_bytes(args.hf_home / "hub")
    args.notebooks = args.notebooks.resolve()
    notebooks = find_notebooks(args.notebooks, tuple(filter(None, args.only.split(","))))
    group = MemoryGroup(args.limit_mb * MiB)
    print(
        f"memory limit: {args.limit_mb} MiB in {group.path}"
        if group.enforced
        else f"NO memory limit: {group.why_not}; peaks are max RSS, not a Binder proof",
        file=sys.stderr,
        flush=True,
    )
    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="binder-check-"))).resolve()
    rows = []
    try:
        for notebook in notebooks:
            row = check_notebook(notebook, args, group, scratch)
            rows.append(row)
            print(
                f"{row['notebook']}: {row['seconds']:.0f} s, peak {_mb(row['peak_bytes'])}, "
                f"disk {_mb(row['disk_bytes'])}, error: {row['error'] or 'none'}",
                flush=True,
            )
    finally:
        group.remove()
        if args.scratch is None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    text = table(rows, args, group, laid_bytes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print("\n" + text, flush=True)
    print(f"written to {args.out}", file=sys.stderr)
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
