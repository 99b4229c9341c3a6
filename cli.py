"""The `kgot-errors` command line: repair broken LLM output, inspect and resume recovery threads."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

EXIT_RECOVERED, EXIT_NOT_RECOVERED, EXIT_USAGE, EXIT_STORE, EXIT_INTERNAL, EXIT_DEGRADED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141

EXIT_CODES = """\
exit codes:
  0    recovered (other commands: done)
  1    not recovered (a batch: at least one incident; doctor: a check failed)
  2    usage error: a bad argument or value, unreadable input, an invalid schema or incident,
       an unknown thread
  3    configuration or store error: bad settings or KGOT_* variable, a checkpoint store that
       does not exist or cannot be opened, an operation that is not registered, no sandbox
  4    internal error (a bug): one line here, the traceback in the file it names
  5    degraded: a value is printed, but the fix changed the data (e.g. completed a truncated
       document); the verdict line lists the changes (--inline leaves such files as they were)
  130  interrupted (Ctrl-C); 141: the output pipe was closed
  `run` exits with the program's own exit code (124: killed at the timeout)."""

_DESCRIPTION = """\
Contain and recover the errors of LLM agents: broken JSON, failing code, flaky APIs.
Every recovery is a checkpointed thread you can list, inspect and resume.

examples:
  kgot-errors repair examples/broken_output.txt           repair a file, print the JSON
  echo '{"a": 1,}' | kgot-errors repair -                  repair stdin
  kgot-errors repair out.txt --schema schema.json --json   fit a JSON Schema, print the full result
  kgot-errors repair out.json --inline --indent 2          repair the file in place
  kgot-errors repair a.txt b.txt c.txt                     many files at once: one JSON result per line
  kgot-errors repair --jsonl incidents.jsonl               one incident (JSON object) per line
  kgot-errors list --outcome not_recovered --since 1d      recent threads that were not recovered
  kgot-errors history THREAD_ID                            what each layer tried, and when
  kgot-errors resume THREAD_ID --operations app.ops:OPS    continue an unfinished recovery
  kgot-errors pending                                      threads waiting for a person's fix
  kgot-errors resume THREAD_ID --value fix.json            supply that fix (validated before it counts)
  kgot-errors prune --older-than 30d --keep-failed --vacuum   retention
  kgot-errors stats | doctor | metrics | run FILE.py       statistics, checks, Prometheus, the sandbox

settings: --settings FILE (JSON/TOML in the original shape) or KGOT_* environment variables;
checkpoints go to a SQLite file under $KGOT_DATA_DIR (default ~/.local/share/kgot-errors)
unless --checkpoint names another SQLite file, a postgresql:// URL or "memory".

""" + EXIT_CODES

