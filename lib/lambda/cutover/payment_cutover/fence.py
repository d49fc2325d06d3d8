"""The fence, at the database, so it binds every application: the application roles are made
read-only in this database (`default_transaction_read_only` for role and database) and every session
they had before is ended. Reads keep working; a write fails at once with SQLSTATE 25006
(read_only_sql_transaction), which the payment API answers with 503 + Retry-After.

All functions take a connection of the controller's role (not an application role, so never fenced)
in autocommit mode: each statement commits on its own.

Why rescans: `ALTER ROLE ... SET` applies to sessions that start after it commits. A session that
started before may still be authenticating when the first scan runs (pg_stat_activity does not name
its role yet) and then read the role's settings before the commit. Every backend that started before
the fence committed is therefore either terminated (it is an application role's) or waited for until
it names its role; only then, and after a scan that finds nothing, is the fence complete.

Limitation: default_transaction_read_only is a default. A client that runs `BEGIN READ WRITE` or
`SET default_transaction_read_only = off` in its own session can still write; the payment API does
neither, and the README's contract asks the same of the on-prem application.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from psycopg2 import sql

from payment_cutover.errors import ConfigurationError, FenceIncomplete

SETTING = "default_transaction_read_only"
FENCED = "fenced"
OPEN = "open"
# A fence must hold within seconds: an application session that will not die is a fault to look at.
TERMINATE_WAIT_MS = 2000
POLL_SECONDS = 0.02
CLEAN_SCANS_NEEDED = 2

_TRUE = {"on", "true", "yes", "1", "t", "y"}


@dataclass
class FenceReport:
    roles: dict[str, str]
    terminated_pids: list[int] = field(default_factory=list)
    scans: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"roles": dict(self.roles), "terminated_sessions": len(self.terminated_pids),
                "scans": self.scans, "seconds": round(self.seconds, 3)}


def fence_state(conn, roles: list[str]) -> dict[str, str]:
    """"fenced" or "open" per role: the value of default_transaction_read_only that a new session of
    the role in this database starts with (role+database setting, else role, else database)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT r.rolname,
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = d.oid),
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = 0),
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = d.oid)
               FROM pg_roles r CROSS JOIN pg_database d
               WHERE d.datname = current_database() AND r.rolname = ANY(%s)""",
            (list(roles),),
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    _require_roles(conn, roles, rows)
    state = {}
    for role in roles:
        value = next((found for found in (_setting(config) for config in rows[role]) if found is not None), "off")
        state[role] = FENCED if value.lower() in _TRUE else OPEN
    return state


def is_fenced(conn, roles: list[str]) -> bool:
    return all(value == FENCED for value in fence_state(conn, roles).values())


def fence(conn, roles: list[str], *, deadline_seconds: float = 10.0) -> FenceReport:
    """Fence the roles in this database and end their earlier sessions. Idempotent: on a fenced side
    it finds no session to end and changes nothing."""
    started = time.monotonic()
    fence_state(conn, roles)  # every role exists, before anything changes
    with conn.cursor() as cur:
        for role in roles:
            cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(role), sql.Identifier(_database(conn))))
        # Every session that starts from now on reads the setting committed above.
        cur.execute("SELECT clock_timestamp()")
        fenced_at = cur.fetchone()[0]
    report = FenceReport(roles={})
    clean_scans = 0
    deadline = started + deadline_seconds
    while clean_scans < CLEAN_SCANS_NEEDED:
        report.scans += 1
        terminated, unidentified = _end_sessions(conn, roles, fenced_at)
        report.terminated_pids += terminated
        clean_scans = clean_scans + 1 if not terminated and not unidentified else 0
        if clean_scans >= CLEAN_SCANS_NEEDED:
            break
        if time.monotonic() > deadline:
            raise FenceIncomplete(
                f"sessions of {', '.join(roles)} that started before the fence still run in "
                f"{_database(conn)} after {deadline_seconds:.0f} s (last scan: {len(terminated)} ended, "
                f"{len(unidentified)} still authenticating): look at pg_stat_activity and run the step again")
        time.sleep(POLL_SECONDS)
    report.roles = fence_state(conn, roles)
    if any(value != FENCED for value in report.roles.values()):
        raise FenceIncomplete(f"after ALTER ROLE the fence state is {report.roles} in {_database(conn)}")
    report.seconds = time.monotonic() - started
    return report


def open_side(conn, roles: list[str]) -> dict[str, str]:
    """Lift the fence (RESET the role+database setting). Idempotent."""
    fence_state(conn, roles)
    with conn.cursor() as cur:
        for role in roles:
            cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only").format(
                sql.Identifier(role), sql.Identifier(_database(conn))))
    state = fence_state(conn, roles)
    still = [role for role, value in state.items() if value != OPEN]
    if still:
        raise FenceIncomplete(
            f"{', '.join(still)} still start read-only in {_database(conn)} after RESET: a role-wide or "
            "database-wide default_transaction_read_only is set (ALTER ROLE ... RESET it by hand)")
    return state


def _end_sessions(conn, roles: list[str], fenced_at) -> tuple[list[int], list[int]]:
    """Terminate the roles' sessions in this database that started before `fenced_at` (waiting for
    each to exit); return them, and the backends started before it that have not named a role yet."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT pid, usename IS NULL
               FROM pg_stat_activity
               WHERE pid <> pg_backend_pid()
                 AND backend_type = 'client backend'
                 AND backend_start < %s
                 AND (datname = current_database() OR datname IS NULL)
                 AND (usename = ANY(%s) OR usename IS NULL)""",
            (fenced_at, list(roles)),
        )
        found = cur.fetchall()
        terminated = []
        for pid, unidentified in found:
            if unidentified:
                continue
            # Waits until the backend is gone, so its last transaction is over (committed or not)
            # before the marker is written behind it.
            cur.execute("SELECT pg_terminate_backend(%s, %s)", (pid, TERMINATE_WAIT_MS))
            terminated.append(pid)
    return terminated, [pid for pid, unidentified in found if unidentified]


def _setting(config: list[str] | None) -> str | None:
    for entry in config or ():
        name, _, value = entry.partition("=")
        if name == SETTING:
            return value
    return None


def _require_roles(conn, roles: list[str], found: dict) -> None:
    missing = [role for role in roles if role not in found]
    if missing:
        raise ConfigurationError(
            f"application role(s) {', '.join(missing)} do not exist on {_database(conn)}: check APPLICATION_ROLES "
            "and that schema/roles.sql was applied")


def _database(conn) -> str:
    return conn.info.dbname
