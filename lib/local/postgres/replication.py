"""Two real PostgreSQL servers playing on-prem and Aurora, joined by PostgreSQL logical replication
standing in for the DMS tasks: the world the cutover steps, the rehearsal and the fault matrix run in.

Each server has a template database (the reference schema, owned by a NOLOGIN role; schema/roles.sql;
the publication of the payment tables and the marker table) from which every payment database is
cloned (CREATE DATABASE ... TEMPLATE: a tenth of a second), a password for every role of roles.sql
(generated here, per server), and `subscription_admin`, a superuser the controller's
postgres-logical driver manages subscriptions as (PostgreSQL 15 lets only a superuser manage them;
on AWS, DMS tasks replace them).

A replicated pair runs the forward direction (a subscription on "aws" from "onprem"). The tests keep
one pair for a whole session and put it back to that state before each test (`reset`: subscriptions
and slots re-made, tables truncated, fences lifted, roles.sql re-applied), which costs a fraction of
making new databases and syncing them. The rehearsal fills on-prem first and starts the forward
direction with a full copy (`start_forward_replication`), as the forward DMS task does.

Role membership (payment_writer, which the fence revokes) is cluster-wide: whatever prepares a
database also puts the application roles' membership back (`open_roles`).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql

from lib.local.postgres.server import PostgresServer, PostgresSetupError, start_postgres
from lib.local.postgres.tls import CertificateAuthority

ROLES_SQL = Path(__file__).resolve().parents[3] / "schema" / "roles.sql"
# The roles of schema/roles.sql, each with a secret per side on AWS (lib/constructs/secrets.py).
ROLES = ("payment_app", "payment_validator", "dms_source", "dms_target", "payment_controller")
SUBSCRIPTION_ADMIN = "subscription_admin"  # PostgreSQL 15 lets only a superuser manage subscriptions
SCHEMA = "public"
TABLES = ["customers", "payments", "transactions", "audit_log"]
PUBLICATION = "payment_migration"
SCHEMA_OWNER = "payment_owner"  # NOLOGIN owner of the payment tables
LOGICAL_CONF = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_logical_replication_workers": "8",
    "max_worker_processes": "16",
    # tell the publisher promptly how far the subscriber got (slot positions in tests)
    "wal_receiver_status_interval": "1",
    # a logical replication worker that could not start is retried after this (default 5 s)
    "wal_retrieve_retry_interval": "200ms",
    # where commits are asynchronous (the servers' default, synchronous_commit = off) a walsender
    # sends only flushed WAL: flush every 10 ms rather than 200, or each marker waits up to 0.2 s
    "wal_writer_delay": "10ms",
    # XA / JTA transaction managers prepare transactions; the fence must meet them
    "max_prepared_transactions": "10",
    # commit times (and replication origins) of every transaction: the fault matrix's checker orders
    # the two sides' local commits by them (lib/local/chaos)
    "track_commit_timestamp": "on",
}
ONPREM, AWS = "onprem", "aws"
TEMPLATE = "payment_template"
WRITER_GROUP = "payment_writer"
PAYMENT_TABLES_SQL = ", ".join([*TABLES, "payment_control.cutover_marker"])
_names = itertools.count(1)


@dataclass
class Server:
    """A running server, the passwords of the roles of roles.sql (and of subscription_admin) on it,
    and its template database."""

    postgres: PostgresServer
    passwords: dict[str, str] = field(default_factory=lambda: {
        role: secrets.token_urlsafe(18) for role in (*ROLES, SUBSCRIPTION_ADMIN)})

    def prepare_template(self) -> None:
        """The template every test database is cloned from: schema, roles.sql, publication; the
        roles' passwords (cluster-wide) set once."""
        from payment_cutover.postgres_logical import create_publication

        self.postgres.create_payment_database(TEMPLATE)
        # The schema's owner does not log in, as in a payment estate the fence can hold in (a LOGIN
        # role that owns a payment table is a write path the fence refuses).
        self.postgres.admin_execute(
            f"""DO $$ DECLARE t text; BEGIN
                  IF to_regrole('{SCHEMA_OWNER}') IS NULL THEN CREATE ROLE {SCHEMA_OWNER} NOLOGIN; END IF;
                  FOREACH t IN ARRAY ARRAY{TABLES!r}::text[] LOOP
                    EXECUTE format('ALTER TABLE {SCHEMA}.%I OWNER TO {SCHEMA_OWNER}', t);
                  END LOOP;
                END $$""", dbname=TEMPLATE)
        self.postgres.admin_execute(ROLES_SQL.read_text(), dbname=TEMPLATE)
        self.postgres.admin_execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(SUBSCRIPTION_ADMIN)))
        for role, password in self.passwords.items():
            self.postgres.admin_execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (password,))
        admin = self.postgres.admin_connect(TEMPLATE)
        try:
            create_publication(admin, PUBLICATION, SCHEMA, TABLES)
        finally:
            admin.close()

    def grants_fingerprint(self) -> str:
        """What a database as roles.sql leaves it looks like (its template's grants and script version)."""
        if not hasattr(self, "_fingerprint"):
            conn = self.postgres.admin_connect(TEMPLATE)
            try:
                with conn.cursor() as cur:
                    cur.execute(GRANTS_FINGERPRINT)
                    self._fingerprint = cur.fetchone()[0]
            finally:
                conn.close()
        return self._fingerprint