OPERATIONS_ENV = "KGOT_SERVER_OPERATIONS"
"""The operations setting the server reads; `--operations` defaults to it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2 with this (sub)command's usage and a hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


# --- argument types: a bad value is a usage error (exit 2) naming what is expected ----------------------------

def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


MIN_MEMORY = 16 << 20
"""Below this Python cannot start in the sandbox (the settings' memory_limit has the same floor)."""


def memory(text: str) -> str:
    """A docker-style size (256m, 1g, a byte count) of at least 16m."""
    from kgot_errors.sandbox import parse_size

    try:
        size = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (use e.g. 256m or 1g)") from None
    if size < MIN_MEMORY:
        raise argparse.ArgumentTypeError(f"{text!r} is below 16m, too little for Python to start")
    return text


def cpus(text: str) -> float:
    """A positive CPU share (0.5 = half a core)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU share: {text!r} (use e.g. 0.5 or 2)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive CPU share (e.g. 0.5), not {text!r}")
    return value


def available_cpus() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def capped_cpus(value: float) -> float:
    """`value`, or this machine's core count with a note on stderr when it asks for more."""
    cores = available_cpus()
    if value > cores:
        print(f"kgot-errors: --cpus {value:g} is more than this machine's {cores} core(s); capped at {cores}",
              file=sys.stderr)
        return float(cores)
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = "number"
    return parse


def duration(text: str) -> float:
    """Seconds from 90s / 15m / 12h / 30d / 2w (or a plain number of seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    body, unit = (text[:-1], text[-1].lower()) if text[-1:].lower() in units else (text, "s")
    try:
        value = float(body) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 12h, 30d, 2w)") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    return value


# --- options, each only on the commands where it means something -----------------------------------------------

def options(p: argparse.ArgumentParser, *, settings: bool = True, store: bool = False, record: bool = False,
            as_json: bool = False, operations: bool = False) -> None:
    """Add the shared options a command uses: settings, the store, recording, JSON output, operations."""
    if settings:
        p.add_argument("--settings", metavar="FILE", help="settings file (JSON or TOML)")
        p.add_argument("--profile", choices=["default", "production"], help="settings profile")
    if store:
        p.add_argument("--checkpoint", metavar="TARGET",
                       help="checkpoint store: SQLite file, postgresql:// URL, or 'memory' (default: the settings' "
                            "store)")
    if record:
        p.add_argument("--no-checkpoint", action="store_true", help="do not record the recovery (no thread id)")
    if as_json:
        p.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    if operations:
        p.add_argument("--operations", metavar="MODULE:NAME", default=os.environ.get(OPERATIONS_ENV),
                       help="a mapping {name: callable} of operations backoff and refine may re-run, e.g. "
                            f"app.ops:OPERATIONS (default: ${OPERATIONS_ENV}, the setting the server uses)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kgot-errors", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    rp = sub.add_parser(
        "repair", help="repair broken JSON (or Python) and print it",
        description="Repair broken LLM output through the recovery layers. Prints the repaired value on "
                    "stdout (or to -o FILE, or back into the file with --inline) and a one-line verdict on "
                    "stderr. Input over the settings' max_content_chars is refused before it is parsed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  kgot-errors repair examples/broken_output.txt --schema examples/review.schema.json\n"
               "  kgot-errors repair --jsonl incidents.jsonl -o results.jsonl --progress\n\n" + EXIT_CODES)
    rp.add_argument("files", nargs="*", default=["-"], metavar="FILE",
                    help="file(s) holding broken output, or - for stdin (default); several files print one "
                         "JSON result per line, in order")
    rp.add_argument("--jsonl", action="store_true",
                    help="each input line is an incident: a JSON object with Incident fields (content, "
                         "output_schema, error_type, message, ...; all optional, content alone will do); other fields "
                         "(an id) are copied to its output line. "
                         "--schema, --kind and --context apply to lines that do not say. Prints one JSON result "
                         "per line, in input order, each as soon as the ones before it are done")
    rp.add_argument("--concurrency", type=_count(1), default=10, metavar="N",
                    help="incidents recovered at once with several inputs (default 10)")
    rp.add_argument("--workers", type=_count(1), default=None, metavar="N",
                    help="with --no-checkpoint and several inputs: processes that run the deterministic repair of "
                         "JSON incidents side by side; what they cannot fix goes on through the graph, there too when "
                         "no model is configured. Output order stays the input's (default: one per 500 lines, up to "
                         "one per core this process may use; 1 runs it in this process)")
    rp.add_argument("--schema", metavar="FILE", help="JSON Schema file the repaired value must fit")
    rp.add_argument("--kind", choices=["json", "python"], help="content kind (default: guessed; .py files are python)")
    rp.add_argument("--context", default="", help="what the output was for (helps the LLM layers)")
    out = rp.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE instead of stdout")
    out.add_argument("--inline", action="store_true",
                     help="write each recovered value back into its input file (a file not recovered is left as "
                          "it was)")
    out.add_argument("--indent", type=_count(0), metavar="N",
                     help="indent the repaired JSON by N spaces (default: one line)")
    out.add_argument("--progress", action="store_true",
                     help="with several inputs, a progress line on stderr every second even when it is not a "
                          "terminal (without it: every 10 s once a batch has run that long)")
    options(rp, store=True, record=True, as_json=True, operations=True)
    rp.set_defaults(handler=_cmd_repair)

    hp = sub.add_parser("history", help="list a recovery thread's attempts, with when they were recorded",
                        description="Show what each layer tried for a recovery thread, in order, with the time "
                                    "each attempt was recorded.", epilog=EXIT_CODES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    hp.add_argument("thread", help="thread id (printed by repair)")
    options(hp, store=True, as_json=True)
    hp.set_defaults(handler=_cmd_history)

    sp = sub.add_parser("resume", help="continue an unfinished recovery thread",
                        description="Continue a checkpointed recovery from its last finished step. "
                                    "A finished thread just prints its result. A thread that re-runs an operation "
                                    "needs it registered: --operations MODULE:NAME.", epilog=EXIT_CODES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("thread", help="thread id")
    answer = sp.add_mutually_exclusive_group()
    answer.add_argument("--value", metavar="FILE",
                        help="for a thread paused for a person: the fix (JSON, or raw text/code), or - for stdin; "
                             "it is validated like any candidate, and a rejected fix leaves the thread paused")
    answer.add_argument("--give-up", action="store_true", help="for a paused thread: end it not recovered")
    options(sp, store=True, as_json=True, operations=True)
    sp.set_defaults(handler=_cmd_resume)

    pp = sub.add_parser("pending", help="list threads paused for a person's fix",
                        description="List recovery threads paused for a person (settings: "
                                    "error_recovery.escalate_to_human / KGOT_ESCALATE_TO_HUMAN=true).")
    options(pp, store=True, as_json=True)
    pp.set_defaults(handler=_cmd_pending)
    _register_plugins(sub)
    return parser


PLUGINS = ("kgot_errors.sandbox._cli", "kgot_errors.observability._cli", "kgot_errors.integration._cli")
"""Modules that add subcommands: each has `register(subparsers, options)`, which adds parsers with
`set_defaults(handler=fn)` where `fn(args) -> exit code`, and calls `options(parser, ...)` for the shared
options that parser uses. They must import nothing heavy at the top."""


def _register_plugins(sub: Any) -> None:
    import importlib

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part is not installed
            raise
        module.register(sub, options)


def _version() -> str:
    from kgot_errors import __version__

    return __version__


def settings_of(args: argparse.Namespace) -> Any:
    """The settings a command runs with: --settings/--profile over KGOT_* over the defaults."""
    from kgot_errors.runtime.settings import load_settings

    return load_settings(getattr(args, "settings", None), profile=getattr(args, "profile", None))


def store_of(args: argparse.Namespace, settings: Any) -> Any:
    """The checkpoint target: --checkpoint, else the settings' store; None with --no-checkpoint."""
    if getattr(args, "no_checkpoint", False):
        return None
    return getattr(args, "checkpoint", None) or settings.checkpoint_target()


def _operations(args: argparse.Namespace) -> dict[str, Any]:
    spec = getattr(args, "operations", None)
    if not spec:
        return {}
    from kgot_errors.integration.server import load_operations

    return dict(load_operations(spec, setting=f"--operations / {OPERATIONS_ENV}"))


class _Usage(Exception):
    pass


def _read_input(name: str, limit: int | None = None) -> bytes | int:
    """The bytes of `name` (- for stdin), or, when it holds more than `limit` characters, its size in bytes."""
    try:
        if name == "-":
            return _read_limited(sys.stdin.buffer, limit)
        path = Path(name)
        if limit is not None and path.is_file() and path.stat().st_size > 4 * limit:
            return path.stat().st_size  # more bytes than even 4-byte characters could fit in the limit: not read
        with path.open("rb") as stream:
            return _read_limited(stream, limit)
    except OSError as exc:
        raise _Usage(f"{exc.filename or name}: {exc.strerror or exc}") from None


def _read_limited(stream: Any, limit: int | None) -> bytes | int:
    if limit is None:
        return stream.read()
    raw = stream.read(4 * limit + 1)
    if len(raw) > 4 * limit:
        return len(raw) + sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))  # counted, not kept
    if len(raw) > limit and len(raw.decode("utf-8", errors="replace")) > limit:
        return len(raw)
    return raw


