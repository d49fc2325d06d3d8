"""A real PostgreSQL server for tests: initdb + pg_ctl in a temporary directory.

The server listens on a unix socket (superuser, trust) and on 127.0.0.1 with TLS only and
scram-sha-256 for an application role whose password is generated at start, so code under test
connects the way it does on AWS: host, port, user, password, sslmode=verify-full. Its certificate
names 127.0.0.1 (IP) and localhost (DNS), signed by the session's test CA (tests.support.tls):
clients pass that CA as sslrootcert (`tls_environment` for the Lambdas' DB_SSLMODE / DB_SSLROOTCERT).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from tests.support.tls import SERVER_NAMES, CertificateAuthority, session_ca

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "schema" / "payments.sql"


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL server binaries (Debian package postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; `stop()` ends it and removes its directory."""

    root: Path
    port: int
    app_user: str
    app_password: str
    ca_certificate: str = ""  # the CA file that verifies this server's certificate
    run_as: tuple[str, ...] = ()  # prefix that runs pg_ctl as the cluster's owner


    host = "127.0.0.1"

    @property
    def socket_dir(self) -> str:
        return str(self.root / "run")

    def admin_connect(self, dbname: str = "postgres"):
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def tls_environment(self) -> dict[str, str]:
        """The Lambdas' TLS settings for this server: verified against the test CA."""
        return {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": self.ca_certificate}

    def app_connect(self, dbname: str, sslmode: str = "verify-full"):
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.app_user,
            password=self.app_password,
            dbname=dbname,
            sslmode=sslmode,
            sslrootcert=self.ca_certificate,
        )

    def create_database(self, name: str, schema_sql: str | None = None) -> str:
        """(Re)create database `name` owned by the app role, optionally loading SQL into it."""
        self.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.admin_execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(self.app_user))
        )
        if schema_sql:
            self.execute(name, schema_sql)
        return name

    def create_payment_database(self, name: str) -> str:
        """A database loaded with the reference payment schema (schema/payments.sql)."""
        return self.create_database(name, SCHEMA_SQL.read_text())

    def admin_execute(self, statement, params=None, dbname: str = "postgres") -> None:
        """Run one statement as the superuser, outside any transaction block."""
        conn = self.admin_connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
        finally:
            conn.close()

    def execute(self, dbname: str, statements: str, params=None) -> None:
        """Run SQL as the app role (so created objects belong to it)."""
        conn = self.app_connect(dbname)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statements, params)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients cut off, data kept); `start()` brings it back."""
        self._pg_ctl("-w", "-m", "fast", "stop", check=False)

    def start(self) -> None:
        self._pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "start", check=True)

    def _pg_ctl(self, *args: str, check: bool) -> None:
        subprocess.run([*self.run_as, _pg_bin("pg_ctl"), "-D", str(self.root / "data"), *args],
                       check=check, capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(root: Path | None = None, extra_conf: dict[str, str] | None = None, *,
                   ca: CertificateAuthority | None = None, names: tuple[str, ...] = SERVER_NAMES) -> PostgresServer:
    """initdb a fresh cluster with TLS and start it; its certificate names `names`, signed by `ca`
    (default: the session's test CA). PostgreSQL refuses to run as root, so as root the cluster is
    owned by and run as the `postgres` system user when that exists."""
    ca = ca or session_ca()
    root = Path(root or tempfile.mkdtemp(prefix="pgtest-"))
    data, run = root / "data", root / "run"
    run.mkdir(parents=True, exist_ok=True)
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(run, "postgres")
    subprocess.run(
        as_user + [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
    )
    ca.issue(data / "server.key", data / "server.crt", names)
    if as_user:
        for name in ("server.key", "server.crt"):
            shutil.chown(data / name, "postgres", "postgres")
    port = _free_port()
    conf = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{run}'",
        "ssl": "on",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "256MB",
        "work_mem": "64MB",
        "maintenance_work_mem": "256MB",
        **(extra_conf or {}),
    }
    with open(data / "postgresql.conf", "a") as handle:
        handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
    )
    server = PostgresServer(root=root, port=port, app_user="payments_app", app_password=secrets.token_urlsafe(24),
                            ca_certificate=str(ca.certificate), run_as=tuple(as_user))
    server.start()
    server.admin_execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(sql.Identifier(server.app_user)),
        (server.app_password,),
    )
    return server
