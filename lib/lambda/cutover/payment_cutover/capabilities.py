"""What a side's server must offer before a switch begins, checked on the controller's connection
without changing anything that outlives the check: a refusal before the fence costs nothing, one
after the forward slot is dropped leaves both sides fenced.

`check_side` answers a list of problems, each naming what to change (empty: nothing found).
"""

from __future__ import annotations

import psycopg2
from psycopg2 import errorcodes

MIN_SERVER_VERSION_NUM = 150000  # GRANT SET ON PARAMETER (15); pg_terminate_backend with a timeout (14)
TRIAL_SLOT_SECONDS = 5


def check_side(conn, slot_plugin: str, *, apply_role: str | None = None,
               trial_slot_seconds: float = TRIAL_SLOT_SECONDS) -> list[str]:
    """The server of `conn` can be a replication source and target for the cutover:

    - PostgreSQL 15 or later;
    - wal_level = logical, and a replication slot free (max_replication_slots above the slots that exist);
    - the connected role may create a slot (REPLICATION, superuser, or rds_replication on RDS/Aurora),
      proven with a temporary slot of `slot_plugin` (dropped at once; it waits at most
      `trial_slot_seconds` for the transactions in progress, which every new slot waits for; 0 skips
      it, for a side under load whose long transactions only the fence ends);
    - `apply_role`, when given (the DMS target endpoints' user), may SET session_replication_role.
    """
    problems = []
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
                    "current_setting('wal_level'), current_setting('max_replication_slots')::int, "
                    "(SELECT count(*) FROM pg_replication_slots), current_user, "
                    "(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), "
                    "EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_replication') "
                    "  AND pg_has_role(current_user, 'rds_replication', 'MEMBER')")
        version_num, version, wal_level, max_slots, slots_used, role, replication, rds_replication = cur.fetchone()
    if version_num < MIN_SERVER_VERSION_NUM:
        problems.append(f"PostgreSQL {version} is too old: 15 or later is needed (the fence's "
                        "pg_terminate_backend with a timeout, GRANT SET ON PARAMETER session_replication_role)")
    if wal_level != "logical":
        problems.append(f"wal_level is {wal_level}, not logical: no logical slot can be made (set it and restart; "
                        "on Aurora rds.logical_replication = 1)")
    if slots_used >= max_slots:
        problems.append(f"all {max_slots} replication slots are taken (max_replication_slots): the new direction's "
                        "slot needs one free (drop an unused slot or raise max_replication_slots)")
    if not (replication or rds_replication):
        problems.append(f"role {role} may not create replication slots: give it REPLICATION (RDS/Aurora: GRANT "
                        "rds_replication), as schema/roles.sql does")
    if apply_role is not None and version_num >= MIN_SERVER_VERSION_NUM:
        problems += _apply_role_problems(conn, apply_role)
    if not problems and trial_slot_seconds > 0:
        problems += _trial_slot_problems(conn, slot_plugin, trial_slot_seconds)
    return problems


def _apply_role_problems(conn, apply_role: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (apply_role,))
        row = cur.fetchone()
        if row is None:
            return [f"role {apply_role} (the replication apply user) does not exist: apply schema/roles.sql"]
        cur.execute("SELECT has_parameter_privilege(%s, 'session_replication_role', 'SET')", (apply_role,))
        (may_set,) = cur.fetchone()
    if row[0] or may_set:
        return []
    return [f"role {apply_role} may not SET session_replication_role, which the DMS target endpoint runs on connect: "
            f"GRANT SET ON PARAMETER session_replication_role TO {apply_role} (as schema/roles.sql does; on Aurora "
            "as an rds_superuser member)"]


def _trial_slot_problems(conn, plugin: str, seconds: float) -> list[str]:
    """Create and drop a temporary logical slot: the plugin exists, a slot can be made right now."""
    with conn.cursor() as cur:
        cur.execute("SELECT 'payment_check_' || pg_backend_pid(), current_setting('statement_timeout')")
        name, timeout_before = cur.fetchone()
        cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(seconds * 1000)}ms",))
        problem = None
        try:
            cur.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", (name, plugin))
            cur.execute("SELECT pg_drop_replication_slot(%s)", (name,))
        except psycopg2.Error as error:
            if not conn.autocommit:
                conn.rollback()
            message = str(error).strip().splitlines()[0]
            if error.pgcode == errorcodes.QUERY_CANCELED:  # the statement timeout
                message = (f"no slot within {seconds:g} s: a new slot waits for every transaction in progress "
                           "(long or prepared ones: pg_stat_activity, pg_prepared_xacts)")
            problem = f"a temporary logical slot with plugin {plugin} could not be made: {message}"
        cur.execute("SELECT set_config('statement_timeout', %s, false)", (timeout_before,))
    return [problem] if problem else []
