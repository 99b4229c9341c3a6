"""Compiles the seccomp policy (_policy) for each backend: a raw BPF program for bwrap, a profile for docker."""

from __future__ import annotations

import errno
import json
import platform
import struct

from kgot_errors.sandbox._policy import DENIED, LAST_REVIEWED, RULES, ArgRule
from kgot_errors.sandbox._syscalls import NUMBERS

__all__ = ["docker_profile", "seccomp_program"]

# struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_LD_W_ABS, _JEQ, _JGT, _JGE, _JSET, _RET = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_ARCH = {"x86_64": ("x86_64", 0xC000003E, "SCMP_ARCH_X86_64"), "amd64": ("x86_64", 0xC000003E, "SCMP_ARCH_X86_64"),
         "aarch64": ("aarch64", 0xC00000B7, "SCMP_ARCH_AARCH64"), "arm64": ("aarch64", 0xC00000B7, "SCMP_ARCH_AARCH64")}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_low(index: int) -> bytes:
    return _ins(_LD_W_ABS, 16 + 8 * index)  # low half of seccomp_data.args[index] (little-endian)


def _rule_block(rule: ArgRule) -> list[bytes]:
    """Instructions for one rule, entered with the call matched; every path ends in a RET."""
    deny = _ins(_RET, _ERRNO | rule.errno)
    if rule.kind == "noop":
        return [_ins(_RET, _ERRNO | 0)]
    if rule.kind == "mask0":
        return [_arg_low(rule.arg), _ins(_JSET, rule.values[0], 0, 1), deny, _ins(_RET, _ALLOW)]
    if rule.kind == "eq":
        n = len(rule.values)
        tests = [_ins(_JEQ, v, n - i, 0) for i, v in enumerate(rule.values)]
        return [_arg_low(rule.arg), *tests, deny, _ins(_RET, _ALLOW)]
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The raw BPF program for bwrap --seccomp, or None on an architecture without a table here."""
    arch = _ARCH.get((machine or platform.machine()).lower())
    if arch is None:
        return None
    table, audit_arch, _ = arch
    numbers = NUMBERS[table]
    prog = [
        _ins(_LD_W_ABS, 4),  # seccomp_data.arch
        _ins(_JEQ, audit_arch, 1, 0),
        _ins(_RET, _ERRNO | errno.EPERM),  # foreign ABI (i386 / compat): refused
        _ins(_LD_W_ABS, 0),  # seccomp_data.nr
    ]
    if table == "x86_64":  # x32 ABI shares the arch value: refuse its syscall numbers
        prog += [_ins(_JGE, 0x40000000, 0, 1), _ins(_RET, _ERRNO | errno.EPERM)]
    prog += [_ins(_JGT, LAST_REVIEWED, 0, 1), _ins(_RET, _ERRNO | errno.ENOSYS)]  # newer than the review
    for name, err in DENIED.items():
        if name in numbers:
            prog += [_ins(_JEQ, numbers[name], 0, 1), _ins(_RET, _ERRNO | err)]
    for rule in RULES:
        if rule.name in numbers:
            block = _rule_block(rule)
            prog += [_ins(_JEQ, numbers[rule.name], 0, len(block)), *block]
    prog.append(_ins(_RET, _ALLOW))
    return b"".join(prog)


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(64) if mask >> i & 1]


def _profile_rules(rule: ArgRule) -> list[dict[str, object]]:
    """libseccomp rules for one ArgRule (calls that match no rule get the default errno, ENOSYS)."""
    names = [rule.name]
    if rule.kind == "noop":
        return [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]
    if rule.kind == "eq":
        values = [*rule.values, *(v | 0xFFFFFFFF00000000 for v in rule.values if v & 0x80000000)]  # int args sign-extended
        found: list[dict[str, object]] = [
            {"names": names, "action": "SCMP_ACT_ALLOW", "args": [{"index": rule.arg, "value": v, "op": "SCMP_CMP_EQ"}]}
            for v in values
        ]
        if len(rule.values) == 1:
            found.append({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno,
                          "args": [{"index": rule.arg, "value": rule.values[0], "op": "SCMP_CMP_NE"}]})
        return found
    if rule.kind == "mask0":
        mask = rule.values[0]
        found = [{"names": names, "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": rule.arg, "value": mask, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
        for bit in _bits(mask):
            found.append({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno,
                          "args": [{"index": rule.arg, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]})
        return found
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def docker_profile(machine: str | None = None) -> str:
    """The docker seccomp profile (JSON) of the same policy: an allowlist of every reviewed call except the
    refused ones, the argument rules, ENOSYS for everything else (other ABIs, calls newer than the review)."""
    arch = _ARCH.get((machine or platform.machine()).lower())
    tables = [NUMBERS[arch[0]]] if arch else list(NUMBERS.values())
    ruled = {r.name for r in RULES}
    known = sorted({n for t in tables for n, nr in t.items() if nr <= LAST_REVIEWED})
    allowed = [n for n in known if n not in DENIED and n not in ruled]
    by_errno: dict[int, list[str]] = {}
    for name, err in DENIED.items():
        by_errno.setdefault(err, []).append(name)
    syscalls: list[dict[str, object]] = [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    syscalls += [{"names": sorted(names), "action": "SCMP_ACT_ERRNO", "errnoRet": err} for err, names in by_errno.items()]
    for rule in RULES:
        syscalls += _profile_rules(rule)
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "architectures": [arch[2]] if arch else ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": syscalls,
    }
    return json.dumps(profile, separators=(",", ":"))
