"""The one seccomp policy of both backends: refused calls, argument rules, and the newest call number reviewed."""

from __future__ import annotations

import errno
from dataclasses import dataclass

__all__ = ["AF_UNIX", "ArgRule", "DENIED", "LAST_REVIEWED", "NS_FLAGS", "PERSONALITY_OK", "RULES", "RWF_NOWAIT"]

# Calls refused outright: name -> errno. Most already need capabilities the code never has; this is the
# second line, so a kernel bug behind one of them stays out of reach. ENOSYS where a library may fall back.
_EPERM, _ENOSYS = errno.EPERM, errno.ENOSYS
DENIED: dict[str, int] = {
    # namespaces, mounts, roots
    **dict.fromkeys(("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
                     "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "open_tree_attr", "statmount",
                     "listmount"), _EPERM),
    # other processes' memory and identity
    **dict.fromkeys(("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
                     "process_mrelease"), _EPERM),
    # kernel objects, modules, machine state
    **dict.fromkeys(("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                     "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon", "swapoff",
                     "reboot", "syslog", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "vhangup", "uselib",
                     "_sysctl", "sysfs", "ustat", "iopl", "ioperm", "modify_ldt", "settimeofday", "clock_settime",
                     "clock_adjtime", "name_to_handle_at", "open_by_handle_at", "nfsservctl"), _EPERM),
    # NUMA placement (set_mempolicy / mbind / page moves): host memory layout, noisy neighbours
    **dict.fromkeys(("set_mempolicy", "mbind", "migrate_pages", "move_pages", "set_mempolicy_home_node"), _EPERM),
    # secret memory pinned outside the memory limit's view
    "memfd_secret": _ENOSYS,
    # io_uring runs calls (OPENAT ...) the filter never sees
    **dict.fromkeys(("io_uring_setup", "io_uring_enter", "io_uring_register"), _ENOSYS),
    # watching files others use: inotify / fanotify on shared read-only files, page-cache state
    **dict.fromkeys(("inotify_init", "inotify_init1", "fanotify_init", "cachestat"), _ENOSYS),
    # flock on a shared read-only file is a signal between concurrent runs (fcntl locks need a writable file)
    "flock": errno.ENOLCK,
    "clone3": _ENOSYS,  # its flags sit in memory the filter cannot read; libc falls back to clone
}

AF_UNIX = 1
RWF_NOWAIT = 0x00000008
NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
PERSONALITY_OK = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # PER_LINUX(32), UNAME26, and the query


@dataclass(frozen=True, slots=True)
class ArgRule:
    """A call allowed only when argument `arg` passes: `kind` is one of
    'eq'    allowed when arg == one of `values`, else errno
    'mask0' allowed when arg & values[0] == 0, else errno
    'noop'  never executed: returns 0 (`values` unused)
    """

    name: str
    kind: str
    arg: int
    values: tuple[int, ...]
    errno: int


RULES: tuple[ArgRule, ...] = (
    # Only local sockets: no AF_INET/AF_INET6 (the network is off: no loopback buffers outside the memory
    # limit), no AF_NETLINK (host uevents), no AF_VSOCK (VM-wide ports), no AF_PACKET, nothing newer.
    ArgRule("socket", "eq", 0, (AF_UNIX,), errno.EAFNOSUPPORT),
    ArgRule("socketpair", "eq", 0, (AF_UNIX,), errno.EAFNOSUPPORT),
    # RWF_NOWAIT reads tell cached from uncached pages of shared files
    ArgRule("preadv2", "mask0", 5, (RWF_NOWAIT,), errno.EOPNOTSUPP),
    ArgRule("pwritev2", "mask0", 5, (RWF_NOWAIT,), errno.EOPNOTSUPP),
    # fadvise(DONTNEED) evicts shared files from the page cache: advice is accepted and ignored
    ArgRule("fadvise64", "noop", 0, (), 0),
    ArgRule("personality", "eq", 0, PERSONALITY_OK, errno.ENOSYS),
    ArgRule("clone", "mask0", 0, (NS_FLAGS,), errno.EPERM),
)

# Calls numbered above this (x86_64 / asm-generic numbering, Linux 6.17) were not reviewed: ENOSYS.
LAST_REVIEWED = 469
