"""Per-run cgroups (v1 or v2): memory, pids and CPU limits, whole-tree kill, peak memory, removal."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from kgot_errors.errors import SandboxError, SandboxUnavailable
from kgot_errors.sandbox._limits import Limits

__all__ = ["CgroupHost", "RunCgroup", "detect_cgroups", "leftover_groups", "remove_stale_groups"]

log = logging.getLogger(__name__)

REQUIRED = ("memory", "pids", "cpu")
GROUP_NAME = "kgot-sandbox"
_PERIOD_US = 100_000


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, super options) for every cgroup mount, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts, rparts = left.split(), right.split()
            if len(rparts) >= 3 and rparts[0] in ("cgroup", "cgroup2"):
                opts = set(rparts[2].split(",")) | set(parts[5].split(","))
                found.append((parts[4].replace("\\040", " "), rparts[0], opts))
    return found


def _make_base(candidates: list[Path]) -> Path | None:
    for base in candidates:
        try:
            base.mkdir(exist_ok=True)
            probe = base / f"probe-{secrets.token_hex(4)}"
            probe.mkdir()
            probe.rmdir()
            return base
        except OSError:
            continue
    return None


@dataclass(frozen=True, slots=True)
class CgroupHost:
    """Where this process may create per-run cgroups: `bases` maps controller -> parent dir."""

    version: int
    bases: dict[str, Path]

    def new_run(self, limits: Limits) -> RunCgroup:
        return RunCgroup.create(self, limits)


def detect_cgroups(parent: str | None = None) -> CgroupHost:
    """Find a writable cgroup tree with memory, pids and cpu controllers, or raise SandboxUnavailable.

    cgroup v1: a `kgot-sandbox` group at the root of each controller's hierarchy (as docker's
    own groups; never inside a group some supervisor owns, so its cleanup is not blocked).
    cgroup v2: under `parent` (a delegated group) when given, else under the root of the
    unified hierarchy (needs root).
    """
    mounts = _mounts()
    v1 = {}
    for point, fstype, opts in mounts:
        if fstype == "cgroup":
            for ctrl in ("memory", "pids", "cpu", "freezer"):
                if ctrl in opts and ctrl not in v1:
                    v1[ctrl] = Path(point)
    if parent is None and all(c in v1 for c in REQUIRED):
        bases: dict[str, Path] = {}
        for ctrl, hierarchy in v1.items():
            base = _make_base([hierarchy / GROUP_NAME])
            if base is None:
                if ctrl in REQUIRED:
                    raise SandboxUnavailable(
                        f"cgroup v1 {ctrl} hierarchy at {hierarchy} is not writable: run as root "
                        "(the sandbox needs per-run memory/pids/cpu cgroups)"
                    )
                continue
            bases[ctrl] = base
        if "memory" in bases:
            try:
                _write(bases["memory"] / "memory.use_hierarchy", "1")
            except OSError:
                pass
        return CgroupHost(1, bases)
    for point, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        root = Path(point)
        try:
            available = set(_read(root / "cgroup.controllers").split())
        except OSError:
            continue
        missing = [c for c in REQUIRED if c not in available]
        if missing:
            continue
        if parent is not None:
            base = Path(parent)
            if not base.is_absolute():
                base = root / parent
            delegated = [base]
        else:
            delegated = [root / GROUP_NAME]
        made = _make_base(delegated)
        if made is None:
            raise SandboxUnavailable(
                f"cannot create cgroups under {delegated[0]}: run as root, or pass a delegated "
                "cgroup v2 directory (e.g. from `systemd-run --user --scope -p Delegate=yes`)"
            )
        try:
            if parent is None:
                _enable_v2(root)
            _enable_v2(made)
        except OSError as exc:
            raise SandboxUnavailable(
                f"cannot enable memory/pids/cpu controllers for {made}: {exc}"
            ) from exc
        return CgroupHost(2, {"": made})
    have = sorted(set(v1)) or "none"
    raise SandboxUnavailable(
        f"no writable cgroup hierarchy with memory, pids and cpu controllers (v1 has {have}); "
        "the bwrap sandbox needs them to bound memory, processes and CPU"
    )


def _enable_v2(group: Path) -> None:
    enabled = set(_read(group / "cgroup.subtree_control").split())
    want = [c for c in REQUIRED if c not in enabled]
    if want:
        _write(group / "cgroup.subtree_control", " ".join("+" + c for c in want))


class RunCgroup:
    """One run's cgroup(s). Join by writing a pid to every `procs_files` entry."""

    def __init__(self, host: CgroupHost, dirs: dict[str, Path]) -> None:
        self.host = host
        self.dirs = dirs

    @classmethod
    def create(cls, host: CgroupHost, limits: Limits) -> RunCgroup:
        name = f"run-{os.getpid()}-{secrets.token_hex(6)}"
        dirs: dict[str, Path] = {}
        group = cls(host, dirs)
        try:
            for ctrl, base in host.bases.items():
                path = base / name
                path.mkdir()
                dirs[ctrl] = path
            group._apply(limits)
        except OSError as exc:
            group.remove()
            raise SandboxError(f"cannot set up the run's cgroup: {exc}") from exc
        return group

    def _apply(self, limits: Limits) -> None:
        quota = max(1000, int(limits.cpus * _PERIOD_US))
        if self.host.version == 1:
            mem, pids, cpu = self.dirs["memory"], self.dirs["pids"], self.dirs["cpu"]
            _write(mem / "memory.limit_in_bytes", str(limits.memory))
            if (mem / "memory.kmem.tcp.limit_in_bytes").exists():  # v1 keeps TCP buffers out of the limit above
                _write(mem / "memory.kmem.tcp.limit_in_bytes", str(limits.memory))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory))
            else:
                _write(mem / "memory.swappiness", "0")
            _write(pids / "pids.max", str(limits.pids))
            _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(quota))
        else:
            g = self.dirs[""]
            _write(g / "memory.max", str(limits.memory))
            if (g / "memory.swap.max").exists():
                _write(g / "memory.swap.max", "0")
            _write(g / "pids.max", str(limits.pids))
            _write(g / "cpu.max", f"{quota} {_PERIOD_US}")

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def _procs_dir(self) -> Path:
        return self.dirs["pids"] if self.host.version == 1 else self.dirs[""]

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in _read(self._procs_dir() / "cgroup.procs").split()]
        except OSError:
            return []

    def kill(self, patience: float = 5.0) -> bool:
        """SIGKILL every process in the group until it is empty; True when it is."""
        d = self._procs_dir()
        if self.host.version == 2 and (d / "cgroup.kill").exists():
            try:
                _write(d / "cgroup.kill", "1")
            except OSError:
                pass
        freezer = self.dirs.get("freezer")
        end = time.monotonic() + patience
        pause = 0.001
        while True:
            pids = self.pids()
            if not pids:
                return True
            if freezer is not None:
                _try_write(freezer / "freezer.state", "FROZEN")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if freezer is not None:
                _try_write(freezer / "freezer.state", "THAWED")
            if time.monotonic() > end:
                log.error("processes %s survive SIGKILL in %s", pids[:10], d)
                return False
            time.sleep(pause)  # dying processes leave the group within a few ms
            pause = min(pause * 2, 0.05)

    def peak_memory(self) -> int | None:
        """Peak memory of the run; on v1 plus its TCP buffers' peak (v1 counts them apart; v2 charges
        socket memory to memory.peak itself)."""
        name = "memory.max_usage_in_bytes" if self.host.version == 1 else "memory.peak"
        d = self.dirs.get("memory") or self.dirs.get("")
        try:
            peak = int(_read(d / name).split()[0]) if d else None
        except (OSError, ValueError, IndexError):
            return None
        if peak is not None and self.host.version == 1:
            try:
                peak += int(_read(d / "memory.kmem.tcp.max_usage_in_bytes").split()[0])  # type: ignore[operator]
            except (OSError, ValueError, IndexError):
                pass
        return peak

    def oom_kills(self) -> int:
        d = self.dirs.get("memory") or self.dirs.get("")
        name = "memory.oom_control" if self.host.version == 1 else "memory.events"
        try:
            for line in _read(d / name).splitlines():  # type: ignore[operator]
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError, TypeError):
            pass
        return 0

    def remove(self) -> bool:
        """Kill what is left and remove the directories; True when nothing is left behind."""
        if self.pids():
            self.kill()
        clean = True
        for ctrl, path in list(self.dirs.items()):
            for attempt in range(200):
                try:
                    path.rmdir()
                    del self.dirs[ctrl]
                    break
                except FileNotFoundError:
                    del self.dirs[ctrl]
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 199:
                        log.error("cannot remove cgroup %s: %s", path, exc)
                        clean = False
                        break
                    time.sleep(0.01)
        return clean


def _try_write(path: Path, value: str) -> None:
    try:
        _write(path, value)
    except OSError:
        pass


def leftover_groups(host: CgroupHost) -> list[Path]:
    """Run groups under this host's bases (for tests and cleanup)."""
    found = []
    for base in host.bases.values():
        try:
            found += [p for p in base.iterdir() if p.is_dir() and p.name.startswith("run-")]
        except OSError:
            pass
    return found


def remove_stale_groups(host: CgroupHost) -> int:
    """Kill and remove run groups whose creating process (run-<pid>-...) no longer exists."""
    removed = 0
    for path in leftover_groups(host):
        owner = path.name.split("-")[1]
        if owner.isdigit() and os.path.exists(f"/proc/{owner}"):
            continue
        try:
            for pid in _read(path / "cgroup.procs").split():
                os.kill(int(pid), signal.SIGKILL)
            for _ in range(100):
                try:
                    path.rmdir()
                    removed += 1
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.01)
        except OSError as exc:
            log.warning("cannot remove stale cgroup %s: %s", path, exc)
    return removed
