"""bwrap's private root (sandbox/_root.py): what the copy holds and leaves out, its reuse, its refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest
from kgot_errors.errors import SandboxUnavailable
from kgot_errors.sandbox._root import PREFIX, _elf_interp, interpreter_facts, private_root

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF interpreters only")

VERSION = "%d.%d" % sys.version_info[:2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    private_root.cache_clear()
    root = private_root(tmp_path_factory.mktemp("roots") / "bwrap-root")
    yield root
    private_root.cache_clear()


def _files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs]


def test_elf_interp_is_the_loader_the_host_linker_names():
    exe = interpreter_facts(None)["executable"]
    loader = _elf_interp(str(exe))
    assert loader and os.path.isabs(loader) and os.path.isfile(loader)
    ldd = shutil.which("ldd")
    if ldd:
        listed = subprocess.run([ldd, str(exe)], capture_output=True, text=True, check=True).stdout
        assert any(line.strip().startswith(loader) for line in listed.splitlines()), listed
    assert _elf_interp(__file__) is None  # not an ELF file


def test_the_copy_holds_the_interpreter_its_libraries_and_the_stdlib(built):
    prefix = Path(dict((inside, host) for host, inside in built.binds)[PREFIX])
    exe = prefix / "bin" / f"python{VERSION}"
    assert built.executable == f"{PREFIX}/bin/python{VERSION}" and os.access(exe, os.X_OK)
    libs = {p.name for p in (prefix / "lib").iterdir() if p.is_file()}
    assert "libc.so.6" in libs
    linked = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True, text=True).stdout
    soname = sysconfig.get_config_var("INSTSONAME")
    if soname and soname in linked:  # Debian's python3.11 is built shared but its executable links it statically
        assert soname in libs
    stdlib = prefix / "lib" / f"python{VERSION}"
    for module in ("os.py", "json/__init__.py", "collections/__init__.py", "re/__init__.py", "datetime.py"):
        assert (stdlib / module).is_file(), module
    dynload = {p.name.split(".")[0] for p in (stdlib / "lib-dynload").iterdir()}
    host_dynload = interpreter_facts(None)["dynload"]
    if host_dynload:  # every extension module of the host's stdlib but the test and GUI ones
        wanted = {p.split(".")[0] for p in os.listdir(host_dynload) if p.endswith(".so")}
        assert {m for m in wanted if not m.startswith(("_test", "_tkinter", "xx"))} <= dynload
    # the copy is not the host's file: its own inode, hence its own page cache
    assert os.stat(exe).st_ino != os.stat(str(interpreter_facts(None)["executable"])).st_ino


def test_the_copy_leaves_out_site_packages_tests_and_optimised_bytecode(built):
    stdlib = Path(built.binds[0][0]) / "lib" / f"python{VERSION}"
    assert list((stdlib / "site-packages").iterdir()) == []  # only the mount point for site_packages=True
    for gone in ("test", "idlelib", "tkinter", "ensurepip", "dist-packages"):
        assert not (stdlib / gone).exists(), gone
    files = _files(built.path)
    assert not [f for f in files if ".opt-" in f.name or f.suffix == ".a"]
    assert not [f for f in (stdlib / "lib-dynload").iterdir() if f.name.startswith(("_test", "_tkinter", "xx"))]
    assert not [f for f in files if not f.is_symlink() and os.stat(f).st_mode & 0o022]  # nobody else writes


def test_the_copy_starts_with_only_its_own_files(built):
    """Run the copied interpreter through its copied loader, with only the copy's libraries: it
    starts and its sys.path is the copy's standard library."""
    host_of = {inside: host for host, inside in built.binds}
    loader = next(inside for inside in host_of if inside != PREFIX)
    prefix = Path(host_of[PREFIX])
    out = subprocess.run(
        [host_of[loader], "--library-path", str(prefix / "lib"), "--inhibit-cache", str(prefix / "bin" / f"python{VERSION}"),
         "-I", "-S", "-c", "import json, sys; print(json.dumps(sys.path))"],
        capture_output=True, text=True, env={}, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert all(p.startswith(str(prefix)) for p in eval(out.stdout)), out.stdout  # noqa: S307 - our own output


def test_a_built_root_is_reused_and_concurrent_builders_agree(tmp_path: Path):
    private_root.cache_clear()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(private_root(tmp_path / "r"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    private_root.cache_clear()
    again = private_root(tmp_path / "r")
    private_root.cache_clear()
    assert len(results) == 2 and results[0].path == results[1].path == again.path
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [again.path.name]  # no build left behind


def test_a_root_dir_others_can_write_is_refused(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    private_root.cache_clear()
    with pytest.raises(SandboxUnavailable, match="writable by nobody else"):
        private_root(shared)