def start_servers(settings: dict[str, str] | None = None, *, ca: CertificateAuthority | None = None,
                  roots: dict[str, Path] | None = None, ports: dict[str, int] | None = None) -> dict[str, Server]:
    """Both servers, started side by side (initdb and a TLS key each: seconds), templates ready.
    `settings` add to LOGICAL_CONF; `ca`, `roots` (per side) and `ports` (per side) default to
    the process's CA, temporary directories and free ports."""
    roots, ports = roots or {}, ports or {}

    def start(side: str) -> Server:
        server = Server(start_postgres(roots.get(side), {**LOGICAL_CONF, **(settings or {})}, ca=ca,
                                       port=ports.get(side), name=side))
        server.prepare_template()
        return server

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {side: pool.submit(start, side) for side in (ONPREM, AWS)}
        started = {side: future.result() for side, future in futures.items()}
    return started


def stop_servers(servers: dict[str, Server]) -> None:
    """Throwaway servers: stopped at once (no shutdown checkpoint), side by side, then removed."""
    def remove(server: Server) -> None:
        server.postgres.stop(mode="immediate")
        server.postgres.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(remove, servers.values()))


_shared_lock = threading.Lock()
_shared: dict = {"servers": None, "users": 0, "pair": None}


def acquire_servers() -> dict[str, Server]:
    """The two servers of this test process, started on first use. Every test directory's session
    fixture acquires and releases them, so `pytest tests/cutover tests/api` starts them once."""
    with _shared_lock:
        if _shared["servers"] is None:
            _shared["servers"] = start_servers()
        _shared["users"] += 1
        return _shared["servers"]


def release_servers() -> None:
    with _shared_lock:
        _shared["users"] -= 1
        if _shared["users"] > 0:
            return
        servers = _shared["servers"]
        _shared.update(servers=None, pair=None, users=0)
    if servers is not None:  # the shared pair's databases go with them
        stop_servers(servers)


def shared_pair(servers: dict[str, Server]) -> ReplicatedPair:
    """One replicated pair for the session, reset to the forward-running, both-open, empty state each
    time it is handed out."""
    with _shared_lock:
        if _shared["pair"] is None:
            _shared["pair"] = replicated_pair(servers, name="shared")
            return _shared["pair"]
        pair = _shared["pair"]
    pair.reset()
    return pair


OPEN_ROLES = (f"DO $$ BEGIN IF NOT pg_has_role('payment_app', '{WRITER_GROUP}', 'MEMBER') THEN "
              f"GRANT {WRITER_GROUP} TO payment_app; END IF; END $$")


def open_roles(postgres: PostgresServer) -> None:
    """payment_app a member of payment_writer again (cluster-wide), as roles.sql first makes it."""
    postgres.admin_execute(OPEN_ROLES)


