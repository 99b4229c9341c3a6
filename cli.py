"""The `kgot-errors` command line: repair broken LLM output, inspect and resume recovery threads."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_RECOVERED, EXIT_NOT_RECOVERED, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = """\
Contain and recover the errors of LLM agents: broken JSON, failing code, flaky APIs.
Every recovery is a checkpointed thread you can list, inspect and resume.

examples:
  kgot-errors repair examples/broken_output.txt           repair a file, print the JSON
  echo '{"a": 1,}' | kgot-errors repair -                  repair stdin
  kgot-errors repair out.txt --schema schema.json --json   fit a JSON Schema, print the full result
  kgot-errors repair a.txt b.txt c.txt                     many files at once: one JSON result per line
  kgot-errors repair --jsonl incidents.jsonl               one incident (JSON object) per line
  kgot-errors history THREAD_ID                            what each layer tried
  kgot-errors resume THREAD_ID                             continue an unfinished recovery
  kgot-errors pending                                      threads waiting for a person's fix
  kgot-errors resume THREAD_ID --value fix.json            supply that fix (validated before it counts)

settings: --settings FILE (JSON/TOML in the original shape) or KGOT_* environment variables;
checkpoints go to a SQLite file under $KGOT_DATA_DIR (default ~/.local/share/kgot-errors)
unless --checkpoint names another SQLite file, a postgresql:// URL or "memory".
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2 with a hint, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="TARGET",
                   help="checkpoint store: SQLite file, postgresql:// URL, or 'memory' (default: the settings' store)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not record the recovery (no thread id)")
    p.add_argument("--settings", metavar="FILE", help="settings file (JSON or TOML)")
    p.add_argument("--profile", choices=["default", "production"], help="settings profile")
    p.add_argument("--json", action="store_true", help="print the whole RecoveryResult as JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kgot-errors", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    rp = sub.add_parser(
        "repair", help="repair broken JSON (or Python) and print it",
        description="Repair broken LLM output through the recovery layers. Prints the repaired value on "
                    "stdout and a one-line verdict on stderr. Exit 0: recovered; 1: not recovered; 2: usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  kgot-errors repair examples/broken_output.txt --schema examples/review.schema.json")
    rp.add_argument("files", nargs="*", default=["-"], metavar="FILE",
                    help="file(s) holding broken output, or - for stdin (default); several files print one "
                         "JSON result per line, in order")
    rp.add_argument("--jsonl", action="store_true",
                    help="each input line is an incident: a JSON object with Incident fields (error_type, message, "
                         "content, output_schema, ...); prints one JSON result per line, in input order, each as "
                         "soon as the ones before it are done")
    rp.add_argument("--concurrency", type=int, default=10, metavar="N",
                    help="incidents recovered at once with several inputs (default 10)")
    rp.add_argument("--schema", metavar="FILE", help="JSON Schema file the repaired value must fit")
    rp.add_argument("--kind", choices=["json", "python"], help="content kind (default: guessed; .py files are python)")
    rp.add_argument("--context", default="", help="what the output was for (helps the LLM layers)")
    _common(rp)

    hp = sub.add_parser("history", help="list a recovery thread's attempts",
                        description="Show what each layer tried for a recovery thread, in order.")
    hp.add_argument("thread", help="thread id (printed by repair)")
    _common(hp)

    sp = sub.add_parser("resume", help="continue an unfinished recovery thread",
                        description="Continue a checkpointed recovery from its last finished step. "
                                    "A finished thread just prints its result.")
    sp.add_argument("thread", help="thread id")
    answer = sp.add_mutually_exclusive_group()
    answer.add_argument("--value", metavar="FILE",
                        help="for a thread paused for a person: the fix (JSON, or raw text/code), or - for stdin; "
                             "it is validated like any candidate, and a rejected fix leaves the thread paused")
    answer.add_argument("--give-up", action="store_true", help="for a paused thread: end it not recovered")
    _common(sp)

    pp = sub.add_parser("pending", help="list threads paused for a person's fix",
                        description="List recovery threads paused for a person (settings: "
                                    "error_recovery.escalate_to_human / KGOT_ESCALATE_TO_HUMAN=true).")
    _common(pp)
    _register_plugins(sub)
    return parser


PLUGINS = ("kgot_errors.sandbox._cli", "kgot_errors.observability._cli", "kgot_errors.integration._cli")
"""Modules that add subcommands: each has `register(subparsers, common)`, which adds parsers with
`set_defaults(handler=fn)` where `fn(args) -> exit code`. They must import nothing heavy at the top."""


def _register_plugins(sub: Any) -> None:
    import importlib

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part is not installed
            raise
        module.register(sub, _common)


def _version() -> str:
    from kgot_errors import __version__

    return __version__


def _settings(args: argparse.Namespace) -> Any:
    from kgot_errors.runtime.settings import load_settings

    return load_settings(args.settings, profile=args.profile)


def _store(args: argparse.Namespace) -> Any:
    from kgot_errors.graph.recover import DEFAULT

    if args.no_checkpoint:
        return None
    return args.checkpoint or DEFAULT


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _load_schema(name: str | None) -> Any:
    if name is None:
        return None
    text = Path(name).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Usage(f"schema file {name} is not JSON: {exc}") from None


class _Usage(Exception):
    pass


def _incident_for(raw: bytes, kind: str | None, schema: Any, context: str) -> dict[str, Any]:
    """An incident describing why this content failed: the parser's own error."""
    text = raw.decode("utf-8", errors="replace")
    if kind == "python":
        import ast

        try:
            ast.parse(text)
            error_type, message = "SyntaxError", "code given for repair"
        except SyntaxError as exc:
            error_type, message = "SyntaxError", f"{exc.msg} (line {exc.lineno})"
        except ValueError as exc:
            error_type, message = "SyntaxError", str(exc)
    else:
        try:
            json.loads(text)
            error_type, message = ("jsonschema.exceptions.ValidationError", "checking against the schema") \
                if schema is not None else ("json.decoder.JSONDecodeError", "given for repair")
        except (ValueError, RecursionError) as exc:
            error_type, message = "json.decoder.JSONDecodeError", str(exc)[:500]
    return {"error_type": error_type, "message": message, "content": raw, "content_kind": kind or None,
            "output_schema": schema, "context": context}


def _print_result(result: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_data(), ensure_ascii=False, indent=2))
    elif result.recovered:
        value = result.value
        print(value if isinstance(value, str) and result.text == value else json.dumps(value, ensure_ascii=False))
    thread = f" [thread {result.thread_id}]" if result.thread_id else ""
    print(f"{result.summary}{thread}", file=sys.stderr)
    return EXIT_RECOVERED if result.recovered else EXIT_NOT_RECOVERED