def _load_schema(name: str | None) -> Any:
    if name is None:
        return None
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise _Usage(f"{exc.filename or name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _Usage(f"schema file {name} is not UTF-8 text: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Usage(f"schema file {name} is not JSON: {exc}") from None
    except RecursionError:  # far deeper than any schema may nest: load_schema would refuse it anyway
        from kgot_errors.repair._schema import MAX_SCHEMA_DEPTH

        raise _Usage(f"schema file {name} is not a usable schema: it nests deeper than {MAX_SCHEMA_DEPTH} levels of "
                     "objects and arrays") from None


def _incident_for(raw: bytes, kind: str | None, schema: Any, context: str) -> dict[str, Any]:
    """An incident describing why this content failed: the parser's own error (content within the size limit)."""
    text = raw.decode("utf-8", errors="replace")
    if kind == "python":
        import ast

        try:
            ast.parse(text)
            error_type, message = "SyntaxError", "code given for repair"
        except SyntaxError as exc:
            error_type, message = "SyntaxError", f"{exc.msg} (line {exc.lineno})"
        except (ValueError, RecursionError, MemoryError) as exc:
            error_type, message = "SyntaxError", str(exc) or type(exc).__name__
    else:
        try:
            json.loads(text)
            error_type, message = ("jsonschema.exceptions.ValidationError", "checking against the schema") \
                if schema is not None else ("json.decoder.JSONDecodeError", "given for repair")
        except (ValueError, RecursionError) as exc:
            error_type, message = "json.decoder.JSONDecodeError", str(exc)[:500]
    return {"error_type": error_type, "message": message, "content": raw, "content_kind": kind or None,
            "output_schema": schema, "context": context}


def _refused(size: int, limit: int) -> Any:
    """The result for input over the size limit: not recovered, nothing parsed, nothing stored."""
    from kgot_errors.state import RecoveryResult

    return RecoveryResult.too_large(f"the input ({size:,} bytes)", limit)


def _kind_for(name: str, kind: str | None) -> str | None:
    return kind or ("python" if name.endswith(".py") else None)


# --- output -----------------------------------------------------------------------------------------------------

def _value_text(result: Any, indent: int | None) -> str:
    value = result.value
    if (isinstance(value, str) and result.text == value) or (indent is None and result.text is not None):
        return result.text  # code, or the value's JSON text: valid input comes back byte for byte
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _exit_for(result: Any) -> int:
    if result.recovered:
        return EXIT_RECOVERED
    return EXIT_DEGRADED if result.outcome == "degraded" else EXIT_NOT_RECOVERED


def _write_file(path: Path, text: str) -> None:
    """Replace `path` with `text` and a final newline at once (a crash leaves the old file or the new one, never half
    of it). A file that holds `text` already, with or without that newline, is not touched: valid input stays byte
    for byte, its modification time too."""
    content = text if text.endswith("\n") else text + "\n"
    try:
        if path.read_bytes() in (content.encode("utf-8"), text.encode("utf-8")):
            return
    except OSError:
        pass  # unreadable now: the write below says what is wrong
    temporary = path.with_name(f".{path.name}.kgot-errors.tmp")
    try:
        temporary.write_text(content, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _Usage(f"cannot write {path}: {exc.strerror or exc}") from None


class _Out:
    """Where stdout output goes: stdout, or the -o file (opened once, on first write)."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.stream: Any = None

    def write_line(self, text: str) -> None:
        if self.stream is None:
            if self.name is None or self.name == "-":
                self.stream = sys.stdout
            else:
                try:
                    self.stream = open(self.name, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
                except OSError as exc:
                    raise _Usage(f"cannot write {self.name}: {exc.strerror or exc}") from None
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.stream is not sys.stdout:
            self.stream.close()


def _verdict(result: Any, name: str | None = None) -> None:
    thread = f" [thread {result.thread_id}]" if result.thread_id else ""
    where = f"{name}: " if name else ""
    changes = ""
    if result.outcome == "degraded" and result.changes:
        listed = "; ".join(f"{c['kind']} {c['path']}: {c['detail']}" for c in result.changes[:3])
        changes = f" [changes: {listed}{'; ...' if len(result.changes) > 3 else ''}]"
    print(f"{where}{result.summary}{changes}{thread}", file=sys.stderr)


def _memory_note(target: Any, result: Any) -> None:
    if isinstance(target, str) and target in ("memory", ":memory:") and result.thread_id:
        print(f"kgot-errors: note: the 'memory' store ends with this command; thread {result.thread_id} cannot be "
              "read later (use a SQLite file or a postgresql:// URL for that)", file=sys.stderr)


def _print_result(result: Any, args: argparse.Namespace, out: _Out | None = None) -> int:
    out = out or _Out(getattr(args, "output", None))
    indent = getattr(args, "indent", None)
    try:
        if getattr(args, "json", False):
            out.write_line(json.dumps(result.to_data(), ensure_ascii=False, indent=2 if indent is None else indent))
        elif result.recovered or result.outcome == "degraded":
            out.write_line(_value_text(result, indent))
    finally:
        out.close()
    _verdict(result)
    return _exit_for(result)


# --- repair -----------------------------------------------------------------------------------------------------

def _check_output_options(args: argparse.Namespace) -> None:
    if args.inline:
        if args.jsonl or "-" in args.files:
            raise _Usage("--inline rewrites input files: it takes FILE arguments (not - or --jsonl)")
        if args.output or args.json:
            raise _Usage("--inline writes back into the input files: it does not combine with -o or --json")
    if args.indent is not None and (args.jsonl or len(args.files) > 1) and not args.inline:
        raise _Usage("--indent applies to one repaired value; batch output is one JSON result per line")


def _cmd_repair(args: argparse.Namespace) -> int:
    _check_output_options(args)
    raw: bytes | int | None = None  # the input, once read (stdin cannot be read twice)
    if args.no_checkpoint and not args.jsonl and len(args.files) == 1 and not args.operations:
        done, raw = _repair_pure(args)
        if done is not None:
            return done
    settings = settings_of(args)
    schema = _load_schema(args.schema)
    operations = _operations(args)
    if args.jsonl or len(args.files) > 1:
        return _repair_many(args, schema, settings, operations)
    from kgot_errors.graph.recover import recover

    name = args.files[0]
    kind = _kind_for(name, args.kind)
    limit = settings.syntax_error_management.max_content_chars
    raw = _read_input(name, limit) if raw is None else raw  # read by _repair_pure with this same limit
    target = store_of(args, settings)
    if isinstance(raw, int):
        result = _refused(raw, limit)
    else:
        result = recover(_incident_for(raw, kind, schema, args.context), checkpointer=target, settings=settings,
                         operations=operations)
    _memory_note(target, result)
    return _emit_single(args, name, result)


def _emit_single(args: argparse.Namespace, name: str, result: Any) -> int:
    if args.inline:
        if result.recovered:
            _write_file(Path(name), _value_text(result, args.indent))
        _verdict(result, name)
        return _exit_for(result)
    return _print_result(result, args)


# --- repair without a store: the engine alone (no LangGraph, no settings machinery unless settings are given) ----

def _pure_limits(args: argparse.Namespace) -> tuple[int, int, dict[str, str] | None]:
    """max_content_chars, max_depth and the changes policy: the settings' when any are given (--settings, --profile,
    a KGOT_* variable), else the defaults, which are the engine's own (tests/unit/test_repair_api.py checks that)."""
    if getattr(args, "settings", None) or getattr(args, "profile", None) or any(
        name.startswith("KGOT_") for name in os.environ
    ):
        syntax = settings_of(args).syntax_error_management
        return syntax.max_content_chars, syntax.max_depth, dict(syntax.changes)
    from kgot_errors.repair._strict import DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH

    return DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH, None


def _repair_pure(args: argparse.Namespace) -> tuple[int | None, bytes | int | None]:
    """`repair FILE --no-checkpoint` for JSON: repair_json, printed as the graph would print it; (exit code, input).
    The exit code is None when the graph must run instead: Python content, input over the limit or that the edge
    would have to mend (invalid UTF-8), or no deterministic fix (the graph's later layers, a model among them, may
    still find one); the input read is handed on (None: not read)."""
    name = args.files[0]
    if _kind_for(name, args.kind) == "python":
        return None, None
    max_chars, max_depth, policy = _pure_limits(args)
    schema = _load_schema(args.schema)
    raw = _read_input(name, max_chars)
    if isinstance(raw, int):
        return None, raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, raw
    from kgot_errors.repair._api import repair_json

    error_type = _incident_for(raw, "json", schema, "")["error_type"]
    repaired = repair_json(text, schema, policy=policy, max_chars=max_chars, max_depth=max_depth)
    if not repaired.ok:
        return None, raw
    kind = "schema" if "ValidationError" in error_type else "syntax"
    return _emit_single(args, name, _PureResult(repaired, kind)), raw


_CANDIDATE_CHARS = 2_000  # as nodes/_base.CANDIDATE_CHARS: attempt records keep this much of a candidate


class _PureResult:
    """repair_json's result in the shape of the graph's RecoveryResult (the fields the CLI prints), for a fix."""

    def __init__(self, repaired: Any, kind: str) -> None:
        self.value, self.text, self.changes = repaired.value, repaired.text, list(repaired.changes)
        self.recovered = repaired.verdict == "recovered"
        self.outcome = repaired.verdict
        self.thread_id = None
        self.attempts = [self._attempt(run) for run in repaired.runs]
        proof = self.attempts[-1]
        how = f": {proof['reason']} ({proof['validator']})"
        if self.recovered:
            self.summary = f"recovered by {repaired.layer} after {len(self.attempts)} attempt(s){how}"
        else:
            kinds = ", ".join(sorted({c["kind"] for c in self.changes}))
            self.summary = (f"degraded fix by {repaired.layer} after {len(self.attempts)} attempt(s), it changes the "
                            f"data ({kinds}; see changes){how}")
        self._data = {
            "recovered": self.recovered, "value": self.value, "text": self.text, "recovered_by": repaired.layer,
            "kind": kind, "outcome": self.outcome, "summary": self.summary, "attempts": self.attempts,
            "changes": self.changes, "thread_id": None, "llm_calls": 0, "tokens": 0,
            "duration_s": round(sum(a["duration_s"] for a in self.attempts), 6),
        }

    @staticmethod
    def _attempt(run: Any) -> dict[str, Any]:
        out = run.outcome
        if out.ok:
            reason = "valid as given" if not out.steps else "valid after " + ", ".join(out.steps)
            verdict = "degraded" if out.degraded else "recovered"
        else:
            reason, verdict = out.reason or "does not validate", "failed"
        candidate = out.text if out.ok else None
        if candidate is not None and len(candidate) > _CANDIDATE_CHARS:
            candidate = candidate[:_CANDIDATE_CHARS] + f"... [{len(candidate) - _CANDIDATE_CHARS} more chars]"
        evidence = {"steps": list(out.steps), "errors": list(out.errors),
                    **({"changes": list(out.changes)} if out.changes else {})}
        return {"layer": run.layer, "try_no": 1, "verdict": verdict, "reason": reason, "validator": "json+schema",
                "evidence": evidence, "candidate": candidate, "duration_s": run.duration_s, "llm_calls": 0,
                "tokens": 0}

    def to_data(self) -> dict[str, Any]:
        return self._data


def _incident_fields() -> frozenset[str]:
    from kgot_errors.state import Incident

    return frozenset(Incident.model_fields)


def _jsonl_lines(name: str, raw: bytes, defaults: dict[str, Any],
                 max_depth: int) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any], Any]]:
    """(incident, passed-through fields, None) for each line: fields an Incident does not have travel to the output.
    A line nested deeper than `max_depth` is not parsed: (None, its top-level scalar fields, its invalid result)."""
    from kgot_errors.repair._strict import nesting_depth

    known = _incident_fields()
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        too_deep = f"max_depth ({max_depth:,}) levels" if nesting_depth(line, limit=max_depth) > max_depth else ""
        try:
            item = _passed_scalars(line) if too_deep else json.loads(line)
        except RecursionError:  # a max_depth set beyond what Python's parser goes
            item, too_deep = _passed_scalars(line), "Python's JSON parser can read"
        except ValueError as exc:
            raise _Usage(f"{where}: not a JSON object: {exc}") from None
        if not isinstance(item, dict):
            raise _Usage(f"{where}: not a JSON object but {type(item).__name__}")
        extra = {k: v for k, v in item.items() if k not in known}
        clash = sorted(set(extra) & _result_fields())
        if clash:  # it would be overwritten by the result's own field on the output line
            raise _Usage(f"{where}: field {clash[0]!r} cannot be passed through: the result has a field "
                         "of that name (rename it, e.g. to 'request_id')")
        if too_deep:
            yield None, {k: v for k, v in extra.items() if v is not _NOT_READ}, _too_deep(where, too_deep)
            continue
        incident = {k: v for k, v in item.items() if k in known}
        for field, value in defaults.items():
            if incident.get(field) is None and value is not None and value != "":
                incident[field] = value
        yield incident, extra, None


