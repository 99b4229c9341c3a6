"""CLI commands for the sandbox: `kgot-errors run FILE.py` and `kgot-errors sandbox build-image`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_BACKENDS = ["auto", "bwrap", "docker", "unsafe-subprocess"]


def register(sub: Any, common: Any) -> None:
    run = sub.add_parser(
        "run", help="run a Python file in the sandbox",
        description="Run a Python file isolated: no network, read-only root, fresh scratch dir, CPU, memory "
                    "and process limits (defaults: 30 s, 256m, 0.5 CPU). Prints its stdout and stderr; exits "
                    "with its exit code (124 on timeout). Refuses to run when no backend can isolate here.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  kgot-errors run generated.py --timeout 10 --memory 512m --json")
    run.add_argument("file", help="the Python file (- for stdin)")
    run.add_argument("--backend", choices=_BACKENDS, default="auto",
                     help="auto (docker when reachable, else bubblewrap), bwrap, docker, or unsafe-subprocess "
                          "(no isolation: only when you choose it)")
    run.add_argument("--timeout", type=float, default=30.0, metavar="S", help="wall-clock limit (default 30)")
    run.add_argument("--memory", default="256m", help="memory limit, e.g. 256m or 1g (default 256m)")
    run.add_argument("--cpus", type=float, default=0.5, help="CPU share (default 0.5)")
    run.add_argument("--json", action="store_true", help="print the whole ExecResult as JSON")
    run.set_defaults(handler=_run)

    box = sub.add_parser("sandbox", help="manage the sandbox backends",
                         description="Manage the sandbox: build the Docker image without any registry.")
    box_sub = box.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    build = box_sub.add_parser(
        "build-image", help="build the Python image for the docker backend from this machine's Python",
        description="Build the docker backend's image with `docker import` of a minimal root filesystem made "
                    "from this machine's Python (no registry is contacted). Needs a reachable Docker daemon "
                    "(DOCKER_HOST).")
    build.add_argument("--tag", default="kgot-errors-python:latest", help="image tag (default %(default)s)")
    build.set_defaults(handler=_build_image)


def _run(args: argparse.Namespace) -> int:
    from kgot_errors.sandbox import get_sandbox

    code = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8", errors="replace")
    sandbox = get_sandbox(args.backend, timeout=args.timeout, memory=args.memory, cpus=args.cpus)
    result = sandbox.run(code)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.killed_by:
            print(f"kgot-errors: killed by the sandbox ({result.killed_by})", file=sys.stderr)
        if result.stdout_truncated or result.stderr_truncated:
            print("kgot-errors: output truncated at the sandbox's cap", file=sys.stderr)
    if result.timed_out:
        return 124
    return result.exit_code if result.exit_code is not None else 1


def _build_image(args: argparse.Namespace) -> int:
    from kgot_errors.sandbox import build_image

    image = build_image(args.tag)
    print(f"built {args.tag} ({image})")
    return 0
