"""The fence, at the database, so it binds every application, even one that changes its own
settings.

THREAT MODEL. Once `fence` returns on a side, no transaction of anyone but the controller and the
replication apply commits a change to a replicated table there — whatever roles, memberships,
ownerships, `SET ROLE`, functions, views, rules, transaction kinds or schedulers the estate has.
What the fence cannot close it refuses, naming what the operator must change (FenceIncomplete); it
never reports a side fenced with a path open. The write paths, and how each is closed:

1. Membership in the NOLOGIN group role `payment_writer` (schema/roles.sql: it holds exactly the
   application's DML). The fence REVOKEs it from every direct member (the configured application
   roles and any other: a batch job's role) and records whom, so that opening the side grants it
   back to exactly them. Whoever reached payment_writer through a member (a LOGIN role that inherits
   payment_app, or may `SET ROLE payment_app`) loses it with that member.
2. The clean error: `ALTER ROLE <role> IN DATABASE <db> SET default_transaction_read_only = on` for
   every LOGIN role that reached payment_writer, so a well-behaved session fails first with
   read_only_sql_transaction (25006) before any privilege check; the payment API answers both with
   503 writer_fenced + Retry-After. (The privileges are what hold: a session that turns read-only
   off still fails with 42501.)
3. Transactions that wrote before the fence and would commit after it: every backend that started
   before the fence and holds a transaction id is ended (pg_terminate_backend, waited for), whatever
   its role — privileges are checked when a row is written, not at commit. Backends of the fenced
   roles are ended too, so their new sessions start read-only. Backends the controller may not end
   (a superuser's) are waited for; prepared transactions (`PREPARE TRANSACTION`, which outlive their
   session) are waited for and refused at the deadline, naming their gid and owner: only their owner
   or a superuser may resolve them.
4. Everything else that could write (`write_paths`), refused by name, before the fence changes
   anything and again once it holds: a LOGIN role that holds a write privilege or owns a replicated
   table itself or through any role it may use (inheritance or SET ROLE, NOINHERIT included); that
   may SET ROLE to a superuser; that may grant itself a writing role (ADMIN OPTION, or CREATEROLE on
   PostgreSQL 15, where it covers every non-superuser role); that may EXECUTE a SECURITY DEFINER
   function whose owner can write (PUBLIC's default EXECUTE included: schema/roles.sql revokes it
   in the payment schemas); or that may write a view or a relation with rules over a replicated
   table whose owner can write. Triggers run as the invoker, so they add no path of their own.

Not closable by privileges: superusers (and members of rds_superuser on RDS/Aurora), whose pre-fence
transactions are waited for but who may write again at any time; the replication apply role
(dms_target) and the controller itself. Hence the PROOF: when the fence completes, a witness logical
slot (test_decoding) is made on the fenced side; `prove` reads every change committed since and
fails on any change to a replicated table other than the controller's cutover markers, naming the
transaction (xid, table, operation, LSN, commit time; WAL records no role: the server log does, with
%x in log_line_prefix). The cutover proves before it opens the new writer.

MEMBERSHIP IS CLUSTER-WIDE: revoking payment_writer fences the roles in every database of the
server, while the read-only default is per database. Production has one payment database per server
(on-prem and Aurora are separate servers); the tests use two servers for the same reason.

All functions take a connection of the controller's role (not an application role, so never fenced)
in autocommit mode: each statement commits on its own. The controller may grant and revoke
payment_writer: CREATEROLE on PostgreSQL 15, ADMIN OPTION on payment_writer from 16 on
(schema/roles.sql; there the controller can only revoke grants recorded as its own, which the fence
checks and reports).

Why rescans: `ALTER ROLE ... SET` applies to sessions that start after it commits. A session that
started before may still be authenticating when the first scan runs (pg_stat_activity does not name
its role yet) and then read the role's settings before the commit. Every backend that started before
the fence committed is therefore either terminated or waited for until it names its role; only then,
and after a scan that finds nothing, is the fence complete.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from psycopg2 import errors as pg_errors
from psycopg2 import sql

from payment_common.errors import ConfigurationError
from payment_common.wal import flush_wal
from payment_cutover.errors import FenceBreached, FenceIncomplete
from payment_cutover.markers import MARKER_TABLE  # the controller's own writes behind the fence

SETTING = "default_transaction_read_only"
WRITER_GROUP = "payment_writer"  # schema/roles.sql: the application roles' only source of write privileges
# schema/roles.sql: the DMS target endpoint's user, which applies the replicated changes. Neither it
# nor the controller (the connection's own role) is fenced; the witness sees what they write.
APPLY_ROLES = ("dms_target",)
ADMIN_GROUP = "rds_superuser"  # RDS/Aurora: the master user's group, superuser in all but name
WITNESS_PLUGIN = "test_decoding"
FENCED = "fenced"
OPEN = "open"
PARTIAL = "partial"  # a state string starts with it when one part of the fence holds and not the other
# A fence must hold within seconds: an application session that will not die is a fault to look at.
TERMINATE_WAIT_MS = 2000
POLL_SECONDS = 0.02
CLEAN_SCANS_NEEDED = 2
# Backends that never run an application's transaction: replication, vacuum, the server's own.
_SYSTEM_BACKENDS = ("walsender", "autovacuum launcher", "autovacuum worker", "checkpointer", "background writer",
                    "walwriter", "archiver", "startup", "logger", "walreceiver")

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
    revoked: list[str] = field(default_factory=list)  # every role payment_writer was revoked from
    read_only: list[str] = field(default_factory=list)  # the LOGIN roles given the read-only default
    administrators: list[str] = field(default_factory=list)  # not closable by privileges: the witness watches
    witness: dict | None = None  # {"slot", "lsn", "created"}: where the proof starts reading
    scans: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"roles": dict(self.roles), "revoked_membership": list(self.revoked),
                "read_only_roles": list(self.read_only), "administrators": list(self.administrators),
                "terminated_sessions": len(self.terminated_pids), "witness": self.witness, "scans": self.scans,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class WritePath:
    """A way a LOGIN role could still write a replicated table on a fenced side."""

    role: str
    route: str

    def __str__(self) -> str:
        return f"{self.role} {self.route}"


@dataclass(frozen=True)
class Change:
    """A change to a replicated table that the witness slot saw after the fence."""

    xid: str
    lsn: str
    table: str
    operation: str
    committed_at: str | None

    def __str__(self) -> str:
        return (f"xid {self.xid}: {self.operation} on {self.table} at LSN {self.lsn}"
                + (f", committed {self.committed_at}" if self.committed_at else ""))


def fence_details(conn, roles: list[str]) -> dict[str, RoleFence]:
    """Both parts of the fence for each role, read from the catalogs (what a new session gets)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regrole(%s) IS NOT NULL", (WRITER_GROUP,))
        if not cur.fetchone()[0]:
            raise ConfigurationError(
                f"role {WRITER_GROUP} does not exist on {_database(conn)}: apply schema/roles.sql (version 3 or later)")
        cur.execute("SELECT to_regclass('payment_control.cutover_fence') IS NOT NULL")
        if not cur.fetchone()[0]:
            raise ConfigurationError(f"payment_control.cutover_fence does not exist on {_database(conn)}: apply "
                                     "schema/roles.sql (version 3 or later)")
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