_SCALAR_DECODER = json.JSONDecoder()


_NOT_READ = object()
"""Stands for a container a line too deep to parse holds: its key counts (a clash with a result field), not its value."""


def _passed_scalars(line: str) -> dict[str, Any]:
    """The top-level members of a line too deep to parse (an `id` to pass through), as json.loads would give them
    (the last of duplicate keys), but containers as _NOT_READ: read member by member, containers skipped by
    counting brackets, never by recursion. {} for a line that is not an object, and what was read before
    anything unreadable."""
    from kgot_errors.repair._normalise import _closing_end

    found: dict[str, Any] = {}
    decode, at = _SCALAR_DECODER.raw_decode, line.find("{") + 1
    space = json.decoder.WHITESPACE.match
    if not at or line[: at - 1].strip():
        return found
    while True:
        at = space(line, at).end()
        if at >= len(line) or line[at] != '"':
            return found
        try:
            key, at = decode(line, at)
            at = space(line, at).end()
            if line[at : at + 1] != ":":
                return found
            at = space(line, at + 1).end()
            if line[at : at + 1] in ("{", "["):
                found[key], at = _NOT_READ, _closing_end(line, at, 0)
                if at < 0:  # the container never closes
                    return found
            else:
                found[key], at = decode(line, at)
        except ValueError:
            return found
        at = space(line, at).end()
        if line[at : at + 1] != ",":
            return found
        at += 1


