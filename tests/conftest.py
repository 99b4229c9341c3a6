"""Test-wide guards: strict checkpoint serialisation, no provider credentials, no traffic off loopback."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"  # before anything imports langgraph's serialiser
_CI_CONTROLS = {"KGOT_REQUIRE_SERVICES", "KGOT_TEST_POSTGRES_URL"}  # set by .ci/run for the tests themselves
for _name in list(os.environ):
    if _name.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_", "OPENROUTER_", "KGOT_")) and _name not in _CI_CONTROLS:
        del os.environ[_name]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if not isinstance(address, tuple):  # unix sockets are local
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname other than localhost would need DNS: refuse


def _guarded(real):
    def connect(self: socket.socket, address: object):  # type: ignore[no-untyped-def]
        if not _allowed(address):
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return real(self, address)

    return connect


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An isolated KGOT data dir, so the default SQLite store never touches the user's home."""
    monkeypatch.setenv("KGOT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _service_missing(what: str) -> None:
    """Skip on a developer machine without the service; fail in CI, which must provide it."""
    if os.environ.get("KGOT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required here (KGOT_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable on this machine")


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL on loopback: CI's (KGOT_TEST_POSTGRES_URL), or one this session starts itself."""
    url = os.environ.get("KGOT_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import shutil
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
    has_pg = shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if os.geteuid() != 0 or not has_pg or not shutil.which("runuser"):
        _service_missing("PostgreSQL (set KGOT_TEST_POSTGRES_URL or run as root with PostgreSQL installed)")
    import tempfile

    state = Path(tempfile.mkdtemp(prefix="kgot-pg-"))  # not under pytest's 0700 tmp: postgres must reach it
    state.chmod(0o755)
    out = subprocess.run(["bash", str(script), "start", str(state)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        _service_missing(f"PostgreSQL ({out.stderr.strip()[-300:]})")
    url = out.stdout.strip().split("=", 1)[1]
    try:
        yield url
    finally:
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
