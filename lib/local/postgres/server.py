"""A real PostgreSQL server on this machine: initdb + pg_ctl in a directory of its own.

The server listens on a unix socket (superuser, trust) and on 127.0.0.1 with TLS only and
scram-sha-256, so code connects the way it does on AWS: host, port, user, password,
sslmode=verify-full. Its certificate names 127.0.0.1 (IP) and localhost (DNS), signed by a CA of
lib/local/postgres/tls.py (the process's, unless one is given): clients pass that CA as sslrootcert
(`tls_environment` for the Lambdas' DB_SSLMODE / DB_SSLROOTCERT).

Everything lives under the server's root: data/ (the cluster), run/ (the socket) and server.log.
`remove()` deletes it all; `remove_data()` keeps server.log for whoever reads it afterwards.
PostgreSQL refuses to run as root, so as root the cluster is owned by and run as the `postgres`
system user.
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

from lib.local.postgres.tls import SERVER_NAMES, CertificateAuthority, session_ca

SCHEMA_SQL = Path(__file__).resolve().parents[3] / "schema" / "payments.sql"
RUN_AS_POSTGRES = ("runuser", "-u", "postgres", "--")
# Every server: nothing here outlives the machine, so durability across a crash of it is not paid for.
# Commits are asynchronous unless a caller sets synchronous_commit (a server crash then loses the
# last acknowledged commits, which the tests never look for).
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "ssl": "on",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "256MB",
    "log_line_prefix": "'%m [%p] %q%u@%d %a: '",
    "log_lock_waits": "on",
}
PG_HBA = ("local all all trust\n"
          "hostssl all all 127.0.0.1/32 scram-sha-256\n"
          "hostnossl all all 0.0.0.0/0 reject\n")


class PostgresSetupError(RuntimeError):
    """A server could not be made or started: the message names the step and what PostgreSQL said."""


def pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise PostgresSetupError(f"{name} not found: install the PostgreSQL server binaries "
                             "(Debian package postgresql; `make postgres`)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _run(command: list[str], what: str) -> None:
    process = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if process.returncode != 0:
        raise PostgresSetupError(f"{what} failed (exit {process.returncode}): "
                                 f"{(process.stderr or process.stdout).strip()[-2000:]}")


def _run_as() -> tuple[str, ...]:
    return RUN_AS_POSTGRES if os.geteuid() == 0 else ()


@dataclass
class PostgresServer:
    """A server under `root`, listening on `port`; `app_user` (when made) owns the databases
    `create_database` makes."""

    root: Path
    port: int
    ca: CertificateAuthority
    name: str = "postgres"  # what messages call it ("onprem", "aws")
    app_user: str = "payments_app"
    app_password: str = ""
    run_as: tuple[str, ...] = ()  # prefix that runs pg_ctl as the cluster's owner

    host = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> str:
        return str(self.root / "run")

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def ca_certificate(self) -> str:
        """The CA file that verifies this server's certificate."""
        return str(self.ca.certificate)

    def admin_connect(self, dbname: str = "postgres", *, timeout: int = 10):
        """The superuser over the unix socket, autocommit."""
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user="postgres", dbname=dbname,
                                connect_timeout=timeout)
        conn.autocommit = True
        return conn

    def tls_environment(self) -> dict[str, str]:
        """The Lambdas' TLS settings for this server: verified against its CA."""
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

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.run_as:
            self.log.touch()
            shutil.chown(self.log, "postgres")
        _run([*self.run_as, pg_binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "120", "-l", str(self.log),
              "start"], f"pg_ctl start ({self.name}, port {self.port}; log {self.log})")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (fast: clients cut off, data kept; immediate: no shutdown checkpoint either);
        `start()` brings it back."""
        self._pg_ctl("-w", "-m", mode, "stop", check=False)

    def _pg_ctl(self, *args: str, check: bool) -> None:
        subprocess.run([*self.run_as, pg_binary("pg_ctl"), "-D", str(self.data), *args],
                       check=check, capture_output=True)

    def remove(self) -> None:
        """Stop the server and delete its root, log included."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_data(self) -> None:
        """Stop the server and delete its data directory and socket; server.log stays."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def stop_leftover(root: Path) -> None:
    """Stop at once a server an interrupted run left running under `root`, if any."""
    data = Path(root) / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run([*_run_as(), pg_binary("pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
                       capture_output=True)


def start_postgres(root: Path | None = None, extra_conf: dict[str, str] | None = None, *,
                   ca: CertificateAuthority | None = None, names: tuple[str, ...] = SERVER_NAMES,
                   port: int | None = None, name: str = "postgres",
                   app_user: str | None = "payments_app") -> PostgresServer:
    """initdb a fresh cluster under `root` (default: a new temporary directory; a server an earlier
    run left there is stopped and removed) and start it on `port` (default: a free one) with TLS; its
    certificate names `names`, signed by `ca` (default: the process's CA). `extra_conf` adds to or
    overrides SETTINGS. `app_user`, unless None, is made a LOGIN CREATEDB role with a generated
    password (`app_connect`, `create_database`)."""
    ca = ca or session_ca()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    else:
        root = Path(root)
        if root.exists():
            stop_leftover(root)
            shutil.rmtree(root)
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise PostgresSetupError(f"port {port} on 127.0.0.1 is in use: the {name} server cannot listen there "
                                 "(another run? `ss -ltnp` shows who holds it)")
    data, run = root / "data", root / "run"
    run.mkdir(parents=True, exist_ok=True)
    as_user = _run_as()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(run, "postgres")
    _run([*as_user, pg_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
          "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], f"initdb ({name})")
    ca.issue(data / "server.key", data / "server.crt", names)
    if as_user:
        for file in ("server.key", "server.crt"):
            shutil.chown(data / file, "postgres", "postgres")
    conf = {"port": str(port), "unix_socket_directories": f"'{run}'", **SETTINGS, **(extra_conf or {})}
    with open(data / "postgresql.conf", "a") as handle:
        handle.write(f"\n# payment-migration: the {name} server\n")
        handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
    (data / "pg_hba.conf").write_text(PG_HBA)
    server = PostgresServer(root=root, port=port, ca=ca, name=name, app_user=app_user or "",
                            app_password=secrets.token_urlsafe(24) if app_user else "", run_as=as_user)
    server.start()
    if app_user:
        server.admin_execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(sql.Identifier(server.app_user)),
            (server.app_password,),
        )
    return server
