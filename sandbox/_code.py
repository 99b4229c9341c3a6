"""How a program reaches the interpreter: `python -I -c CODE`, chunked through argv when it is large."""

from __future__ import annotations

from kgot_errors.errors import SandboxError

__all__ = ["MAX_CODE_BYTES", "check_files", "python_argv"]

_ARG_BYTES = 100_000  # below the kernel's 128 KiB per-argument limit
MAX_CODE_BYTES = 1_500_000  # below the usual 2 MiB argv total
_BOOT = (
    "import sys as _s\n_c=''.join(_s.argv[1:])\n_s.argv[1:]=[]\ndel _s\n"
    "exec(compile(_c,'<string>','exec'))\n"
)


def python_argv(python: str, code: str, *, site: bool = False) -> list[str]:
    """argv that runs `code` as `__main__` in isolated mode (-I: no env, no user site, no cwd on path).

    Without `site` (-S) only the standard library is importable and no host .pth file runs.
    """
    if "\x00" in code:
        raise SandboxError("code contains a NUL character and cannot be passed to the interpreter")
    base = [python, "-I", "-B", *([] if site else ["-S"]), "-c"]
    size = len(code.encode("utf-8", "surrogatepass"))
    if size <= _ARG_BYTES:
        return [*base, code]
    if size > MAX_CODE_BYTES:
        raise SandboxError(f"code is {size} bytes; the sandbox accepts at most {MAX_CODE_BYTES}")
    step = _ARG_BYTES // 4  # characters, at most 4 UTF-8 bytes each
    return [*base, _BOOT, *(code[i : i + step] for i in range(0, len(code), step))]


def check_files(files: dict[str, bytes]) -> None:
    """Scratch file names must be plain relative names inside the scratch dir."""
    for name in files:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in name:
            raise SandboxError(f"bad scratch file name {name!r}: use a relative path without '..'")
