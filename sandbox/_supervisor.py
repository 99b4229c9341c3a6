"""The supervisor inside every run: takes the program on stdin, runs it as the run's uid, keeps its deadline, relays capped output, reports how it ended."""

# Runs as `python -I -B -S -c SOURCE DEADLINE UID CAP CPU_SECONDS SCRATCH` inside the sandbox (DEADLINE:
# CLOCK_MONOTONIC, or minus the seconds from now), standard
# library only. It is the sandbox's trusted part: as root (caps: setuid/setgid/kill) while the program
# runs as UID, so the program can neither signal it nor read its memory nor reach its stdout.
#
# stdin  (from the host): u64 length, then: u32 code length, code, i64 stdin length (-1: none), stdin,
#        u32 file count, per file u32 name length, name, u64 data length, data.
# stdout (to the host):   frames `u8 kind, u32 length, data`; kind 1 = program stdout, 2 = program
#        stderr (each at most CAP bytes), 3 = the verdict (a Python literal), 9 = the supervisor failed.
# The program is a fork of this process (no second interpreter start). How it ended comes from wait4
# (status, CPU used) and from the runner around the code (uncaught exception, SystemExit value) through a
# pipe; the host only counts the runner's record when the exit status agrees with it.

import os
import select
import struct
import sys
import time

_FRAME = struct.Struct("!BI")
_CHUNK = 1 << 16
_AFTER_EXIT = 0.25  # output pipes still held by leftovers once the program is gone
_DRAIN = 0.5
_SIGKILL = 9  # not `import signal`: it pulls in enum, ~10 ms of every run's start
_SETPCAP, _PR_CAPBSET_DROP, _CAP_V3 = 8, 24, 0x20080522


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue


def _frame(kind, data):
    _write_all(1, _FRAME.pack(kind, len(data)) + data)


def _read_payload(deadline):
    buf = bytearray()
    need = 8
    while len(buf) < need:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no program arrived before the deadline")
        if select.select([0], [], [], left)[0]:
            chunk = os.read(0, max(_CHUNK, need - len(buf)))
            if not chunk:
                raise EOFError("the program's stream ended early")
            buf += chunk
            if need == 8 and len(buf) >= 8:
                need = 8 + struct.unpack_from("!Q", buf)[0]
    view, pos = memoryview(buf), 8

    def take(n):
        nonlocal pos
        pos += n
        return bytes(view[pos - n:pos])

    code = take(struct.unpack("!I", take(4))[0]).decode("utf-8", "surrogatepass")
    size = struct.unpack("!q", take(8))[0]
    stdin = None if size < 0 else take(size)
    files = []
    for _ in range(struct.unpack("!I", take(4))[0]):
        name = take(struct.unpack("!I", take(4))[0]).decode("utf-8", "surrogatepass")
        files.append((name, take(struct.unpack("!Q", take(8))[0])))
    return code, stdin, files


def _drop_bounding():
    """Holding CAP_SETPCAP (bwrap as root grants it for this only): empty the bounding and inheritable sets,
    keeping setuid/setgid/kill effective here. The program, a fork that then becomes another uid, is left
    with no capability in any set (setresuid clears only the permitted and effective ones)."""
    with open("/proc/self/status") as f:
        caps = {k: int(v, 16) for k, _, v in (ln.partition(":") for ln in f) if k in ("CapEff", "CapBnd")}
    if not caps["CapEff"] >> _SETPCAP & 1:
        return
    import _ctypes  # not ctypes: its package costs ~5 ms of every run's start; libc's own entry points

    libc = _ctypes.dlopen(None, 2)
    prctl, capset = _ctypes.dlsym(libc, "prctl"), _ctypes.dlsym(libc, "capset")
    for cap in range(caps["CapBnd"].bit_length()):
        if caps["CapBnd"] >> cap & 1 and _ctypes.call_function(prctl, (_PR_CAPBSET_DROP, cap, 0, 0, 0)) != 0:
            raise PermissionError(f"cannot drop capability {cap} from the bounding set")
    keep = caps["CapEff"] & ~(1 << _SETPCAP)
    low, high = keep & 0xFFFFFFFF, keep >> 32
    header = struct.pack("=II", _CAP_V3, 0)
    if _ctypes.call_function(capset, (header, struct.pack("=6I", low, low, 0, high, high, 0))) != 0:
        raise PermissionError("cannot clear the inheritable capabilities")


def _become(uid, scratch):
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # the memory limit's OOM kill takes the program, never the supervisor
    except OSError:
        pass
    if os.getuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to another uid: every capability is gone
    os.chdir(scratch)


def _place(files, stdin):
    for name, data in files:
        parent = os.path.dirname(name)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        _write_all(fd, data)
        os.close(fd)
    if stdin is None:
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        fd = os.memfd_create("stdin", 0)
        _write_all(fd, stdin)
        os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)


def _line(record):
    return (repr(record) + "\n").encode()  # repr escapes newlines: one record, one line


def _recorder(fd, write):
    def record(item):
        try:
            write(fd, _line(item))
        except OSError:  # the program closed or replaced it: the exit status alone then speaks
            pass

    return record


