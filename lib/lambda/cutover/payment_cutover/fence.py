"""The fence, at the database, so it binds every application, even one that changes its own
settings. Two parts, both required for a side to be fenced:

1. Privileges. The application roles write only through membership in the NOLOGIN group role
   `payment_writer` (schema/roles.sql: it holds exactly their DML; they keep SELECT directly). The
   fence REVOKEs it: a write then fails with insufficient_privilege (SQLSTATE 42501) whatever the
   session does — `SET default_transaction_read_only = off`, `BEGIN READ WRITE`, or `ALTER ROLE ...
   RESET` of its own defaults (which ordinary roles may do) change nothing, and an application role
   cannot grant itself the membership back (no CREATEROLE, no ADMIN OPTION).
2. The clean error. `ALTER ROLE <role> IN DATABASE <db> SET default_transaction_read_only = on`, so a
   well-behaved session fails first with read_only_sql_transaction (25006) before any privilege
   check; the payment API answers both with 503 writer_fenced + Retry-After.

Then every session the roles had before is ended, as before. Reads keep working (SELECT is the
roles' own). Opening a side GRANTs the membership back and RESETs the setting.

MEMBERSHIP IS CLUSTER-WIDE: revoking payment_writer fences the roles in every database of the
server, while the read-only default is per database. Production has one payment database per server
(on-prem and Aurora are separate servers); the tests use two servers for the same reason.

All functions take a connection of the controller's role (not an application role, so never fenced)
in autocommit mode: each statement commits on its own. The controller may grant and revoke
payment_writer: CREATEROLE on PostgreSQL 15 and older, ADMIN OPTION on payment_writer from 16 on
(schema/roles.sql; there the controller can only revoke grants recorded as its own, which the fence
checks and reports).

Why rescans: `ALTER ROLE ... SET` applies to sessions that start after it commits. A session that
started before may still be authenticating when the first scan runs (pg_stat_activity does not name
its role yet) and then read the role's settings before the commit. Every backend that started before
the fence committed is therefore either terminated (it is an application role's) or waited for until
it names its role; only then, and after a scan that finds nothing, is the fence complete. (Such a
session could not write anyway once the membership is revoked; the scans keep the error clean.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from psycopg2 import sql

from payment_cutover.errors import ConfigurationError, FenceIncomplete

SETTING = "default_transaction_read_only"
WRITER_GROUP = "payment_writer"  # schema/roles.sql: the application roles' only source of write privileges
FENCED = "fenced"
OPEN = "open"
PARTIAL = "partial"  # a state string starts with it when one part of the fence holds and not the other
# A fence must hold within seconds: an application session that will not die is a fault to look at.
TERMINATE_WAIT_MS = 2000
POLL_SECONDS = 0.02
CLEAN_SCANS_NEEDED = 2

_TRUE = {"on", "true", "yes", "1", "t", "y"}


@dataclass(frozen=True)
class RoleFence:
    """What holds for one application role in this database."""

    role: str
    read_only: bool  # new sessions of the role in this database start read-only
    member: bool  # member of payment_writer (directly or through another role): cluster-wide
    grantors: tuple[str, ...]  # who granted its direct membership, if it has one (PG16 revokes per grantor)
    other_writes: tuple[str, ...]  # what it may still write without payment_writer (direct grants, ownership)

    @property
    def state(self) -> str:
        if self.read_only and not self.member and not self.other_writes:
            return FENCED
        if not self.read_only and self.member:
            return OPEN
        holds, missing = [], []
        (holds if self.read_only else missing).append(f"{SETTING} = on in this database")
        (missing if self.member else holds).append(f"{WRITER_GROUP} revoked")
        text = f"{PARTIAL}: " + "; ".join(
            ([f"holds: {', '.join(holds)}"] if holds else []) + ([f"missing: {', '.join(missing)}"] if missing else []))
        if self.other_writes and not self.member:
            text += (f"; can still write without {WRITER_GROUP}: {', '.join(self.other_writes[:5])}"
                     + (" …" if len(self.other_writes) > 5 else ""))
        return text


@dataclass
class FenceReport:
    roles: dict[str, str]
    terminated_pids: list[int] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    scans: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"roles": dict(self.roles), "revoked_membership": list(self.revoked),
                "terminated_sessions": len(self.terminated_pids), "scans": self.scans,
                "seconds": round(self.seconds, 3)}


def fence_details(conn, roles: list[str]) -> dict[str, RoleFence]:
    """Both parts of the fence for each role, read from the catalogs (what a new session gets)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regrole(%s) IS NOT NULL", (WRITER_GROUP,))
        if not cur.fetchone()[0]:
            raise ConfigurationError(
                f"role {WRITER_GROUP} does not exist on {_database(conn)}: apply schema/roles.sql (version 2 or later)")
        cur.execute(
            """SELECT r.rolname,
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = d.oid),
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = 0),
                      (SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = d.oid),
                      pg_has_role(r.oid, %(group)s::regrole, 'MEMBER'),
                      ARRAY(SELECT m.grantor::regrole::text FROM pg_auth_members m
                            WHERE m.member = r.oid AND m.roleid = %(group)s::regrole ORDER BY 1)
               FROM pg_roles r CROSS JOIN pg_database d
               WHERE d.datname = current_database() AND r.rolname = ANY(%(roles)s)""",
            {"group": WRITER_GROUP, "roles": list(roles)},
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        _require_roles(conn, roles, rows)
        details = {}
        for role in roles:
            *configs, member, grantors = rows[role]
            value = next((found for found in (_setting(config) for config in configs) if found is not None), "off")
            other_writes: list[str] = []
            if not member:
                cur.execute(
                    """SELECT format('%%I.%%I (%%s)', n.nspname, c.relname, CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END)
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname <> 'information_schema' AND NOT starts_with(n.nspname, 'pg_')
                         AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%(role)s, c.oid, 'USAGE, UPDATE')
                                  WHEN c.relkind IN ('r', 'p', 'v', 'f')
                                  THEN has_table_privilege(%(role)s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                                       OR has_any_column_privilege(%(role)s, c.oid, 'INSERT, UPDATE')
                                  ELSE false END
                       ORDER BY 1""",
                    {"role": role})
                other_writes = [row[0] for row in cur.fetchall()]
            details[role] = RoleFence(role=role, read_only=value.lower() in _TRUE, member=member,
                                      grantors=tuple(grantors), other_writes=tuple(other_writes))
    return details


def fence_state(conn, roles: list[str]) -> dict[str, str]:
    """Per role: "fenced" (read-only default on in this database AND no payment_writer membership AND
    no other write privilege), "open" (read-only default off and a member), or "partial: ..." saying
    which part holds and which is missing."""
    return {role: detail.state for role, detail in fence_details(conn, roles).items()}


def is_fenced(conn, roles: list[str]) -> bool:
    return all(value == FENCED for value in fence_state(conn, roles).values())


def fence(conn, roles: list[str], *, deadline_seconds: float = 10.0) -> FenceReport:
    """Fence the roles (read-only default in this database, payment_writer revoked) and end their
    earlier sessions. Idempotent: on a fenced side it finds nothing to change and no session to end."""
    started = time.monotonic()
    details = fence_details(conn, roles)  # every role exists, before anything changes
    report = FenceReport(roles={})
    with conn.cursor() as cur:
        for role in roles:
            if not details[role].read_only:
                cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on").format(
                    sql.Identifier(role), sql.Identifier(_database(conn))))
        for role in roles:
            if details[role].grantors:
                cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(WRITER_GROUP), sql.Identifier(role)))
                report.revoked.append(role)
        # Every session that starts from now on reads the setting committed above.
        cur.execute("SELECT clock_timestamp()")
        fenced_at = cur.fetchone()[0]
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
    after = fence_details(conn, roles)
    report.roles = {role: detail.state for role, detail in after.items()}
    problems = [_why_not_fenced(conn, detail) for detail in after.values() if detail.state != FENCED]
    if problems:
        raise FenceIncomplete("; ".join(problems))
    report.seconds = time.monotonic() - started
    return report