@dataclass
class SideDatabase:
    """One side's payment database (on its server), reached as the roles of roles.sql or the superuser."""

    side: str
    server: Server
    dbname: str

    @property
    def postgres(self) -> PostgresServer:
        return self.server.postgres

    @property
    def host(self) -> str:
        return self.postgres.host

    @property
    def port(self) -> int:
        return self.postgres.port

    def secret(self, role: str) -> dict[str, object]:
        """The value of this side's Secrets Manager secret for `role` (lib/constructs/secrets.py)."""
        return {"username": role, "password": self.server.passwords[role], "host": self.host, "port": self.port}

    def connect(self, role: str, *, autocommit: bool = True, application_name: str = "test"):
        """A verified TLS + password connection as one of the roles of roles.sql (as an application would)."""
        conn = psycopg2.connect(host=self.postgres.host, port=self.postgres.port, dbname=self.dbname, user=role,
                                password=self.server.passwords[role], sslmode="verify-full",
                                sslrootcert=self.postgres.ca_certificate, connect_timeout=5,
                                application_name=application_name)
        conn.autocommit = autocommit
        return conn

    def admin(self):
        return self.postgres.admin_connect(self.dbname)

    def conninfo(self, role: str) -> str:
        from payment_cutover.postgres_logical import conninfo

        return conninfo(host=self.postgres.host, port=self.postgres.port, dbname=self.dbname, user=role,
                        password=self.server.passwords[role], sslmode="verify-full",
                        sslrootcert=self.postgres.ca_certificate)

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


def prepare_database(server: Server, side: str, dbname: str) -> SideDatabase:
    """A fresh payment database with roles.sql applied (a clone of the server's template), the
    application roles open (member of payment_writer; no fence setting in a new database)."""
    postgres = server.postgres
    postgres.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    postgres.admin_execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(dbname), sql.Identifier(TEMPLATE), sql.Identifier(postgres.app_user)))
    open_roles(postgres)
    return SideDatabase(side, server, dbname)


