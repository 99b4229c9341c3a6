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
    from kgot_errors.cli import cpus, memory, seconds

    run.add_argument("--backend", choices=_BACKENDS, default=None,
                     help="auto (docker when reachable, else bubblewrap), bwrap, docker, or unsafe-subprocess "
                          "(no isolation: only when you choose it); default: the settings' python_executor.backend "
                          "(KGOT_SANDBOX_BACKEND)")
    run.add_argument("--timeout", type=seconds, default=None, metavar="S",
                     help="wall-clock limit (default: python_executor.default_timeout, 30)")
    run.add_argument("--memory", type=memory, default=None,
                     help="memory limit, at least 16m, e.g. 256m or 1g (default: python_executor.memory_limit, 256m)")
    run.add_argument("--cpus", type=cpus, default=None,
                     help="CPU share (default: python_executor.cpu_limit, 0.5); more than this machine's cores is "
                          "capped, with a note")
    run.add_argument("--json", action="store_true", help="print the whole ExecResult as JSON")
    common(run)
    run.set_defaults(handler=_run)

    box = sub.add_parser("sandbox", help="manage the sandbox backends",
                         description="Manage the sandbox: build the Docker image without any registry.")
    box_sub = box.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    build = box_sub.add_parser(
        "build-image", help="build the Python image for the docker backend from this machine's Python",
        description="Build the docker backend's image with `docker import` of a minimal root filesystem made "
                    "from this machine's Python (no registry is contacted). Needs a reachable Docker daemon "
                    "(DOCKER_HOST).")
    build.add_argument("--tag", default=None,
                       help="image tag (default: the settings' python_executor.container_image, "
                            "kgot-errors-python:latest)")
    common(build)
    build.set_defaults(handler=_build_image)


def _run(args: argparse.Namespace) -> int:
    from kgot_errors.cli import _Usage, capped_cpus, settings_of
    from kgot_errors.sandbox import get_sandbox

    executor = settings_of(args).python_executor  # --settings / KGOT_* give the defaults; flags win
    try:
        code = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise _Usage(f"{args.file}: {exc.strerror or exc}") from None
    backend = args.backend or executor.backend
    options = {"image": executor.container_image} if backend in ("auto", "docker") else {}
    sandbox = get_sandbox(backend, timeout=args.timeout or executor.default_timeout,
                          memory=args.memory or executor.memory_limit,
                          cpus=capped_cpus(args.cpus or executor.cpu_limit), **options)
    result = sandbox.run(code)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        from kgot_errors.sandbox._terminal import RESET, printable, verdict_line

        sys.stdout.write(printable(result.stdout))  # escapes the program's control characters: shown, not obeyed
        sys.stderr.write(printable(result.stderr))
        if result.stderr and not result.stderr.endswith("\n"):
            sys.stderr.write("\n")
        reset = RESET if sys.stderr.isatty() else ""
        if result.stdout_truncated or result.stderr_truncated:
            print(f"{reset}kgot-errors: output truncated at the sandbox's cap", file=sys.stderr)
        print(reset + verdict_line(result), file=sys.stderr)
    if result.timed_out:
        return 124
    if result.exit_code is None or (not result.ok and not 0 < result.exit_code < 256):
        return 1  # a failure never exits 0 (sys.exit(256) would wrap to 0)
    return result.exit_code


def _build_image(args: argparse.Namespace) -> int:
    from kgot_errors.cli import settings_of
    from kgot_errors.sandbox import build_image

    tag = args.tag or settings_of(args).python_executor.container_image
    image = build_image(tag)
    print(f"built {tag} ({image})")
    return 0