def open_side(conn, roles: list[str]) -> dict[str, str]:
    """Lift the fence: GRANT payment_writer back, then RESET the role+database setting. Idempotent."""
    details = fence_details(conn, roles)
    with conn.cursor() as cur:
        for role in roles:
            if not details[role].member:
                cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(WRITER_GROUP), sql.Identifier(role)))
        for role in roles:
            cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only").format(
                sql.Identifier(role), sql.Identifier(_database(conn))))
    after = fence_details(conn, roles)
    still = [detail for detail in after.values() if detail.state != OPEN]
    if still:
        raise FenceIncomplete("; ".join(
            f"{detail.role} is not open in {_database(conn)} after GRANT and RESET ({detail.state})"
            + (": a role-wide or database-wide default_transaction_read_only is set (ALTER ROLE ... RESET it by hand)"
               if detail.read_only else "") for detail in still))
    return {role: detail.state for role, detail in after.items()}


def _why_not_fenced(conn, detail: RoleFence) -> str:
    where = _database(conn)
    if detail.member and detail.grantors:
        return (f"{detail.role} is still a member of {WRITER_GROUP} on {where} after REVOKE (granted by "
                f"{', '.join(detail.grantors)}): on PostgreSQL 16+ the controller revokes only its own grants; "
                f"an operator must REVOKE {WRITER_GROUP} FROM {detail.role} GRANTED BY <grantor> "
                f"({detail.state})")
    if detail.member:
        return (f"{detail.role} is a member of {WRITER_GROUP} on {where} through another role: revoke that "
                f"membership by hand ({detail.state})")
    if detail.other_writes:
        return (f"{detail.role} can still write on {where} without {WRITER_GROUP}: "
                f"{', '.join(detail.other_writes)} — revoke those grants (schema/roles.sql converges them)")
    return f"after the fence {detail.role} is {detail.state} on {where}"


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