def is_open(conn, roles: list[str]) -> bool:
    return all(value == OPEN for value in fence_state(conn, roles).values())




def fence(conn, roles: list[str], *, deadline_seconds: float = 10.0,
          tables: Sequence[tuple[str, str]] = (), witness_slot: str | None = None) -> FenceReport:
    """Fence the side. First refuse, changing nothing, if a write path is open that the fence cannot
    close (`write_paths` over `tables`) or a prepared transaction waits. Then the read-only default
    for every LOGIN role that reaches payment_writer, payment_writer revoked from all its members,
    every earlier backend with a transaction id (and every session of the fenced roles) ended, the
    prepared transactions and the administrators' open transactions waited for, the write paths
    checked again; last, with `witness_slot`, the witness logical slot made (where `prove` reads).

    Idempotent: on a fenced side it finds nothing to change and no session to end, and an existing
    witness slot is kept (it has watched since the first fence)."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    details = fence_details(conn, roles)  # every role exists, before anything changes
    _refuse_open_paths(conn, tables, "nothing was changed")
    prepared = prepared_transactions(conn)
    if prepared:
        raise FenceIncomplete(f"prepared transactions wait in {_database(conn)}: {_list(prepared)} — their owner "
                              "(or a superuser) must COMMIT PREPARED or ROLLBACK PREPARED them; nothing was changed")
    report = FenceReport(roles={})
    logins = sorted(set(writer_logins(conn)) | set(roles))
    members = writer_members(conn)
    with conn.cursor() as cur:
        for role in logins:
            if role not in details or not details[role].read_only:
                cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on").format(
                    sql.Identifier(role), sql.Identifier(_database(conn))))
        report.read_only = logins
        for member in members:
            cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(WRITER_GROUP), sql.Identifier(member)))
            report.revoked.append(member)
        # Every session that starts from now on reads the setting committed above, and every
        # statement from now on is checked without payment_writer.
        cur.execute("SELECT clock_timestamp()")
        fenced_at = cur.fetchone()[0]
    clean_scans = 0
    while clean_scans < CLEAN_SCANS_NEEDED:
        report.scans += 1
        terminated, waiting = _end_sessions(conn, logins, fenced_at)
        report.terminated_pids += terminated
        waiting += prepared_transactions(conn)
        clean_scans = clean_scans + 1 if not terminated and not waiting else 0
        if clean_scans >= CLEAN_SCANS_NEEDED:
            break
        if time.monotonic() > deadline:
            raise FenceIncomplete(
                f"after {deadline_seconds:.0f} s in {_database(conn)} these still hold transactions that began "
                f"before the fence: {_list(waiting) or f'{len(terminated)} sessions ended in the last scan'} — "
                "end them (or have their owner resolve them) and run the step again")
        time.sleep(POLL_SECONDS)
    after = fence_details(conn, roles)
    report.roles = {role: detail.state for role, detail in after.items()}
    problems = [_why_not_fenced(conn, detail) for detail in after.values() if detail.state != FENCED]
    problems += [f"{role} still reaches {WRITER_GROUP} on {_database(conn)} after REVOKE (on PostgreSQL 16+ the "
                 "controller revokes only its own grants): an operator must revoke the rest"
                 for role in writer_logins(conn) if role not in after]
    if problems:
        raise FenceIncomplete("; ".join(problems))
    _refuse_open_paths(conn, tables, "the side stays fenced")
    report.administrators = administrators(conn)
    if witness_slot:
        report.witness = create_witness(conn, witness_slot, seconds=max(deadline - time.monotonic(), 1.0))
    report.seconds = time.monotonic() - started
    return report


def open_side(conn, roles: list[str], *, members: Sequence[str] = ()) -> dict[str, str]:
    """Lift the fence: GRANT payment_writer back to the application roles and to `members` (whom the
    fence of this side revoked it from), then RESET the read-only default the fence set. A session
    keeps the defaults it started with for its whole life, so one of these roles that connected while
    the side was fenced would go on refusing every write: when the side was not open, their sessions
    are ended, and their clients reconnect to an open side. Idempotent."""
    details = fence_details(conn, roles)
    was_open = all(detail.state == OPEN for detail in details.values())
    others = [member for member in members if member not in details and _role_exists(conn, member)]
    with conn.cursor() as cur:
        for role in [*roles, *others]:
            if role in others or not details[role].member:
                cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(WRITER_GROUP), sql.Identifier(role)))
        # the application roles, and every LOGIN role the fence made read-only because it reached
        # payment_writer through a member
        cur.execute(
            f"""SELECT r.rolname FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                CROSS JOIN unnest(s.setconfig) AS c(entry)
                WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND c.entry = 'default_transaction_read_only=on' AND r.rolcanlogin
                  AND {_reaches(conn, "r.oid", "%s::regrole")} AND r.rolname <> ALL(%s)""",
            (WRITER_GROUP, [*roles, *_exempt(conn)]))
        reopened = [*roles, *(row[0] for row in cur.fetchall())]
        for role in reopened:
            cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only").format(
                sql.Identifier(role), sql.Identifier(_database(conn))))
        if not was_open:
            cur.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                           WHERE datname = current_database() AND pid <> pg_backend_pid()
                             AND usename = ANY(%s) AND usename <> ALL(%s)""",
                        ([*reopened, *others], _exempt(conn)))
    after = fence_details(conn, roles)
    still = [detail for detail in after.values() if detail.state != OPEN]
    if still:
        raise FenceIncomplete("; ".join(
            f"{detail.role} is not open in {_database(conn)} after GRANT and RESET ({detail.state})"
            + (": a role-wide or database-wide default_transaction_read_only is set (ALTER ROLE ... RESET it by hand)"
               if detail.read_only else "") for detail in still))
    return {role: detail.state for role, detail in after.items()}


