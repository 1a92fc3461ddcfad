#!/usr/bin/env python
"""mgtoolkit beside torch + diffusers in one run, on the same machine; prints one JSON object.

Runs, one after the other: the torch reference (``benchmarks/torch_reference.py`` in a torch venv), the
mgtoolkit path with its default dtype (bfloat16 where it pays), the mgtoolkit path in float32
(``bench_audioldm.py --check --dtype float32``) and the plain ppdiffusers path (``--path plain``),
optionally paddle with no environment tuning at all. Progress goes to stderr.

The torch venv is ``build/parity-venv`` (``make parity-venv``: the pinned torch, diffusers and
transformers), or ``$MGTOOLKIT_PARITY_PYTHON``, or ``--torch-python``.

Example
-------
    make parity-venv
    .venv/bin/python benchmarks/compare_torch.py            # add --with-defaults for raw paddle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def default_torch_python() -> Path:
    """``$MGTOOLKIT_PARITY_PYTHON``, else the repo's ``build/parity-venv`` (``make parity-venv``)."""
    given = os.environ.get("MGTOOLKIT_PARITY_PYTHON")
    return Path(given) if given else REPO / "build" / "parity-venv" / "bin" / "python"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torch-python", type=Path, default=default_torch_python(), help="a python with torch")
    ap.add_argument("--torch-script", type=Path, default=HERE / "torch_reference.py")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-defaults", action="store_true", help="also paddle with no env tuning (slow)")
    return ap.parse_args(argv)


def run_torch(args: argparse.Namespace) -> dict:
    """The torch reference's JSON (``--skip-components``: whole calls only)."""
    if not args.torch_python.is_file():
        raise SystemExit(
            f"--torch-python={args.torch_python} does not exist: run `make parity-venv`, "
            "or pass a python with torch, diffusers and transformers"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "torch.json"
        subprocess.run(
            [
                str(args.torch_python),
                str(args.torch_script),
                "--steps",
                str(args.steps),
                "--seconds",
                str(args.seconds),
                "--runs",
                str(args.repeats),
                "--skip-components",
                "--json-out",
                str(out),
            ],
            check=True,
            stdout=sys.stderr,
        )
        return json.loads(out.read_text())


def run_ours(args: argparse.Namespace, *extra: str) -> dict:
    """``bench_audioldm.py`` with the same clip, steps and repeats."""
    cmd = [
        sys.executable,
        str(HERE / "bench_audioldm.py"),
        "--seconds",
        str(args.seconds),
        "--steps",
        str(args.steps),
        "--repeats",
        str(args.repeats),
        *extra,
    ]
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)


def main(argv: list[str] | None = None) -> None:
    """Run all, print the combined JSON with the ratio to torch."""
    args = parse_args(argv)
    print("torch + diffusers ...", file=sys.stderr, flush=True)
    torch = run_torch(args)
    print("mgtoolkit, its default dtype ...", file=sys.stderr, flush=True)
    ours = run_ours(args)
    print("mgtoolkit, float32 (with equivalence check) ...", file=sys.stderr, flush=True)
    ours32 = run_ours(args, "--check", "--dtype", "float32")
    print("plain ppdiffusers path ...", file=sys.stderr, flush=True)
    plain = run_ours(args, "--path", "plain")
    reference = torch["pipeline"]["median_s"]
    result = {
        "torch": torch,
        "mgtoolkit": ours,
        "mgtoolkit_float32": ours32,
        "plain_ppdiffusers": plain,
        "ratio_mgtoolkit_to_torch": ours["whole_s"] / reference,
        "ratio_mgtoolkit_float32_to_torch": ours32["whole_s"] / reference,
    }
    if args.with_defaults:
        print("plain ppdiffusers, paddle defaults ...", file=sys.stderr, flush=True)
        result["plain_paddle_defaults"] = run_ours(args, "--path", "plain", "--no-env-tuning")
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
