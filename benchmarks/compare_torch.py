#!/usr/bin/env python
"""mgtoolkit beside torch + diffusers in one run, on the same machine; prints one JSON object.

Runs, one after the other: the torch reference (``torch_audioldm_bench.py`` in its own venv), the
mgtoolkit path with its default dtype (bfloat16 where it pays), the mgtoolkit path in float32
(``bench_audioldm.py --check --dtype float32``) and the plain ppdiffusers path (``--path plain``),
optionally paddle with no environment tuning at all. Progress goes to stderr.

Example
-------
    python benchmarks/compare_torch.py --torch-python ../peer-venv/bin/python \\
        --torch-script ../shared/peer/torch_audioldm_bench.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torch-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--torch-script", default="/work/shared/peer/torch_audioldm_bench.py")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-defaults", action="store_true", help="also paddle with no env tuning (slow)")
    return ap.parse_args(argv)


def run_torch(args: argparse.Namespace) -> dict:
    """The torch reference's JSON (``--skip-components``: whole calls only)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "torch.json"
        subprocess.run(
            [
                args.torch_python,
                args.torch_script,
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