def _runner(code, record):
    """Runs `code` as __main__ here; an uncaught exception or a non-zero SystemExit ends the process at
    once with a non-zero status (never 0: 256 would wrap), after the record went to the supervisor."""
    _exit, _flush, _record = os._exit, _flusher(), _recorder(record, os.write)
    main = type(sys)("__main__")
    sys.modules["__main__"] = main
    sys.argv[:] = ["-c"]
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)
    except SystemExit as exc:
        value = exc.code
        if value is None or (isinstance(value, int) and value == 0):
            _record(("exit", 0))
            _finish(_exit, _flush)
        if isinstance(value, int):
            status = (value & 0xFF) or 1
            _record(("exit", int(value)))
        else:
            status = 1
            _record(("exit", str(value)[:200]))
            try:
                sys.stderr.write(str(value) + "\n")
            except BaseException:  # noqa: BLE001 - a broken stderr changes nothing about the ending
                pass
        _flush()
        _exit(status)
    except BaseException as exc:  # noqa: BLE001 - the program's own failure, reported as such
        _record(("exception", type(exc).__name__[:200]))
        try:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        except BaseException:  # noqa: BLE001 - no traceback module (or a broken one): the bare exception
            try:
                os.write(2, f"{type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
            except BaseException:  # noqa: BLE001
                pass
        _flush()
        _exit(1)
    _record(("return",))
    _finish(_exit, _flush)


def _finish(_exit, _flush):
    """A clean end, as python -c ends: non-daemon threads joined, atexit handlers run, streams flushed
    (a failed flush is exit 120). Then _exit: no module teardown (nothing of the program's runs there)."""
    threading = sys.modules.get("threading")
    try:
        if threading is not None:
            threading._shutdown()
    except BaseException:  # noqa: BLE001 - as Py_Finalize: reported, not fatal
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass
    status = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # noqa: BLE001
            status = 120
    _exit(status)


def _flusher():
    streams = (sys.stdout, sys.stderr)

    def flush():
        for s in (sys.stdout, sys.stderr, *streams):
            try:
                s.flush()
            except BaseException:  # noqa: BLE001
                pass

    return flush


def _kill_all(pid):
    """Kill the program and everything it started. kill(-1) only inside the run's own pid namespace
    (we are its pid 1, or pid 2 under bwrap's init): elsewhere it would hit every process of the uid."""
    try:
        if os.getpid() <= 2:
            os.kill(-1, _SIGKILL)  # everything in this pid namespace but us (and its init)
        else:
            os.killpg(pid, _SIGKILL)  # outside a namespace (a test, a mistake): the program's group only
    except OSError:
        pass


def _peak():
    for path in ("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak"):
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def _oom():
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _supervise(pid, out_r, err_r, rec_r, cap, deadline):
    pidfd = os.pidfd_open(pid)
    open_fds = {out_r: 1, err_r: 2, rec_r: 0}
    totals = {1: 0, 2: 0}
    record = bytearray()
    status, cpu, timed_out = None, 0.0, False
    stop_at = deadline
    killed = False
    while open_fds or status is None:
        now = time.monotonic()
        if now >= stop_at:
            if status is None:
                timed_out = True
            if killed:
                break
            _kill_all(pid)
            killed = True
            stop_at = time.monotonic() + _DRAIN
            if status is None:
                _, status, usage = os.wait4(pid, 0)
                cpu = usage.ru_utime + usage.ru_stime
            continue
        watch = list(open_fds) + ([pidfd] if status is None else [])
        ready = select.select(watch, [], [], stop_at - now)[0] if watch else []
        if not watch:
            time.sleep(max(0.0, min(0.01, stop_at - now)))
        for fd in ready:
            if fd == pidfd:
                _, status, usage = os.wait4(pid, 0)
                cpu = usage.ru_utime + usage.ru_stime
                if not killed:
                    stop_at = min(stop_at, time.monotonic() + _AFTER_EXIT)
                continue
            try:
                data = os.read(fd, _CHUNK)
            except OSError:
                data = b""
            if not data:
                del open_fds[fd]
                os.close(fd)
                continue
            kind = open_fds[fd]
            if kind == 0:
                if len(record) < 4096:
                    record += data[: 4096 - len(record)]
                continue
            room = cap - totals[kind]
            totals[kind] += len(data)
            if room > 0:
                _frame(kind, data[:room])  # past the cap: read here (the run's own CPU) and dropped
        if status is not None and not open_fds and not killed:
            break
    if not killed:
        _kill_all(pid)
    os.close(pidfd)
    return {"status": status, "cpu": round(cpu, 4), "timed_out": timed_out, "record": bytes(record),
            "stdout_total": totals[1], "stderr_total": totals[2]}


def main():
    deadline, uid, cap, cpu_limit = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    if deadline < 0:  # relative (a remote docker daemon's monotonic clock is not the caller's)
        deadline = time.monotonic() - deadline
    scratch = sys.argv[5]
    try:
        _drop_bounding()
        code, stdin, files = _read_payload(deadline)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        rec_r, rec_w = os.pipe()
    except Exception as exc:  # noqa: BLE001 - reported to the host as the supervisor's failure
        _frame(9, repr(exc).encode()[:2000])
        return
    del sys.argv[1:]
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()  # its own process group: the fallback kill's target
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_r, err_r, rec_r, out_w, err_w):
                os.close(fd)
            _become(uid, scratch)
            _place(files, stdin)
            os.closerange(3, rec_w)
            os.closerange(rec_w + 1, 65536)
            del files, stdin
        except BaseException as exc:  # noqa: BLE001
            try:
                os.write(2, f"kgot-errors sandbox: could not start the program: {exc!r}\n".encode())
            finally:
                os._exit(126)
        _runner(code, rec_w)  # never returns
    for fd in (out_w, err_w, rec_w):
        os.close(fd)
    del code, stdin, files
    verdict = _supervise(pid, out_r, err_r, rec_r, cap, deadline)
    verdict["cpu_limit"] = cpu_limit
    verdict["peak"] = _peak()
    verdict["oom"] = _oom()
    _frame(3, repr(verdict).encode())
    os._exit(0)  # nothing to tear down


if __name__ == "__main__":
    main()
