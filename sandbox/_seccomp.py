"""A small seccomp filter for the bwrap backend: no new namespaces, mounts, ptrace, keyrings, bpf or io_uring."""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["seccomp_program"]

# struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080

# name: (x86_64, aarch64). Most need capabilities the code does not have anyway; this is the second
# line: a kernel bug behind one of these calls stays out of reach.
_BLOCKED = {
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "open_by_handle_at": (304, 265), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "mount_setattr": (442, 442), "swapon": (167, 224), "swapoff": (168, 225),
    "reboot": (169, 142), "syslog": (103, 116), "acct": (163, 89),
}
_CLONE = (56, 220)
_CLONE3 = 435
_ARCH = {"x86_64": (0xC000003E, 0), "amd64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1), "arm64": (0xC00000B7, 1)}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The raw BPF program for bwrap --seccomp, or None on an architecture without a table here."""
    arch = _ARCH.get((machine or platform.machine()).lower())
    if arch is None:
        return None
    audit_arch, col = arch
    deny = _ERRNO | errno.EPERM
    prog = [
        _ins(_LD_W_ABS, 4),  # seccomp_data.arch
        _ins(_JEQ, audit_arch, 1, 0),
        _ins(_RET, deny),  # foreign ABI (i386 / compat): refused
        _ins(_LD_W_ABS, 0),  # seccomp_data.nr
    ]
    if col == 0:  # x32 ABI shares the arch value: refuse its syscall numbers
        prog += [_ins(_JGE, 0x40000000, 0, 1), _ins(_RET, deny)]
    for numbers in _BLOCKED.values():
        prog += [_ins(_JEQ, numbers[col], 0, 1), _ins(_RET, deny)]
    prog += [_ins(_JEQ, _CLONE3, 0, 1), _ins(_RET, _ERRNO | errno.ENOSYS)]  # libc falls back to clone
    prog += [
        _ins(_JEQ, _CLONE[col], 0, 3),
        _ins(_LD_W_ABS, 16),  # low half of args[0] (flags) on little-endian
        _ins(_JSET, _NS_FLAGS, 0, 1),
        _ins(_RET, deny),
        _ins(_RET, _ALLOW),
    ]
    return b"".join(prog)