def _too_deep(where: str, than: str) -> Any:
    """The result for a --jsonl line nested deeper than `than` says: invalid, nothing parsed, nothing stored."""
    from kgot_errors.state import ErrorKind, RecoveryResult

    return RecoveryResult(recovered=False, kind=ErrorKind.UNKNOWN, outcome="invalid", attempts=[],
                          summary=f"invalid incident: {where}: the line nests deeper than {than}; it was not parsed")


def _result_fields() -> frozenset[str]:
    from kgot_errors.state import RecoveryResult

    return frozenset(RecoveryResult.model_fields)


LINES_PER_WORKER = 500
"""A worker's start (its own imports, warm caches) costs about what the engine takes for this many lines: a batch
gets one worker per this many lines, up to one per core, unless --workers says otherwise."""


def _repair_many(args: argparse.Namespace, schema: Any, settings: Any, operations: dict[str, Any]) -> int:
    raws: list[tuple[str, Any]] = [(name, _read_input(name)) for name in args.files] if args.jsonl else []
    # read once, before any fork: without a limit _read_input gives the bytes
    items = sum(raw.count(b"\n") + 1 for _, raw in raws) if args.jsonl else len(args.files)
    count = args.workers or max(1, min(available_cpus(), items // LINES_PER_WORKER))
    workers = _workers(settings, count) if args.no_checkpoint and not operations else None
    try:
        return _repair_batch(args, schema, settings, operations, workers, raws)
    finally:
        if workers is not None:
            workers.close()


def _repair_batch(args: argparse.Namespace, schema: Any, settings: Any, operations: dict[str, Any],
                  workers: Any, raws: list[tuple[str, bytes]]) -> int:
    limit = settings.syntax_error_management.max_content_chars
    incidents: list[Any] = []
    extras: list[dict[str, Any]] = []
    refused: dict[int, Any] = {}
    if args.jsonl:
        defaults = {"output_schema": schema, "content_kind": args.kind, "context": args.context}
        for name, raw in raws:
            for incident, extra, invalid in _jsonl_lines(name, raw, defaults,
                                                         settings.syntax_error_management.max_depth):
                if invalid is not None:
                    refused[len(incidents)] = invalid
                incidents.append(incident)
                extras.append(extra)
    else:
        for index, name in enumerate(args.files):
            kind = _kind_for(name, args.kind)
            raw = _read_input(name, limit)
            if isinstance(raw, int):
                refused[index] = _refused(raw, limit)
            incidents.append(None if isinstance(raw, int) else _incident_for(raw, kind, schema, args.context))
            extras.append({})
    total = len(incidents)
    progress = _Progress(total, forced=args.progress)
    out = _Out(args.output)
    printer = _InOrder(progress, out, extras, files=args.files if args.inline else None, indent=args.indent)
    try:
        for index, result in refused.items():
            printer.add(index, result)
            progress.update(index, result)
        if workers is not None:
            for index, result in _repair_in_workers(workers, incidents, refused):
                refused[index] = result  # settled: not for the graph
                printer.add(index, result)
                progress.update(index, result)
        to_run = [(i, inc) for i, inc in enumerate(incidents) if i not in refused]
        stream: Iterable[tuple[int, Any]] = ()
        if to_run:  # LangGraph loads only for what the workers did not settle
            from kgot_errors.graph.recover import recover_iter

            stream = recover_iter((inc for _, inc in to_run), max_concurrency=args.concurrency,
                                  checkpointer=store_of(args, settings), settings=settings, operations=operations)
        for position, result in stream:
            index = to_run[position][0]
            printer.add(index, result)
            progress.update(index, result)
    finally:
        out.close()
        progress.close()
    print(f"{progress.recovered}/{total} recovered", file=sys.stderr)
    return EXIT_RECOVERED if progress.recovered == total else EXIT_NOT_RECOVERED


def _workers(settings: Any, count: int) -> Any:
    """`count` worker processes for _settle, started before the input is read: they load the engine meanwhile (this
    process does not need it). One worker is this process: the engine settles what it can here, without the graph."""
    from kgot_errors.repair._batch import Workers

    syntax = settings.syntax_error_management
    options = {"policy": dict(syntax.changes), "max_chars": syntax.max_content_chars, "max_depth": syntax.max_depth,
               "settings": settings}
    return Workers(_settle, options, count, warm=_warm_worker)


def _warm_worker(options: dict[str, Any]) -> None:
    """What a worker loads before its first line: the modules _settled imports, and ftfy."""
    import kgot_errors.nodes._json
    import kgot_errors.repair._api
    import kgot_errors.repair._classify
    from kgot_errors.repair._unicode import _ftfy

    _ftfy()


def _repair_in_workers(workers: Any, incidents: list[Any], skip: dict[int, Any]) -> Iterator[tuple[int, Any]]:
    """(index, result) for the JSON incidents repaired on the workers (each classifies and repairs its lines). What
    the deterministic layers settle needs no graph (it gives the same verdict); with no model configured, what they
    cannot fix costs only CPU in the graph too, so the worker runs it there. The rest (other kinds of incident, or
    model calls, which one event loop here runs concurrently) goes on to the main process."""
    chosen = [(i, data) for i, data in enumerate(incidents) if i not in skip and data is not None]
    for (index, _), settled in zip(chosen, workers.map(d for _, d in chosen)):
        if settled is not None:
            yield index, _Encoded(*settled)


class _Encoded:
    """A result as a worker encoded it, its JSON line (`line`) and whether it recovered: printed as it is. Other
    fields (an --inline file's value, its verdict line) are read back from the line when asked for."""

    def __init__(self, recovered: bool, line: str) -> None:
        self.recovered, self.line = recovered, line
        self._data: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.line)
        return self._data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.to_data()[name]
        except KeyError:
            raise AttributeError(name) from None


def _settle(data: dict[str, Any], options: dict[str, Any]) -> tuple[bool, str] | None:
    """(recovered, the result's JSON line) for a JSON incident the deterministic layers fix, and for the others
    when no model is configured (their route is fixed then: nodes/_json.py takes it without LangGraph); else
    None, for the main process (in a worker). The line is encoded here, in the worker, not in the main process."""
    settled = _settled(data, options)
    if settled is None:
        return None
    return settled.recovered, json.dumps(settled.to_data(), ensure_ascii=False)


def _settled(data: dict[str, Any], options: dict[str, Any]) -> Any:
    """The deterministic layers' result (a _PureResult), the graph's without a model (a RecoveryResult), or None."""
    from kgot_errors.errors import KgotError
    from kgot_errors.nodes._json import settle_without_model, without_model
    from kgot_errors.repair import repair_json
    from kgot_errors.repair._classify import classify_incident
    from kgot_errors.state import ContentKind, ErrorKind, Incident, RecoveryResult

    if data.get("operation"):
        return None
    try:
        incident = Incident.parse(data)
    except KgotError:
        return None  # the graph's path says what is wrong with it
    found = classify_incident(incident.to_data())
    if incident.content is None or found.content_kind is not ContentKind.JSON or \
            found.kind not in (ErrorKind.SYNTAX, ErrorKind.SCHEMA):
        return None
    damaged = any(note.startswith("content:") for note in incident.input_notes or ())
    repaired = None
    if not damaged:  # else the edge replaced some of the content: each layer's fix carries that loss (the graph's)
        repaired = repair_json(incident.content, incident.output_schema, policy=options["policy"],
                               max_chars=options["max_chars"], max_depth=options["max_depth"])
        if repaired.ok:
            return _PureResult(repaired, str(found.kind))
    if not without_model(options["settings"]):
        return None
    state = {"incident": incident.to_data(), "kind": str(found.kind), "content_kind": str(found.content_kind)}
    try:
        return RecoveryResult.from_data(
            settle_without_model(state, options["settings"], failed=repaired))  # type: ignore[arg-type]
    except KgotError:
        return None  # the graph in the main process makes it this incident's result


class _InOrder:
    """Prints each result (a JSON line) as soon as every result before it is out: input order, streamed.

    A long batch shows its output as it goes, and a batch stopped halfway keeps what it printed.
    A line's passed-through fields (e.g. an `id`) come first, then the result's. With `files`
    (--inline) each recovered value is written back into its file instead, and a verdict line
    per file goes to stderr.
    """

    def __init__(self, progress: _Progress, out: _Out | None = None, extras: list[dict[str, Any]] | None = None,
                 *, files: list[str] | None = None, indent: int | None = None) -> None:
        self.progress = progress
        self.out = out or _Out(None)
        self.extras = extras
        self.files = files
        self.indent = indent
        self.next = 0
        self.held: dict[int, Any] = {}

    def add(self, index: int, result: Any) -> None:
        self.held[index] = result
        while self.next in self.held:
            self.progress.clear()
            self._emit(self.next, self.held.pop(self.next))
            self.next += 1

    def _emit(self, index: int, result: Any) -> None:
        if self.files is not None:
            if result.recovered:
                _write_file(Path(self.files[index]), _value_text(result, self.indent))
            _verdict(result, self.files[index])
            return
        line = result.line if isinstance(result, _Encoded) else json.dumps(result.to_data(), ensure_ascii=False)
        extra = self.extras[index] if self.extras else None
        if extra:  # its fields first, then the result's (no name is in both: _jsonl_lines refuses that)
            line = json.dumps(extra, ensure_ascii=False)[:-1] + ", " + line[1:]
        self.out.write_line(line)


class _Progress:
    """Progress of a batch on stderr: a live counter on a terminal; elsewhere a plain line now and then.

    Not on a terminal (a log, CI), a line every LONG_S seconds once a batch has run that long;
    with `forced` (--progress), a line every second and a last one at the end.
    """

    LONG_S = 10.0

    def __init__(self, total: int, *, forced: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done, self.recovered = total, 0, 0
        self.live = sys.stderr.isatty() and total > 1
        self.forced = forced
        self.clock = clock
        self.started = self.last = clock()
        self.interval = 1.0 if forced else self.LONG_S

    def update(self, index: int, result: Any) -> None:
        self.done += 1
        self.recovered += bool(result.recovered)
        if self.live:
            print(f"\r{self.done}/{self.total} done, {self.recovered} recovered", end="", file=sys.stderr, flush=True)
            return
        now = self.clock()
        if now - self.last >= self.interval and self.total > 1:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        print(f"kgot-errors: {self.done}/{self.total} done, {self.recovered} recovered, {now - self.started:.1f} s",
              file=sys.stderr, flush=True)

    def clear(self) -> None:
        """Blank the counter's line, before other output is written to the terminal."""
        if self.live and self.done:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(file=sys.stderr)
        elif self.forced and self.total > 1:
            self._line(self.clock())


# --- threads ----------------------------------------------------------------------------------------------------

def _existing(target: Any) -> Any:
    from kgot_errors.observability.threads import require_store

    return require_store(target)


def _cmd_history(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import history
    from kgot_errors.observability.threads import format_time, timeline

    settings = settings_of(args)
    target = _existing(store_of(args, settings))
    h = history(args.thread, checkpointer=target, settings=settings)
    times = timeline(args.thread, target)
    if args.json:
        print(json.dumps({**h, "attempts": [a.model_dump(mode="json") for a in h["attempts"]],
                          "recorded_at": times.attempts, "started_at": times.started, "updated_at": times.updated,
                          "result": h["result"].to_data() if h["result"] else None}, ensure_ascii=False, indent=2))
        return EXIT_RECOVERED
    print(f"thread {args.thread}: {h['kind']} ({h['classified_by']}), started {format_time(times.started)}, "
          f"last step {format_time(times.updated)}")
    for i, a in enumerate(h["attempts"]):
        by = f" [{a.validator}]" if a.validator else ""
        when = format_time(times.attempts[i] if i < len(times.attempts) else None, clock_only=True)
        print(f"  {when}  {a.layer:<12} #{a.try_no}  {a.verdict:<9} {a.duration_s * 1000:8.1f} ms  {a.reason}{by}")
    if h["finished"]:
        print(f"finished: {h['result'].summary}")
    elif h["next"] == ["human"]:
        print(f"paused for a person's fix (kgot-errors resume {args.thread} --value FILE)")
    else:
        needs = h["incident"].get("operation") if isinstance(h.get("incident"), dict) else None
        how = f" --operations MODULE:NAME (it re-runs {needs!r})" if needs else ""
        print(f"unfinished: next {', '.join(h['next']) or '?'} (kgot-errors resume {args.thread}{how})")
    return EXIT_RECOVERED


def _cmd_resume(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import resume

    settings = settings_of(args)
    target = _existing(store_of(args, settings))
    extra: dict[str, Any] = {}
    if args.give_up:
        extra["value"] = None
    elif args.value is not None:
        raw = _read_input(args.value)
        assert isinstance(raw, bytes)
        text = raw.decode("utf-8", errors="replace")
        try:
            extra["value"] = json.loads(text)
        except ValueError:
            extra["value"] = text  # text or code: validated like any candidate
    result = resume(args.thread, checkpointer=target, settings=settings, operations=_operations(args), **extra)
    return _print_result(result, args)


def _cmd_pending(args: argparse.Namespace) -> int:
    from kgot_errors.graph.recover import pending

    settings = settings_of(args)
    paused = pending(checkpointer=_existing(store_of(args, settings)), settings=settings)
    if args.json:
        print(json.dumps(paused, ensure_ascii=False, indent=2))
        return EXIT_RECOVERED
    if not paused:
        print("no threads are waiting for a person", file=sys.stderr)
    for p in paused:
        rejected = f" (last fix rejected: {p['rejected']})" if p["rejected"] else ""
        print(f"{p['thread_id']}  {p['kind']}  {p['summary']}{rejected}")
    return EXIT_RECOVERED


# --- main -------------------------------------------------------------------------------------------------------

def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser `args` went through: the one whose usage a bad flag should show."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, action.dest, None) if action is not None else None
        if action is None or name not in action.choices:
            return parser
        parser = action.choices[name]


def _crash(exc: BaseException) -> int:
    """A bug: one line on stderr, the traceback in a file (never on the terminal, never exit 1)."""
    import tempfile
    import traceback

    where = ""
    try:
        with tempfile.NamedTemporaryFile("w", prefix="kgot-errors-crash-", suffix=".txt", delete=False) as f:
            traceback.print_exception(exc, file=f)
            where = f"; the traceback is in {f.name}"
    except OSError:
        pass
    print(f"kgot-errors: internal error: {type(exc).__name__}: {exc} (a bug, please report it{where})",
          file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from kgot_errors.errors import InvalidIncident, KgotError, ThreadNotFound, ThreadNotPaused

    try:
        return args.handler(args)
    except _Usage as exc:
        print(f"kgot-errors: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InvalidIncident, ThreadNotFound, ThreadNotPaused) as exc:  # what the user gave cannot be used
        print(f"kgot-errors: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KgotError as exc:  # configuration, unusable or missing store, unregistered operation, no sandbox
        print(f"kgot-errors: {exc}", file=sys.stderr)
        return EXIT_STORE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_PIPE
    except OSError as exc:  # the machine's trouble (a full disk, a vanished directory), not a bug
        print(f"kgot-errors: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        print("kgot-errors: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: an exit code of its own, not a traceback
        return _crash(exc)


if __name__ == "__main__":  # pragma: no cover - `python -m kgot_errors.cli`: one module, one set of error classes
    from kgot_errors.cli import main as _main

    sys.exit(_main())
