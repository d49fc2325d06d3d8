"""The rehearsal's two PostgreSQL servers: "on-prem" where config/local.toml says it listens, and
"Aurora" on a free port, both with TLS (certificates signed by a CA made for the run, so clients
verify the server: sslmode=verify-full), scram-sha-256 passwords, and logical replication on.

Each gets the payment database (schema/payments.sql, then schema/roles.sql, as the superuser, as
the master user would on Aurora), a generated password for every role of roles.sql, and the
publication the PostgreSQL logical replication stand-in subscribes to. PostgreSQL 15 lets only a
superuser manage subscriptions, so each server also gets `subscription_admin`, a superuser the
controller's postgres-logical driver manages subscriptions as (rehearsal only: on AWS, DMS tasks
replace them).

Everything lives under build/rehearsal/postgres/<side>/: the data directory (removed at the end)
and server.log (kept).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql

from lib.terraform import REPO_ROOT

SCHEMA_SQL = REPO_ROOT / "schema" / "payments.sql"
ROLES_SQL = REPO_ROOT / "schema" / "roles.sql"
# The roles of schema/roles.sql, each with a secret per side (lib/constructs/secrets.py).
ROLES = ("payment_app", "payment_validator", "payment_controller", "dms_source", "dms_target")
SUBSCRIPTION_ADMIN = "subscription_admin"
PUBLICATION = "payment_migration"
SCHEMA = "public"
TABLES = ("customers", "payments", "transactions", "audit_log")
LOGICAL_REPLICATION = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_logical_replication_workers": "8",
    "max_worker_processes": "16",
    "wal_receiver_status_interval": "1",
    "wal_retrieve_retry_interval": "200ms",
}


class DatabaseSetupError(Exception):
    pass


def pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise DatabaseSetupError(f"{name} not found: install the PostgreSQL server binaries (make postgres)")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], what: str) -> None:
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        raise DatabaseSetupError(f"{what} failed (exit {process.returncode}): "
                                 f"{(process.stderr or process.stdout).strip()[-2000:]}")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA made for one run; every server certificate it signs names 127.0.0.1 and localhost."""

    directory: Path

    @property
    def certificate(self) -> Path:
        return self.directory / "ca.crt"

    @classmethod
    def create(cls, directory: Path) -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-subj", "/CN=payment-migration rehearsal CA", "-keyout", str(directory / "ca.key"),
              "-out", str(ca.certificate)], "openssl: the rehearsal CA")
        os.chmod(ca.certificate, 0o644)  # the subscriber's server process verifies its publisher with it
        return ca

    def issue(self, key: Path, certificate: Path) -> None:
        request = certificate.with_suffix(".csr")
        extensions = certificate.with_suffix(".ext")
        extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
        _run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
              "-keyout", str(key), "-out", str(request)], "openssl: a server key")
        _run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(self.certificate),
              "-CAkey", str(self.directory / "ca.key"), "-CAcreateserial", "-days", "2",
              "-extfile", str(extensions), "-out", str(certificate)], "openssl: a server certificate")
        request.unlink()
        extensions.unlink()


@dataclass
class Server:
    """One running PostgreSQL server playing `side`, with its payment database `dbname`."""

    side: str
    root: Path
    port: int
    dbname: str
    ca: CertificateAuthority
    passwords: dict[str, str] = field(default_factory=lambda: {
        role: secrets.token_urlsafe(24) for role in (*ROLES, SUBSCRIPTION_ADMIN)})
    host: str = "127.0.0.1"
    run_as: tuple[str, ...] = ()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def admin(self, dbname: str | None = None):
        """The superuser over the unix socket, autocommit."""
        conn = psycopg2.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                                dbname=dbname or self.dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def connect(self, role: str, *, autocommit: bool = True):
        """TLS (verified) and a password, as an application connects."""
        conn = psycopg2.connect(**self.conninfo_params(role), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def conninfo_params(self, role: str) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "dbname": self.dbname, "user": role,
                "password": self.passwords[role], "sslmode": "verify-full",
                "sslrootcert": str(self.ca.certificate)}

    def query(self, statement: str, params=None) -> list[tuple]:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()

    def scalar(self, statement: str, params=None):
        return self.query(statement, params)[0][0]

    # ---- lifecycle ---------------------------------------------------------------------------
    def initdb(self) -> None:
        if self.root.exists():
            self.stop(mode="immediate")  # a server an interrupted run left behind
            shutil.rmtree(self.root)
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.run_as = ("runuser", "-u", "postgres", "--")
            for path in (self.root, self.socket_dir):
                shutil.chown(path, "postgres")
        _run([*self.run_as, pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
              "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], f"initdb ({self.side})")
        key, certificate = self.data / "server.key", self.data / "server.crt"
        self.ca.issue(key, certificate)
        if self.run_as:
            for path in (key, certificate):
                shutil.chown(path, "postgres")
        os.chmod(key, 0o600)
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "ssl": "on",
            "max_connections": "200",
            "fsync": "off",  # durability across a machine crash is not what is rehearsed
            "full_page_writes": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d %a: '",
            "log_lock_waits": "on",
            **LOGICAL_REPLICATION,
        }
        with open(self.data / "postgresql.conf", "a") as handle:
            handle.write(f"\n# payment-migration rehearsal: the {self.side} server\n")
            handle.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n")

    def start(self) -> None:
        if self.run_as:
            self.log.touch()
            shutil.chown(self.log, "postgres")
        _run([*self.run_as, pg_binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "120", "-l", str(self.log),
              "start"], f"pg_ctl start ({self.side}, port {self.port}; log {self.log})")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.run_as_for_existing(), pg_binary("pg_ctl"), "-D", str(self.data), "-w", "-m", mode,
                            "stop"], capture_output=True)

    def run_as_for_existing(self) -> tuple[str, ...]:
        return self.run_as or (("runuser", "-u", "postgres", "--") if os.geteuid() == 0 else ())

    def remove_data(self) -> None:
        """Stop the server and delete its data directory; server.log stays."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    # ---- the payment database ------------------------------------------------------------------
    def prepare(self) -> None:
        """The payment database: schema, roles (with this run's passwords), the publication."""
        from payment_cutover.postgres_logical import create_publication

        conn = self.admin("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        finally:
            conn.close()
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(SCHEMA_SQL.read_text())
                cur.execute(ROLES_SQL.read_text())
                for role in ROLES:
                    cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)),
                                (self.passwords[role],))
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD %s").format(
                    sql.Identifier(SUBSCRIPTION_ADMIN)), (self.passwords[SUBSCRIPTION_ADMIN],))
            create_publication(conn, PUBLICATION, SCHEMA, list(TABLES))
        finally:
            conn.close()

    def secret(self, role: str) -> dict[str, object]:
        """The value of this side's Secrets Manager secret for `role` (lib/constructs/secrets.py)."""
        return {"username": role, "password": self.passwords[role], "host": self.host, "port": self.port}


