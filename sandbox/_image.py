"""Builds the docker sandbox image from the host's own Python, with `docker import` (no registry, no pull)."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from kgot_errors.errors import SandboxError
from kgot_errors.sandbox._docker import DEFAULT_IMAGE, LABEL, DockerBackend

__all__ = ["build_image", "rootfs_tar"]

log = logging.getLogger(__name__)

_SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "unittest/test"}
_PASSWD = b"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/sandbox:/usr/sbin/nologin\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _shared_libs(binaries: list[str]) -> set[str]:
    """Every library path `ldd` reports for these ELF files (as the loader asks for it)."""
    found: set[str] = set()
    for chunk in range(0, len(binaries), 200):
        proc = subprocess.run(["ldd", *binaries[chunk : chunk + 200]], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            m = _LDD_LINE.search(line)
            if m:
                found.add(m.group(1))
    return found


class _Tar:
    """Adds host paths to a tar under the same names, creating parent dirs and symlinks once."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.seen: set[str] = set()

    def _add(self, name: str, info: tarfile.TarInfo, data: Any = None) -> None:
        self.dir(os.path.dirname(name))
        self.tar.addfile(info, data)
        self.seen.add(name)

    def dir(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        if not name or name in self.seen:
            return
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self._add(name, info)

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name.strip("/"))
        info.size, info.mode = len(data), mode
        self._add(info.name, info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if name not in self.seen:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            self._add(name, info)

    def host(self, path: str) -> None:
        """Add a host file under its own path, following symlinks component by component."""
        path = os.path.normpath(path)
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur = cur + "/" + part
            if os.path.islink(cur):
                target = os.readlink(cur)
                self.symlink(cur, target)
                rest = "/".join(parts[i + 1 :])
                resolved = os.path.normpath(os.path.join(os.path.dirname(cur), target))
                self.host(resolved + ("/" + rest if rest else ""))
                return
        name = path.strip("/")
        if name in self.seen:
            return
        info = self.tar.gettarinfo(path, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode &= 0o755
        if info.isreg():
            with open(path, "rb") as f:
                self._add(name, info, f)
        else:
            self._add(name, info)


def rootfs_tar(dest: str, *, python: str | None = None) -> None:
    """Write a minimal root filesystem tar: the host's Python (stdlib only), its libraries, /bin/sh."""
    exe = os.path.realpath(python or getattr(sys, "_base_executable", None) or sys.executable)
    prefix = Path(exe).parent.parent
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = prefix / "lib" / version
    if not (stdlib / "os.py").exists():
        raise SandboxError(f"no standard library at {stdlib}")
    with tarfile.open(dest, "w") as raw:
        tar = _Tar(raw)
        for top in ("bin", "sbin", "lib", "lib64"):
            if os.path.islink("/" + top):
                tar.symlink(top, os.readlink("/" + top))
        for d, mode in (("tmp", 0o1777), ("sandbox", 0o777), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
                        ("etc", 0o755), ("root", 0o755), ("usr/local/bin", 0o755)):
            tar.dir(d, mode)
        for parent in reversed(list(prefix.parents)):
            tar.dir(str(parent), 0o755)
        tar.data("etc/passwd", _PASSWD)
        tar.data("etc/group", _GROUP)
        tar.data("etc/hosts", b"127.0.0.1 localhost\n")
        elves = [exe]
        tar.host(exe)
        for lib in (prefix / "lib").glob("libpython*.so*"):
            tar.host(str(lib))
            elves.append(str(lib))
        for root, dirs, names in os.walk(stdlib):
            rel = os.path.relpath(root, stdlib)
            dirs[:] = [d for d in dirs if (d if rel == "." else f"{rel}/{d}") not in _SKIP_STDLIB
                       and not d.startswith("config-")]
            for n in names:
                p = os.path.join(root, n)
                if os.path.isfile(p):
                    tar.host(p)
                    if n.endswith(".so"):
                        elves.append(p)
        sh = shutil.which("dash") or "/bin/sh"
        elves.append(os.path.realpath(sh))
        tar.host(os.path.realpath(sh))
        tar.symlink("usr/bin/sh" if os.path.islink("/bin") else "bin/sh", os.path.realpath(sh))
        for needed in sorted(_shared_libs(elves)):
            tar.host(needed)
        for name in ("python3", "python", version):
            tar.symlink(f"usr/local/bin/{name}", exe)


def build_image(tag: str = DEFAULT_IMAGE, *, python: str | None = None, base_url: str | None = None,
                client: Any = None) -> str:
    """Build the sandbox image with `docker import` from a locally assembled root fs; returns its id.

    Never pulls from a registry. The daemon is DOCKER_HOST / the default socket unless `base_url`
    or `client` is given.
    """
    docker_client = DockerBackend(image=tag, base_url=base_url, client=client).client()
    repo, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    with tempfile.TemporaryDirectory(prefix="kgot-image-") as tmp:
        path = os.path.join(tmp, "rootfs.tar")
        rootfs_tar(path, python=python)
        log.info("importing %s (%d MiB) as %s", path, os.path.getsize(path) >> 20, tag)
        changes = [
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV LANG=C.UTF-8",
            "USER 65534:65534",
            "WORKDIR /sandbox",
            f"LABEL {LABEL}.image=1",
            'CMD ["python3"]',
        ]
        try:
            docker_client.api.import_image_from_file(path, repository=repo, tag=version, changes=changes)
            image = docker_client.images.get(tag)
        except Exception as exc:
            raise SandboxError(f"docker import of the sandbox image failed: {exc}") from exc
    return str(image.id)
