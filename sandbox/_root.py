"""bwrap's private root: a copy of the interpreter, the shared libraries it loads and its standard library
(no site-packages), built once into the cache dir; nothing of the host's /usr is bound into a run."""

# Why a copy and not binds of the host's files: a bind shares the host file's inode, so its page cache
# (read timing) shows what the host runs. The copy's pages are its own: a run sees only what runs load.
# Layout inside a run (the interpreter derives sys.prefix /python from where its executable is):
#   /python/bin/pythonX.Y    the executable
#   /python/lib/*.so*        every library it and its extension modules load
#   /python/lib/pythonX.Y/   the standard library and lib-dynload
#   <PT_INTERP path>         the dynamic loader (e.g. /lib64/ld-linux-x86-64.so.2)
#   /etc/ld.so.cache         listing the copy's libraries only (when ldconfig could build it)

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kgot_errors.errors import SandboxUnavailable

__all__ = ["PREFIX", "PrivateRoot", "default_root_dir", "interpreter_facts", "private_root"]

PREFIX = "/python"
_FORMAT = 2  # bump when the layout changes: old roots are then rebuilt under a new key
# stdlib entries a sandboxed program has no use for (tests, GUI, installers, the static library)
_SKIP_TOP = frozenset({"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"})
_SKIP_DYNLOAD = re.compile(r"^(_tkinter|_test|xx)")
_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(/\S+) \(0x[0-9a-f]+\)\s*$")
_PROBE = (
    "import json, os, sys, sysconfig\n"
    "dyn = [p for p in sys.path if p.endswith('lib-dynload')]\n"
    "print(json.dumps({'executable': os.path.realpath(sys.executable), 'version': '%d.%d' % sys.version_info[:2],"
    " 'stdlib': sysconfig.get_path('stdlib'), 'dynload': dyn[0] if dyn else None,"
    " 'purelib': sysconfig.get_paths(vars={'base': sys.base_prefix, 'platbase': sys.base_exec_prefix})['purelib']}))\n"
)


@dataclass(frozen=True, slots=True)
class PrivateRoot:
    """A built root on the host: `binds` are (host path, path in the run) to bind read-only."""

    path: Path
    executable: str  # inside the run
    binds: tuple[tuple[str, str], ...]
    library_path: str  # LD_LIBRARY_PATH inside the run


def default_root_dir() -> Path:
    """`$XDG_CACHE_HOME/kgot-errors/bwrap-root` (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kgot-errors" / "bwrap-root"


def interpreter_facts(python: str | None) -> dict[str, str | None]:
    """executable (real path), version, stdlib, lib-dynload and site-packages dirs: of this process, or asked of `python`."""
    if python is None:
        import sysconfig

        dyn = [p for p in sys.path if p.endswith("lib-dynload")]
        exe = getattr(sys, "_base_executable", None) or sys.executable
        return {"executable": os.path.realpath(exe), "version": "%d.%d" % sys.version_info[:2],
                "stdlib": sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}),
                "dynload": dyn[0] if dyn else None,
                "purelib": sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})["purelib"]}
    try:
        out = subprocess.run([python, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=30,
                             check=True, env={"PATH": "/usr/bin:/bin"}).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailable(f"cannot ask {python} where its standard library is: {exc}") from exc


def _elf_interp(path: str) -> str | None:
    """PT_INTERP of a 64- or 32-bit little-endian ELF (the dynamic loader the kernel starts), else None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[5] != 1:
            return None
        wide = head[4] == 2
        phoff, phentsize, phnum = (struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)) \
            if wide else (struct.unpack_from("<I", head, 28)[0], *struct.unpack_from("<HH", head, 42))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ph = f.read(phentsize)
            if struct.unpack_from("<I", ph, 0)[0] == 3:  # PT_INTERP: p_offset, p_filesz
                if wide:
                    offset, size = struct.unpack_from("<Q", ph, 8)[0], struct.unpack_from("<Q", ph, 32)[0]
                else:
                    offset, size = struct.unpack_from("<I", ph, 4)[0], struct.unpack_from("<I", ph, 16)[0]
                f.seek(offset)
                return f.read(size).rstrip(b"\x00").decode()
    return None


def _needed(loader: str, objects: list[str]) -> dict[str, str]:
    """soname -> host path of every shared library `objects` load (the loader's own --list, as ldd does)."""
    found: dict[str, str] = {}
    for obj in objects:
        try:
            out = subprocess.run([loader, "--list", obj], capture_output=True, text=True, timeout=30,
                                 env={}, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"cannot list the libraries of {obj}: {exc}") from exc
        if out.returncode != 0:
            if obj == objects[0]:
                raise SandboxUnavailable(f"cannot list the libraries of {obj}: {out.stderr.strip()[:300]}")
            continue  # an extension module whose libraries are missing on the host cannot load there either
        for line in out.stdout.splitlines():
            m = _LDD_LINE.match(line)
            if m and m.group(1):
                found.setdefault(m.group(1), os.path.realpath(m.group(2)))
    return found