def writer_logins(conn) -> list[str]:
    """The LOGIN roles, other than the controller, that may use payment_writer's privileges now
    (directly, by inheritance, or by SET ROLE)."""
    with conn.cursor() as cur:
        cur.execute(f"""SELECT rolname FROM pg_roles r
                        WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
                          AND {_reaches(conn, "r.oid", "%s::regrole")} ORDER BY 1""", (WRITER_GROUP,))
        return [row[0] for row in cur.fetchall()]


def writer_members(conn) -> list[str]:
    """The direct members of payment_writer whose membership the fence revokes: all but the
    controller's own administrative grant (PostgreSQL 16+, INHERIT FALSE SET FALSE)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT DISTINCT m.member::regrole::text FROM pg_auth_members m
                       WHERE m.roleid = %s::regrole
                         AND m.member <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                       ORDER BY 1""", (WRITER_GROUP,))
        return [row[0] for row in cur.fetchall()]


def prepared_transactions(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("""SELECT format('prepared transaction %L (xid %s) of %s, prepared %s', gid, transaction,
                                     owner, prepared)
                       FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared""")
        return [row[0] for row in cur.fetchall()]


def administrators(conn) -> list[str]:
    """The LOGIN roles privileges cannot fence: superusers, and rds_superuser's members on RDS/Aurora."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT rolname FROM pg_roles r WHERE r.rolcanlogin AND ({_admin('r.oid')}) ORDER BY 1")
        return [row[0] for row in cur.fetchall()]


def write_paths(conn, tables: Sequence[tuple[str, str]]) -> list[WritePath]:
    """Every way a LOGIN role — not a superuser or rds_superuser member, not the controller, not the
    replication apply role — could write one of `tables` (schema, table) once payment_writer is
    revoked from everyone. Empty when the fence can hold; see the module's threat model."""
    if not tables:
        return []
    createrole = "" if conn.server_version >= 160000 else """
        UNION ALL
        SELECT l.rolname, 'has CREATEROLE, which on PostgreSQL 15 may grant it any role (payment_writer included)'
        FROM logins l WHERE l.rolcreaterole"""
    query = f"""
        WITH replicated AS (
            SELECT c.oid, c.relowner, c.relacl, format('%%I.%%I', n.nspname, c.relname) AS name
            FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(nspname, relname)
            JOIN pg_namespace n ON n.nspname = t.nspname
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.relname
        ),
        holders AS (  -- who may write a replicated table by itself (0: PUBLIC)
            SELECT relowner AS holder, 'owns ' || name AS what FROM replicated
            UNION ALL
            SELECT a.grantee, 'holds ' || a.privilege_type || ' on ' || r.name
            FROM replicated r CROSS JOIN LATERAL aclexplode(coalesce(r.relacl, acldefault('r', r.relowner))) a
            WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') AND a.grantee <> r.relowner
            UNION ALL
            SELECT a.grantee, 'holds ' || a.privilege_type || ' on column ' || r.name || '.' || quote_ident(att.attname)
            FROM replicated r JOIN pg_attribute att ON att.attrelid = r.oid AND att.attacl IS NOT NULL
            CROSS JOIN LATERAL aclexplode(att.attacl) a
            WHERE a.privilege_type IN ('INSERT', 'UPDATE')
            UNION ALL
            SELECT oid, 'is a superuser' FROM pg_roles WHERE rolsuper
        ),
        writing AS (  -- payment_writer's members lose it when the fence revokes it
            SELECT * FROM holders WHERE holder <> %(group)s::regrole
        ),
        logins AS (
            SELECT oid, rolname, rolcreaterole FROM pg_roles r
            WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> ALL(%(exempt)s) AND NOT ({_admin('r.oid')})
        ),
        owners AS (  -- roles whose SECURITY DEFINER functions and rules write as them
            SELECT DISTINCT o.owner FROM (
                SELECT proowner AS owner FROM pg_proc WHERE prosecdef
                UNION SELECT c.relowner FROM pg_rewrite rw JOIN pg_class c ON c.oid = rw.ev_class) o
            WHERE o.owner = %(group)s::regrole
               OR EXISTS (SELECT 1 FROM writing h
                          WHERE h.holder = 0 OR h.holder = o.owner OR {_reaches(conn, "o.owner", "h.holder")})
        ),
        rule_relations AS (  -- views and relations with rules over a replicated table
            SELECT DISTINCT rw.ev_class AS oid FROM pg_rewrite rw
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                            AND d.refclassid = 'pg_class'::regclass
            WHERE d.refobjid IN (SELECT oid FROM replicated) AND rw.ev_class NOT IN (SELECT oid FROM replicated)
        )
        SELECT l.rolname, h.what || CASE WHEN h.holder = 0 THEN ' (granted to PUBLIC)'
                                         WHEN h.holder = l.oid THEN ''
                                         ELSE ' as ' || h.holder::regrole::text || ' (inherited or by SET ROLE)' END
        FROM logins l JOIN writing h ON h.holder = 0 OR h.holder = l.oid OR {_reaches(conn, "l.oid", "h.holder")}
        UNION ALL
        SELECT l.rolname, format('may grant itself %%s (ADMIN OPTION)', g.holder::regrole)
        FROM logins l JOIN (SELECT DISTINCT holder FROM holders WHERE holder <> 0) g
          ON g.holder <> l.oid AND pg_has_role(l.oid, g.holder, 'MEMBER WITH ADMIN OPTION')
        UNION ALL
        SELECT l.rolname, format('may EXECUTE SECURITY DEFINER function %%I.%%I(%%s), which runs as %%s',
                                 n.nspname, p.proname, oidvectortypes(p.proargtypes), p.proowner::regrole)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN owners o ON o.owner = p.proowner
        JOIN logins l ON has_function_privilege(l.oid, p.oid, 'EXECUTE')
        WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT l.rolname, format('may write %%I.%%I, whose rules write a replicated table as its owner %%s',
                                 cn.nspname, c.relname, c.relowner::regrole)
        FROM rule_relations r JOIN pg_class c ON c.oid = r.oid JOIN pg_namespace cn ON cn.oid = c.relnamespace
        JOIN owners o ON o.owner = c.relowner
        JOIN logins l ON has_table_privilege(l.oid, c.oid, 'INSERT, UPDATE, DELETE')
        {createrole}
        ORDER BY 1, 2"""
    with conn.cursor() as cur:
        cur.execute(query, {"schemas": [schema for schema, _ in tables], "tables": [name for _, name in tables],
                            "group": WRITER_GROUP, "exempt": _exempt(conn)})
        return [WritePath(role, route) for role, route in cur.fetchall()]


def create_witness(conn, slot: str, *, seconds: float) -> dict:
    """The witness logical slot on the fenced side (kept if it exists: it has watched since the first
    fence). Its creation waits for every transaction with an id still running, so every change it
    decodes committed after the fence was complete."""
    with conn.cursor() as cur:
        cur.execute("SELECT confirmed_flush_lsn::text, plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        row = cur.fetchone()
        if row is not None:
            if row[1] != WITNESS_PLUGIN:
                raise ConfigurationError(f"replication slot {slot} exists with plugin {row[1]}, not {WITNESS_PLUGIN}: "
                                         "it is not the fence's witness; drop it or rename the slots")
            return {"slot": slot, "lsn": row[0], "created": False}
        cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(seconds * 1000)}ms",))
        try:
            cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (slot, WITNESS_PLUGIN))
            lsn = cur.fetchone()[0]
        except pg_errors.QueryCanceled as error:
            cur.execute("RESET statement_timeout")
            raise FenceIncomplete(
                f"the witness slot {slot} could not be made within {seconds:.0f} s in {_database(conn)}: it waits for "
                f"these transactions to end: {_list(_xid_holders(conn))} — end them and run the step again") from error
        cur.execute("RESET statement_timeout")
    return {"slot": slot, "lsn": lsn, "created": True}


