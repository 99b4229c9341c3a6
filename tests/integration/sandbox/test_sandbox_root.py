"""bwrap's private root, judged from the host: none of the host's /usr, site-packages, /etc or interpreter
files inside a run, only the standard library importable, and what legitimate programs need still there."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import site
import sys
import textwrap
from pathlib import Path

import pytest
from kgot_errors.sandbox import Sandbox

from .conftest import make_sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox suites run as root (host-side checks)")


@pytest.fixture(scope="module")
def bwrap() -> Sandbox:
    return make_sandbox("bwrap", timeout=30)


def _run_json(sb: Sandbox, code: str, **kw: object) -> dict:
    res = sb.run(textwrap.dedent(code), **kw)  # type: ignore[arg-type]
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _host_site_dirs() -> list[str]:
    dirs = {*site.getsitepackages(), *site.getsitepackages([sys.base_prefix]), site.getusersitepackages()}
    for pattern in ("/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                    "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages"):
        dirs.update(glob.glob(pattern))
    return sorted(d for d in dirs if os.path.isdir(d) and os.listdir(d))


def test_host_usr_site_packages_and_interpreter_dirs_are_not_visible(bwrap: Sandbox):
    paths = ["/usr", "/usr/bin", "/usr/lib", "/bin/sh", "/usr/bin/env", "/sbin", "/opt", "/root",
             os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), *_host_site_dirs()]
    on_host = [p for p in paths if os.path.exists(p)]
    assert "/usr/bin" in on_host and any("-packages" in p for p in on_host), on_host  # the test means something
    seen = _run_json(bwrap, f"""
        import json, os
        print(json.dumps({{p: os.path.lexists(p) for p in {on_host!r}}}))
    """)
    assert [p for p, there in seen.items() if there] == []


def test_host_etc_is_not_visible(bwrap: Sandbox):
    host_passwd = Path("/etc/passwd").read_text()
    host_users = {ln.split(":")[0] for ln in host_passwd.splitlines() if ln} - {"root", "sandbox"}
    seen = _run_json(bwrap, """
        import json, os
        cache = open("/etc/ld.so.cache", "rb").read() if os.path.exists("/etc/ld.so.cache") else b""
        paths = [p.decode("latin-1") for p in cache.split(b"\\0") if p.startswith(b"/") and b".so" in p]
        print(json.dumps({"etc": sorted(os.listdir("/etc")), "passwd": open("/etc/passwd").read(), "cache": paths}))
    """)
    assert seen["passwd"] != host_passwd
    assert not {ln.split(":")[0] for ln in seen["passwd"].splitlines()} & host_users
    # only the files the run itself is given: no host localtime, nsswitch.conf, ..., and a library cache
    # that lists the copy's libraries alone (the host's would list every library installed there)
    assert set(seen["etc"]) <= {"passwd", "group", "hosts", "ld.so.cache"}, seen["etc"]
    assert all(p.startswith("/python/lib/") for p in seen["cache"]), seen["cache"]


def test_every_python_file_and_executable_inside_is_the_run_interpreters_own(bwrap: Sandbox):
    seen = _run_json(bwrap, """
        import json, os, sys, sysconfig
        stdlib = sysconfig.get_path("stdlib")
        foreign_py, executables, package_dirs = [], [], []
        for top in sorted(os.listdir("/")):
            if top in ("proc", "sys", "dev"):
                continue
            for dirpath, dirnames, filenames in os.walk("/" + top):
                for d in dirnames:
                    if d in ("site-packages", "dist-packages") and os.listdir(os.path.join(dirpath, d)):
                        package_dirs.append(os.path.join(dirpath, d))
                for f in filenames:
                    p = os.path.join(dirpath, f)
                    if f.endswith((".py", ".pyc", ".pth")) and not p.startswith(stdlib + "/"):
                        foreign_py.append(p)
                    if os.path.isfile(p) and os.access(p, os.X_OK) and not p.startswith(("/python/", "/lib")):
                        executables.append(p)
                if len(foreign_py) + len(executables) > 50:
                    break
        print(json.dumps({"stdlib": stdlib, "py": foreign_py[:50], "exe": executables[:50],
                          "packages": package_dirs, "executable": sys.executable, "path": sys.path}))
    """, timeout=60)
    assert seen["py"] == [] and seen["exe"] == [] and seen["packages"] == [], seen
    assert seen["executable"].startswith("/python/") and seen["stdlib"].startswith("/python/")
    assert all(p.startswith("/python/") for p in seen["path"]), seen["path"]


def test_host_packages_cannot_be_imported_even_from_host_paths(bwrap: Sandbox):
    host_packages = [m for m in ("langgraph", "pydantic", "numpy", "yaml", "pytest", "kgot_errors")
                     if importlib.util.find_spec(m) is not None]
    assert "langgraph" in host_packages and "kgot_errors" in host_packages  # installed on the host
    extra_paths = [*_host_site_dirs(), *sys.path[1:]]
    seen = _run_json(bwrap, f"""
        import json, sys
        sys.path.extend({extra_paths!r})
        out = {{}}
        for name in {host_packages!r}:
            try:
                __import__(name)
                out[name] = "imported"
            except ImportError as e:
                out[name] = type(e).__name__
        print(json.dumps(out))
    """)
    assert set(seen.values()) <= {"ImportError", "ModuleNotFoundError"}, seen


def test_the_interpreter_inside_is_a_private_copy_not_the_hosts_file(bwrap: Sandbox):
    """A copy has its own inode, hence its own page cache: probing it shows nothing the host ran."""
    host = {os.path.realpath(p) for p in (sys.executable, getattr(sys, "_base_executable", sys.executable))}
    host_ids = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in host}
    host_os = os.stat(os.path.join(os.path.dirname(os.__file__), "os.py"))
    seen = _run_json(bwrap, """
        import json, os, sys
        exe, osmod = os.stat(sys.executable), os.stat(os.__file__)
        print(json.dumps({"exe": [exe.st_dev, exe.st_ino], "os": [osmod.st_dev, osmod.st_ino]}))
    """)
    assert tuple(seen["exe"]) not in host_ids
    assert tuple(seen["os"]) != (host_os.st_dev, host_os.st_ino)


def test_the_standard_library_and_the_run_basics_still_work(bwrap: Sandbox):
    seen = _run_json(bwrap, """
        import asyncio, bz2, collections, csv, ctypes, datetime, decimal, fractions, hashlib, json, lzma, math
        import random, re, sqlite3, statistics, struct, subprocess, sys, tempfile, threading, unicodedata, zlib
        out = {}
        out["math"] = math.isqrt(10**20) == 10**10 and re.fullmatch(r"a+b", "aaab") is not None
        out["datetime"] = datetime.datetime(2024, 1, 1).isoformat() == "2024-01-01T00:00:00"
        out["collections"] = collections.Counter("abca")["a"] == 2
        out["decimal"] = str(decimal.Decimal("1.1") + decimal.Decimal("2.2")) == "3.3"
        out["hash"] = hashlib.sha256(b"x").hexdigest()[:8] == "2d711642" and hashlib.md5(b"").hexdigest()[:4] == "d41d"
        out["compress"] = lzma.decompress(lzma.compress(b"ab")) == bz2.decompress(bz2.compress(b"ab")) == b"ab"
        db = sqlite3.connect(":memory:"); out["sqlite"] = db.execute("select 1+1").fetchone() == (2,)
        out["asyncio"] = asyncio.run(asyncio.sleep(0, result=7)) == 7
        t = threading.Thread(target=lambda: None); t.start(); t.join(); out["thread"] = True
        out["ctypes"] = ctypes.CDLL("libc.so.6").getpid() > 0
        with tempfile.NamedTemporaryFile("w+", dir="/tmp") as f:
            f.write("hi"); f.flush(); f.seek(0); out["tmp"] = f.read() == "hi"
        out["devnull"] = open("/dev/null", "rb").read() == b""
        out["urandom"] = len(open("/dev/urandom", "rb").read(16)) == 16
        out["proc"] = "Pid:" in open("/proc/self/status").read()
        child = subprocess.run([sys.executable, "-c", "import json; print(json.dumps([1]))"], capture_output=True)
        out["child_python"] = child.stdout == b"[1]\\n"
        bare = subprocess.run([sys.executable, "-c", "print(2)"], capture_output=True, env={})
        out["child_python_bare_env"] = bare.stdout == b"2\\n"
        out["unicodedata"] = unicodedata.name("a") == "LATIN SMALL LETTER A"
        print(json.dumps(out))
    """)
    assert seen == dict.fromkeys(seen, True) and len(seen) == 17, seen


def test_the_program_holds_no_capability_in_any_set(bwrap: Sandbox):
    seen = _run_json(bwrap, """
        import json
        status = dict(ln.split(":", 1) for ln in open("/proc/self/status") if ln.startswith("Cap"))
        print(json.dumps({k: int(v, 16) for k, v in status.items()}))
    """)
    # bounding and inheritable too: nothing the program execs could ever be granted a capability
    assert seen == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}, seen