def _where(facts: dict[str, str | None]) -> tuple[str, str, str | None, str]:
    """(executable, stdlib, lib-dynload or None, loader) of the interpreter `facts` describe."""
    exe, stdlib = facts["executable"], facts["stdlib"]
    if not exe or not stdlib or not os.path.isfile(os.path.join(stdlib, "os.py")):
        raise SandboxUnavailable(f"no standard library found for {exe} (looked in {stdlib})")
    loader = _elf_interp(exe)
    if loader is None or not os.path.isfile(loader):
        raise SandboxUnavailable(f"{exe} is not a dynamically linked ELF executable this sandbox can copy")
    dynload = facts["dynload"] if facts["dynload"] and os.path.isdir(facts["dynload"]) else None
    return exe, stdlib, dynload, loader


def _libraries(exe: str, loader: str, modules: list[str]) -> dict[str, str]:
    libs = _needed(loader, [exe, *modules])
    libc = libs.get("libc.so.6")
    if libc:  # glibc dlopens libgcc_s for pthread_exit/cancel unwinding: not in any DT_NEEDED
        gcc = Path(libc).with_name("libgcc_s.so.1")
        if gcc.is_file():
            libs.setdefault("libgcc_s.so.1", str(gcc))
    return libs


def _key(version: str, *paths: str | None) -> str:
    """Changes when the interpreter or its stdlib does (a copy is a consistent snapshot: host library
    updates need no rebuild)."""
    h = hashlib.sha256(f"{_FORMAT}\0{version}\0".encode())
    for path in paths:
        if path is not None:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0".encode())
    return h.hexdigest()[:24]


def _copy_stdlib(src: str, dst: Path, modules: list[str]) -> None:
    def skip(directory: str, names: list[str]) -> set[str]:
        top = os.path.samefile(directory, src)
        out = {n for n in names if top and (n in _SKIP_TOP or n.startswith("config-") or n == "lib-dynload")}
        if os.path.basename(directory) == "__pycache__":  # the plain .pyc only: runs are never -O
            out |= {n for n in names if ".opt-" in n}
        return out | {n for n in names if n.endswith((".exe", ".a"))}

    shutil.copytree(src, dst, symlinks=True, ignore=skip)
    (dst / "site-packages").mkdir()  # empty: the mount point for `site_packages=True`
    dyn = dst / "lib-dynload"
    dyn.mkdir(exist_ok=True)
    for module in modules:
        shutil.copy2(module, dyn / os.path.basename(module))


def _library_cache(work: Path) -> None:
    """etc/ld.so.cache listing only the copy's libraries (ldconfig -r), so that a program that clears
    LD_LIBRARY_PATH still starts the interpreter. Without ldconfig the variable alone finds them."""
    ldconfig = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig")
                                                 if os.path.isfile(p)), None)
    if ldconfig is None:
        return
    (work / "etc").mkdir()
    (work / "etc" / "ld.so.conf").write_text(PREFIX + "/lib\n")
    try:
        subprocess.run([ldconfig, "-r", str(work), "-X", "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf"],
                       capture_output=True, timeout=60, env={}, check=False)
    except (OSError, subprocess.SubprocessError):
        pass
    (work / "etc" / "ld.so.conf").unlink()


def _build(target: Path, exe: str, stdlib: str, dynload: str | None, loader: str, version: str) -> None:
    modules = sorted(str(p) for p in Path(dynload).glob("*.so") if not _SKIP_DYNLOAD.match(p.name)) if dynload else []
    libs = _libraries(exe, loader, modules)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        prefix = work / PREFIX.lstrip("/")
        (prefix / "bin").mkdir(parents=True)
        lib = prefix / "lib"
        lib.mkdir()
        copy = prefix / "bin" / f"python{version}"
        shutil.copy2(exe, copy)
        for alias in ("python3", "python"):
            (prefix / "bin" / alias).symlink_to(copy.name)
        for soname, path in libs.items():
            shutil.copy2(path, lib / soname)
        ld = work / loader.lstrip("/")
        ld.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(loader, ld)
        _copy_stdlib(stdlib, lib / f"python{version}", modules)
        _library_cache(work)
        for dirpath, dirnames, filenames in os.walk(work):  # readable by every run uid, writable by none
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, 0o755 if os.stat(p).st_mode & 0o111 else 0o644)
        os.chmod(work, 0o755)
        try:
            os.rename(work, target)  # atomic: a root that exists is complete
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(work, ignore_errors=True)  # another process built it first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _own_dir(path: Path) -> None:
    """Create `path` (0700) and refuse it unless this user owns it and nobody else can write it: the
    supervisor runs from this copy with setuid/setgid/kill inside every run."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxUnavailable(f"the sandbox's root dir {path} must be a directory owned by this user and "
                                 "writable by nobody else")


@functools.cache
def private_root(root_dir: Path, python: str | None = None) -> PrivateRoot:
    """The private root for `python` (default: this interpreter), built into `root_dir` on first use."""
    facts = interpreter_facts(python)
    version = str(facts["version"])
    exe, stdlib, dynload, loader = _where(facts)
    _own_dir(root_dir)
    target = root_dir / _key(version, exe, loader, stdlib, dynload)
    if not target.is_dir():
        _build(target, exe, stdlib, dynload, loader, version)
    binds = [(str(target / PREFIX.lstrip("/")), PREFIX), (str(target / loader.lstrip("/")), loader)]
    if (target / "etc" / "ld.so.cache").is_file():
        binds.append((str(target / "etc" / "ld.so.cache"), "/etc/ld.so.cache"))
    return PrivateRoot(path=target, executable=f"{PREFIX}/bin/python{version}", binds=tuple(binds),
                       library_path=f"{PREFIX}/lib")