def drop_witness(conn, slot: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active", (slot,))
        return cur.rowcount == 1


def witness_changes(conn, slot: str, tables: Sequence[tuple[str, str]]) -> tuple[list[Change], int]:
    """What the witness saw on `tables` since the fence, without consuming it: the changes other than
    INSERTs into the marker table, and the number of markers. Raises FenceBreached when the slot is
    gone: a proof that cannot be read is no proof."""
    with conn.cursor() as cur:
        cur.execute("SELECT array_agg(format('%%I.%%I', s, t)) FROM unnest(%s::text[], %s::text[]) AS x(s, t)",
                    ([schema for schema, _ in tables], [name for _, name in tables]))
        watched = set(cur.fetchone()[0] or ())
        cur.execute("SELECT format('%%I.%%I', %s::text, %s::text)", MARKER_TABLE)
        marker = cur.fetchone()[0]
        cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        if cur.fetchone() is None:
            raise FenceBreached(f"the witness slot {slot} is gone from {_database(conn)}: nothing proves that no "
                                "write reached the fenced side; compare the sides before going on")
        flush_wal(cur, "proof")  # whatever committed before this point is in what the slot decodes
        cur.execute("""SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(
                           %s, NULL, NULL, 'include-xids', '1', 'include-timestamp', '1', 'skip-empty-xacts', '1')""",
                    (slot,))
        rows = cur.fetchall()
    changes: list[Change] = []
    pending: list[Change] = []
    markers = 0
    for lsn, xid, data in rows:
        if data.startswith("COMMIT"):
            at = _COMMIT_AT.search(data)
            changes += [Change(c.xid, c.lsn, c.table, c.operation, at.group(1) if at else None) for c in pending]
            pending = []
            continue
        found = _CHANGE.match(data)
        if found is None:
            continue
        table, operation = found.group(1), found.group(2)
        if table == marker and operation == "INSERT":
            markers += 1
        elif table in watched or table == marker:
            pending.append(Change(xid, lsn, table, operation, None))
    return changes, markers


def prove(conn, slot: str, tables: Sequence[tuple[str, str]]) -> dict:
    """The proof that the fence held: nothing but the controller's markers reached `tables` on this
    side since the witness was made. Raises FenceBreached naming every other change."""
    changes, markers = witness_changes(conn, slot, tables)
    if changes:
        raise FenceBreached(
            f"{len(changes)} change(s) reached replicated tables on the fenced {_database(conn)} after the fence: "
            + "; ".join(str(change) for change in changes[:10]) + (" …" if len(changes) > 10 else "")
            + " — both sides stay fenced: find the writer (server log, %x in log_line_prefix), close its path, "
              "compare the sides")
    return {"witness_slot": slot, "markers": markers, "other_changes": 0}


_CHANGE = re.compile(r"table (.+?): (INSERT|UPDATE|DELETE|TRUNCATE)\b")
_COMMIT_AT = re.compile(r"\(at (.+)\)")


def _refuse_open_paths(conn, tables: Sequence[tuple[str, str]], consequence: str) -> None:
    paths = write_paths(conn, tables)
    if paths:
        raise FenceIncomplete(
            f"write paths the fence cannot close on {_database(conn)} ({consequence}): "
            + "; ".join(str(path) for path in paths[:20]) + (" …" if len(paths) > 20 else "")
            + " — revoke them (schema/roles.sql converges its own objects), or make the role NOLOGIN for the cutover")


def _reaches(conn, member: str, role: str) -> str:
    """SQL: `member` may use `role`'s privileges, by inheritance or by SET ROLE."""
    if conn.server_version >= 160000:
        return f"(pg_has_role({member}, {role}, 'USAGE') OR pg_has_role({member}, {role}, 'SET'))"
    return f"pg_has_role({member}, {role}, 'MEMBER')"


def _admin(role: str) -> str:
    """SQL: `role` is a superuser, or a member of rds_superuser where that role exists."""
    return (f"(SELECT rolsuper FROM pg_roles WHERE oid = {role}) OR COALESCE((SELECT pg_has_role({role}, oid, "
            f"'MEMBER') FROM pg_roles WHERE rolname = '{ADMIN_GROUP}'), false)")


def _exempt(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT current_user")
        return [cur.fetchone()[0], *APPLY_ROLES]


def _role_exists(conn, role: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regrole(%s) IS NOT NULL", (role,))
        return cur.fetchone()[0]


def _xid_holders(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("""SELECT format('pid %s (%s, transaction since %s)', pid, coalesce(usename, backend_type),
                                     xact_start)
                       FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()""")
        return [row[0] for row in cur.fetchall()] + prepared_transactions(conn)


def _list(items: Sequence[str]) -> str:
    return "; ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def _end_sessions(conn, roles: list[str], fenced_at) -> tuple[list[int], list[str]]:
    """End, and wait for, every backend in this database that started before `fenced_at` and is a
    session of `roles` or holds a transaction id (it wrote before the fence), but the controller's
    own, the replication apply's and the server's. Return the ended pids, and what must still be
    waited for: backends not identified yet, and those the controller may not end (a superuser's, an
    rds_superuser member's) while they hold a transaction id."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT a.pid, a.usename IS NULL, a.usesysid IS NOT NULL AND ({_admin('a.usesysid')}),
                       format('pid %%s (%%s, transaction since %%s: %%s)', a.pid,
                              coalesce(a.usename, a.backend_type), a.xact_start, left(a.query, 60))
                FROM pg_stat_activity a
                WHERE a.pid <> pg_backend_pid()
                  AND a.backend_start < %(fenced_at)s
                  AND (a.datname = current_database() OR a.datname IS NULL)
                  AND a.backend_type <> ALL(%(system)s) AND a.backend_type NOT LIKE 'logical replication%%'
                  AND (a.usename IS NULL OR a.usename <> ALL(%(exempt)s))
                  AND (a.usename IS NULL OR a.usename = ANY(%(roles)s)
                       OR (a.backend_xid IS NOT NULL AND a.xact_start < %(fenced_at)s))""",
            {"fenced_at": fenced_at, "system": list(_SYSTEM_BACKENDS), "exempt": _exempt(conn), "roles": list(roles)})
        found = cur.fetchall()
        terminated, waiting = [], []
        for pid, unidentified, admin, description in found:
            if unidentified or admin:
                # an admin's session without a transaction id holds nothing yet: the witness watches it
                if unidentified or _holds_xid(cur, pid):
                    waiting.append(description)
                continue
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            terminated.append(pid)
        # Wait until they are gone, so their last transactions are over (committed or not) before the
        # marker is written behind them: all at once (pg_terminate_backend's own wait polls every
        # 100 ms, one backend after the other).
        deadline = time.monotonic() + TERMINATE_WAIT_MS / 1000
        while terminated:
            cur.execute("SELECT array_agg(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", (terminated,))
            left = cur.fetchone()[0]
            if not left:
                break
            if time.monotonic() > deadline:
                waiting += [f"pid {pid} (ended, still exiting after {TERMINATE_WAIT_MS} ms)" for pid in left]
                break
            time.sleep(POLL_SECONDS)
    return terminated, waiting


def _holds_xid(cur, pid: int) -> bool:
    cur.execute("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s", (pid,))
    row = cur.fetchone()
    return bool(row and row[0])


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