@dataclass
class ReplicatedPair:
    """On-prem and AWS databases for one test, forward replication running."""

    sides: dict[str, SideDatabase]
    slot_names: dict[str, str]
    _connections: list = field(default_factory=list)

    @property
    def onprem(self) -> SideDatabase:
        return self.sides[ONPREM]

    @property
    def aws(self) -> SideDatabase:
        return self.sides[AWS]

    def connection(self, side: str, role: str, **options):
        conn = self.sides[side].connect(role, **options)
        self._connections.append(conn)
        return conn

    def admin_connection(self, side: str):
        conn = self.sides[side].admin()
        self._connections.append(conn)
        return conn

    def driver(self):
        from payment_cutover.postgres_logical import PostgresLogicalReplication

        return PostgresLogicalReplication(
            controller={side: self.connection(side, "payment_controller") for side in self.sides},
            admin={side: self.admin_connection(side) for side in self.sides},
            publisher_conninfo={side: db.conninfo("dms_source") for side, db in self.sides.items()},
            slot_names=self.slot_names, publication=PUBLICATION)

    def controller(self, *, ssm, writer_parameter: str, wait_seconds: float = 10.0):
        from payment_cutover.steps import Controller

        return Controller(databases={side: self.connection(side, "payment_controller") for side in self.sides},
                          driver=self.driver(), ssm=ssm, writer_parameter=writer_parameter,
                          roles=["payment_app"], schema=SCHEMA, tables=list(TABLES), wait_seconds=wait_seconds)

    def wait_until(self, condition, what: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)
        return value

    def close_connections(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()

    def reset(self) -> None:
        """Back to what replicated_pair() makes: no client session, empty tables and sequences, both
        sides open, the forward direction alone running — kept if the test left it so, else re-made
        from a new slot."""
        self.close_connections()
        for db in self.sides.values():  # sessions a test left behind (and the locks they hold)
            end_sessions(db)
        admin = {side: db.admin() for side, db in self.sides.items()}
        try:
            kept = self._forward_alone_streaming(admin) and self._empty_through_replication(admin)
        finally:
            for conn in admin.values():
                conn.close()
        if kept:
            for db in self.sides.values():
                reset_database(db, sessions=False, truncate=False)
            return
        self._stop_replication()
        for db in self.sides.values():
            reset_database(db, sessions=False)
        self._start_forward()

    def load_both(self, statements: str) -> None:
        """The same rows written on both sides outside replication (as DMS's full load leaves them, in
        a fraction of the time), then forward replication made again from a new slot. `statements`
        must be deterministic: they run once on each side, side by side."""
        self._stop_replication()

        def load(db: SideDatabase) -> None:
            db.postgres.admin_execute(statements, dbname=db.dbname)

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(load, self.sides.values()))
        self._start_forward()

    def _forward_alone_streaming(self, admin: dict) -> bool:
        """Whether replication is as replicated_pair() left it: the forward subscription alone, enabled
        and applying, its slot on onprem in use, no other subscription or slot."""
        def rows(side: str, statement: str, params=None) -> list[tuple]:
            with admin[side].cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()

        forward = self.slot_names["forward"]
        this_database = "(SELECT oid FROM pg_database WHERE datname = current_database())"
        return (rows(AWS, f"""SELECT s.subname, s.subenabled, w.pid IS NOT NULL FROM pg_subscription s
                              LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
                              WHERE s.subdbid = {this_database}""") == [(forward, True, True)]
                and not rows(ONPREM, f"SELECT 1 FROM pg_subscription WHERE subdbid = {this_database}")
                and rows(ONPREM, "SELECT slot_name, active FROM pg_replication_slots "
                                 "WHERE database = current_database()") == [(forward, True)]
                and not rows(AWS, "SELECT 1 FROM pg_replication_slots WHERE database = current_database()"))

    def _empty_through_replication(self, admin: dict, timeout: float = 5.0) -> bool:
        """Empty both sides while forward replication keeps running: truncate onprem (replicated), let a
        marker prove aws applied it, take the marker back out the same way, then truncate aws (rows
        written there directly, its sequences). False, changing nothing more, if a marker is late."""
        import uuid

        marker = str(uuid.uuid4())

        def on_aws(present: bool) -> bool:
            deadline = time.monotonic() + timeout
            with admin[AWS].cursor() as cur:
                while True:
                    cur.execute("SELECT count(*) FROM payment_control.cutover_marker WHERE marker_id = %s", (marker,))
                    if bool(cur.fetchone()[0]) == present:
                        return True
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.005)

        with admin[ONPREM].cursor() as cur:
            cur.execute("SET synchronous_commit = on")  # flushed at commit: the walsender sends it at once
            cur.execute(f"TRUNCATE {PAYMENT_TABLES_SQL} RESTART IDENTITY")
            cur.execute("INSERT INTO payment_control.cutover_marker (marker_id, from_side, to_side) "
                        "VALUES (%s, 'onprem', 'aws')", (marker,))
        if not on_aws(True):
            return False
        with admin[ONPREM].cursor() as cur:
            cur.execute("DELETE FROM payment_control.cutover_marker WHERE marker_id = %s", (marker,))
        if not on_aws(False):
            return False
        with admin[AWS].cursor() as cur:
            cur.execute(f"TRUNCATE {PAYMENT_TABLES_SQL} RESTART IDENTITY")
        return True

    def close(self) -> None:
        self.close_connections()
        self._stop_replication()
        for db in self.sides.values():
            db.postgres.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db.dbname)))

    def _stop_replication(self) -> None:
        """Drop every subscription of the pair's databases and, once their walsenders are gone, their slots."""
        from payment_cutover.postgres_logical import drop_subscription

        for db in self.sides.values():
            admin = db.admin()
            try:
                with admin.cursor() as cur:
                    cur.execute("SELECT subname FROM pg_subscription WHERE subdbid = "
                                "(SELECT oid FROM pg_database WHERE datname = current_database())")
                    for (name,) in cur.fetchall():
                        drop_subscription(admin, name)
            finally:
                admin.close()
        for db in self.sides.values():
            deadline = time.monotonic() + 10
            while db.query("SELECT slot_name FROM pg_replication_slots WHERE database = %s AND active", (db.dbname,)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            db.postgres.admin_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                      "WHERE database = %s AND NOT active", (db.dbname,))

    def _start_forward(self, *, copy_data: bool = False, timeout: float = 15.0) -> None:
        """Forward replication from a new slot, streaming. Without `copy_data` the databases must
        start alike (clones of the template, or truncated): nothing is copied."""
        from payment_cutover.postgres_logical import subscribe
        from payment_common.sides import FORWARD

        admin = self.aws.admin()
        try:
            subscribe(admin, self.slot_names["forward"], self.onprem.conninfo("dms_source"), PUBLICATION,
                      copy_data=copy_data, create_slot=True)
        finally:
            admin.close()
        driver = self.driver()
        try:
            self.wait_until(lambda: driver.state(FORWARD).running, "forward replication to stream", timeout)
        except AssertionError as error:
            raise PostgresSetupError(f"{error}: {driver.state(FORWARD).detail} (logs: {self.aws.postgres.log}, "
                                     f"{self.onprem.postgres.log})") from None
        finally:
            self.close_connections()