def _cmd_repair(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import recover

    schema = _load_schema(args.schema)
    if args.jsonl or len(args.files) > 1:
        return _repair_many(args, schema)
    name = args.files[0]
    kind = args.kind or ("python" if name.endswith(".py") else None)
    incident = _incident_for(_read_input(name), kind, schema, args.context)
    result = recover(incident, checkpointer=_store(args), settings=_settings(args))
    return _print_result(result, args.json)


def _jsonl_incidents(raw: bytes, name: str) -> list[Any]:
    incidents: list[Any] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            incidents.append(json.loads(line))
        except ValueError as exc:
            raise _Usage(f"{name}:{number}: not a JSON object: {exc}") from None
    return incidents


def _repair_many(args: argparse.Namespace, schema: Any) -> int:
    from kgot_errors.graph.recover import recover_iter

    if args.concurrency < 1:
        raise _Usage("--concurrency must be at least 1")
    if args.jsonl:
        incidents = [inc for name in args.files for inc in _jsonl_incidents(_read_input(name), name)]
    else:
        incidents = [_incident_for(_read_input(name), args.kind or ("python" if name.endswith(".py") else None),
                                   schema, args.context) for name in args.files]
    progress = _Progress(len(incidents))
    output = _InOrder(progress)
    for index, result in recover_iter(incidents, max_concurrency=args.concurrency, checkpointer=_store(args),
                                      settings=_settings(args)):
        output.add(index, result)
        progress.update(index, result)
    progress.close()
    print(f"{progress.recovered}/{len(incidents)} recovered", file=sys.stderr)
    return EXIT_RECOVERED if progress.recovered == len(incidents) else EXIT_NOT_RECOVERED


class _InOrder:
    """Prints each result (a JSON line) as soon as every result before it is out: input order, streamed.

    A long batch shows its output as it goes, and a batch stopped halfway keeps what it printed.
    """

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress
        self.next = 0
        self.held: dict[int, Any] = {}

    def add(self, index: int, result: Any) -> None:
        self.held[index] = result
        while self.next in self.held:
            self.progress.clear()
            print(json.dumps(self.held.pop(self.next).to_data(), ensure_ascii=False), flush=True)
            self.next += 1


class _Progress:
    """A one-line counter on a terminal; silent when stderr is piped or redirected."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.recovered = total, 0, 0
        self.live = sys.stderr.isatty() and total > 1

    def update(self, index: int, result: Any) -> None:
        self.done += 1
        self.recovered += bool(result.recovered)
        if self.live:
            print(f"\r{self.done}/{self.total} done, {self.recovered} recovered", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        """Blank the counter's line, before other output is written to the terminal."""
        if self.live and self.done:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(file=sys.stderr)


def _cmd_history(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import history

    h = history(args.thread, checkpointer=_store(args), settings=_settings(args))
    if args.json:
        print(json.dumps({**h, "attempts": [a.model_dump(mode="json") for a in h["attempts"]],
                          "result": h["result"].to_data() if h["result"] else None}, ensure_ascii=False, indent=2))
        return EXIT_RECOVERED
    print(f"thread {args.thread}: {h['kind']} ({h['classified_by']})")
    for a in h["attempts"]:
        by = f" [{a.validator}]" if a.validator else ""
        print(f"  {a.layer:<12} #{a.try_no}  {a.verdict:<9} {a.duration_s * 1000:8.1f} ms  {a.reason}{by}")
    if h["finished"]:
        print(f"finished: {h['result'].summary}")
    elif h["next"] == ["human"]:
        print(f"paused for a person's fix (kgot-errors resume {args.thread} --value FILE)")
    else:
        print(f"unfinished: next {', '.join(h['next']) or '?'} (kgot-errors resume {args.thread})")
    return EXIT_RECOVERED


def _cmd_resume(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import resume

    extra: dict[str, Any] = {}
    if args.give_up:
        extra["value"] = None
    elif args.value is not None:
        raw = _read_input(args.value).decode("utf-8", errors="replace")
        try:
            extra["value"] = json.loads(raw)
        except ValueError:
            extra["value"] = raw  # text or code: validated like any candidate
    result = resume(args.thread, checkpointer=_store(args), settings=_settings(args), **extra)
    return _print_result(result, args.json)


def _cmd_pending(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import pending

    paused = pending(checkpointer=_store(args), settings=_settings(args))
    if args.json:
        print(json.dumps(paused, ensure_ascii=False, indent=2))
        return EXIT_RECOVERED
    if not paused:
        print("no threads are waiting for a person", file=sys.stderr)
    for p in paused:
        rejected = f" (last fix rejected: {p['rejected']})" if p["rejected"] else ""
        print(f"{p['thread_id']}  {p['kind']}  {p['summary']}{rejected}")
    return EXIT_RECOVERED


_COMMANDS = {"repair": _cmd_repair, "history": _cmd_history, "resume": _cmd_resume, "pending": _cmd_pending}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from kgot_errors.errors import KgotError

    handler = getattr(args, "handler", None) or _COMMANDS[args.command]
    try:
        return handler(args)
    except _Usage as exc:
        print(f"kgot-errors: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KgotError as exc:  # configuration, bad input, missing thread, unusable store
        print(f"kgot-errors: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"kgot-errors: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kgot-errors: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