def start_server(side: str, root: Path, port: int, dbname: str, ca: CertificateAuthority) -> Server:
    if not port_is_free(port):
        raise DatabaseSetupError(f"port {port} on 127.0.0.1 is in use: the {side} server cannot listen there "
                                 "(another rehearsal? `ss -ltnp` shows who holds it)")
    server = Server(side=side, root=root, port=port, dbname=dbname, ca=ca)
    server.initdb()
    server.start()
    server.prepare()
    return server


def seed_customers(server: Server, count: int) -> list[str]:
    """Customers on `server` (the on-prem writer), created before replication starts: the full copy
    carries them to Aurora. The API has no customer endpoint; the application's onboarding would."""
    import uuid

    customers = [str(uuid.uuid4()) for _ in range(count)]
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            for index, customer in enumerate(customers):
                cur.execute("INSERT INTO customers (customer_id, external_ref, display_name, email) "
                            "VALUES (%s, %s, %s, %s)",
                            (customer, f"rehearsal-{index:04d}", f"Rehearsal customer {index}",
                             f"customer{index}@rehearsal.test"))
    finally:
        conn.close()
    return customers


def seed_legacy_payments(server: Server, customers: list[str], count: int) -> list[str]:
    """Payments the on-prem system already holds before the migration (not through the API)."""
    import uuid

    keys = [f"legacy-{index:06d}" for index in range(count)]
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            for index, key in enumerate(keys):
                payment = str(uuid.uuid4())
                cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                            "request_hash, status) VALUES (%s, %s, %s, 'EUR', %s, 'legacy', 'captured')",
                            (payment, customers[index % len(customers)], f"{10 + index % 90}.00", key))
                cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'imported')",
                            (payment,))
    finally:
        conn.close()
    return keys


def start_forward_replication(onprem: Server, aws: Server, slot_name: str, *, timeout_seconds: float = 120) -> float:
    """The forward direction as the operator starts the forward DMS task once (full load, then
    changes): a subscription on Aurora that copies every table, then streams from its slot on
    on-prem. Returns the seconds until it streams."""
    from payment_cutover.postgres_logical import PostgresLogicalReplication, conninfo, subscribe
    from payment_common.sides import FORWARD

    started = time.monotonic()
    admin = aws.admin()
    controller = onprem.connect("payment_controller")
    try:
        publisher = conninfo(**onprem.conninfo_params("dms_source"))
        subscribe(admin, slot_name, publisher, PUBLICATION, copy_data=True, create_slot=True)
        driver = PostgresLogicalReplication(controller={"onprem": controller}, admin={"aws": admin},
                                            publisher_conninfo={"onprem": publisher},
                                            slot_names={"forward": slot_name, "fallback": f"{slot_name}_unused"},
                                            publication=PUBLICATION)
        deadline = started + timeout_seconds
        while not (state := driver.state(FORWARD)).running:
            if time.monotonic() > deadline:
                raise DatabaseSetupError(f"forward replication not streaming after {timeout_seconds:.0f} s: "
                                         f"{state.detail} (logs: {aws.log}, {onprem.log})")
            time.sleep(0.2)
    finally:
        controller.close()
        admin.close()
    return time.monotonic() - started


def payment_keys(server: Server) -> list[str]:
    """The idempotency key of every payment row, duplicates included, in insertion-time order."""
    return [key for (key,) in server.query("SELECT idempotency_key FROM payments ORDER BY created_at, idempotency_key")]


def payment_ids(server: Server) -> dict[str, str]:
    return dict(server.query("SELECT idempotency_key, payment_id::text FROM payments"))