def replicated_pair(servers: dict[str, Server], *, name: str | None = None) -> ReplicatedPair:
    """Fresh databases on both servers (clones of the templates, publications included), forward
    replication running."""
    name = name or f"cut{next(_names)}_{secrets.token_hex(3)}"
    sides = {side: prepare_database(server, side, name) for side, server in servers.items()}
    pair = ReplicatedPair(sides=sides, slot_names={"forward": f"{name}_forward", "fallback": f"{name}_fallback"})
    pair._start_forward()
    return pair


def start_forward_replication(onprem: SideDatabase, aws: SideDatabase, slot_name: str, *,
                              timeout_seconds: float = 120.0) -> float:
    """The forward direction as the operator starts the forward DMS task once (full load, then
    changes): a subscription on aws that copies every table, then streams from its slot on onprem.
    Returns the seconds until it streams."""
    started = time.monotonic()
    pair = ReplicatedPair(sides={ONPREM: onprem, AWS: aws},
                          slot_names={"forward": slot_name, "fallback": f"{slot_name}_unused"})
    pair._start_forward(copy_data=True, timeout=timeout_seconds)
    return time.monotonic() - started


def end_sessions(db: SideDatabase) -> None:
    db.postgres.admin_execute(
        """SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
           WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'""", (db.dbname,))


GRANTS_FINGERPRINT = """
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s.%s=%s', n.nspname, c.relname, c.relacl), ',' ORDER BY n.nspname, c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'payment_control', 'payment_dms')),
        (SELECT string_agg(format('%s=%s', n.nspname, n.nspacl), ',' ORDER BY n.nspname) FROM pg_namespace n),
        (SELECT string_agg(format('%s:%s', version, script), ',') FROM payment_control.script_version)))"""


def reset_database(db: SideDatabase, *, sessions: bool = True, truncate: bool = True) -> None:
    """Back to a fresh clone of the template, cheaply: client sessions ended, slots dropped, tables
    and sequences emptied, no fence, payment_app a member of payment_writer; and when a test changed
    a grant, DMS's schema or the script's version (the catalogs differ from the template's), DMS's
    schema emptied and roles.sql applied again."""
    if sessions:
        end_sessions(db)
        db.postgres.admin_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                  "WHERE database = %s AND NOT active", (db.dbname,))
    admin = db.admin()
    try:
        with admin.cursor() as cur:
            if truncate:
                cur.execute(f"TRUNCATE {PAYMENT_TABLES_SQL} RESTART IDENTITY")
            # the controller's lease and fence records (not replicated): no switch in progress
            cur.execute("TRUNCATE payment_control.cutover_lease, payment_control.cutover_fence RESTART IDENTITY")
            cur.execute(sql.SQL("ALTER ROLE payment_app IN DATABASE {} RESET ALL").format(sql.Identifier(db.dbname)))
            cur.execute(GRANTS_FINGERPRINT)
            if cur.fetchone()[0] != db.server.grants_fingerprint():
                cur.execute("DROP SCHEMA payment_dms CASCADE")
                cur.execute("DELETE FROM payment_control.script_version")
                cur.execute(ROLES_SQL.read_text())
            cur.execute(OPEN_ROLES)
    finally:
        admin.close()


