"""Shared fixtures: a real PostgreSQL server and a moto server, each started once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each Lambda folder is the root of its own zip; its package has a distinct name
# (payment_api, payment_validation, payment_rollback), so the folders can share sys.path.
for lambda_root in sorted((ROOT / "lib" / "lambda").iterdir()):
    if lambda_root.is_dir() and str(lambda_root) not in sys.path:
        sys.path.insert(0, str(lambda_root))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.moto_server import MotoServer  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    server = start_postgres()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def moto_server() -> MotoServer:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto server, with this process's boto3 pointed at it."""
    moto_server.reset()
    for name, value in moto_server.environment.items():
        monkeypatch.setenv(name, value)
    return moto_server