def add_customer(db: SideDatabase, external_ref: str = "onprem-1") -> str:
    import uuid

    customer = str(uuid.uuid4())
    db.postgres.admin_execute("INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, %s, %s)",
                              (customer, external_ref, "Ada Lovelace"), dbname=db.dbname)
    return customer


def _secret(secretsmanager, name: str, username: str, password: str) -> str:
    return secretsmanager.create_secret(Name=f"{name}-{secrets.token_hex(4)}",
                                        SecretString=json.dumps({"username": username, "password": password}))["ARN"]


def cutover_environment(pair: ReplicatedPair, writer_parameter: str, secretsmanager) -> dict[str, str]:
    """The step Lambda's environment for this pair, with the postgres-logical driver; the secrets are
    created in (moto's) Secrets Manager."""
    env = {"WRITER_PARAMETER": writer_parameter, "APPLICATION_ROLES": "payment_app",
           "REPLICATION_DRIVER": "postgres-logical", "SCHEMA": SCHEMA, "TABLES": ",".join(TABLES),
           "FORWARD_SLOT_NAME": pair.slot_names["forward"], "FALLBACK_SLOT_NAME": pair.slot_names["fallback"],
           "PUBLICATION_NAME": PUBLICATION, "DB_SSLMODE": "verify-full", "WAIT_SECONDS": "10",
           "POWERTOOLS_METRICS_NAMESPACE": "PaymentMigrationTest"}
    for side, prefix in ((ONPREM, "ONPREM_DB_"), (AWS, "AURORA_DB_")):
        db = pair.sides[side]
        passwords = db.server.passwords
        env.update({
            f"{prefix}HOST": db.postgres.host, f"{prefix}PORT": str(db.postgres.port), f"{prefix}NAME": db.dbname,
            f"{prefix}SSLROOTCERT": db.postgres.ca_certificate,  # each side's own CA, as on-prem's is not RDS's
            f"{prefix}SECRET_ARN": _secret(secretsmanager, f"{side}-controller", "payment_controller",
                                           passwords["payment_controller"]),
            f"{prefix}REPLICATION_SECRET_ARN": _secret(secretsmanager, f"{side}-dms-source", "dms_source",
                                                       passwords["dms_source"]),
            f"{prefix}SUBSCRIPTION_SECRET_ARN": _secret(secretsmanager, f"{side}-subscriptions", SUBSCRIPTION_ADMIN,
                                                        passwords[SUBSCRIPTION_ADMIN]),
        })
    return env


def api_environment(pair: ReplicatedPair, writer_parameter: str, secretsmanager,
                    cache_seconds: float = 1.0) -> dict[str, str]:
    """The payment API's environment for this pair: payment_app on each side."""
    env = {"WRITER_PARAMETER": writer_parameter, "WRITER_CACHE_SECONDS": str(cache_seconds),
           "DB_SSLMODE": "verify-full", "POWERTOOLS_METRICS_NAMESPACE": "PaymentMigrationTest"}
    for side, prefix in ((ONPREM, "ONPREM_DB_"), (AWS, "AURORA_DB_")):
        db = pair.sides[side]
        env.update({f"{prefix}HOST": db.postgres.host, f"{prefix}PORT": str(db.postgres.port),
                    f"{prefix}NAME": db.dbname, f"{prefix}SSLROOTCERT": db.postgres.ca_certificate,
                    f"{prefix}SECRET_ARN": _secret(secretsmanager, f"{side}-payment-app", "payment_app",
                                                   db.server.passwords["payment_app"])})
    return env
