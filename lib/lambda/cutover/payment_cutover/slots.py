"""Logical replication slots, created and dropped with SQL by the controller (REPLICATION, or
rds_replication on RDS/Aurora). Slot names are fixed per direction and environment and configured
on the replication source (DMS source endpoint SlotName, or the stand-in's subscription)."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors

from payment_common.errors import ConfigurationError
from payment_cutover.errors import SwitchPending

POLL_SECONDS = 0.05


def slot_info(conn, name: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("""SELECT slot_name, plugin, slot_type, database, active, active_pid,
                              confirmed_flush_lsn::text
                       FROM pg_replication_slots WHERE slot_name = %s""", (name,))
        row = cur.fetchone()
    if row is None:
        return None
    info = dict(zip(("slot_name", "plugin", "slot_type", "database", "active", "active_pid",
                     "confirmed_flush_lsn"), row))
    if info["database"] != conn.info.dbname:
        raise ConfigurationError(f"replication slot {name} belongs to database {info['database']}, not "
                                 f"{conn.info.dbname}: slot names must be unique per server (check the slot names)")
    return info


def create_slot(conn, name: str, plugin: str) -> str:
    """Create the logical slot; it starts at the server's current WAL position. Returns that LSN."""
    with conn.cursor() as cur:
        cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (name, plugin))
        return cur.fetchone()[0]


def advance_slot(conn, name: str, lsn: str, *, timeout_seconds: float) -> str | None:
    """Move the slot's confirmed position forward to `lsn` once nothing streams from it (never
    backwards: an older `lsn` leaves it where it is). Returns its position after, None if there is
    no slot. Raises SwitchPending if a consumer still holds it after `timeout_seconds`."""
    def advance(cur):
        try:
            # pg_replication_slot_advance refuses a position behind the slot's
            cur.execute("SELECT (pg_replication_slot_advance(slot_name, greatest(%s::pg_lsn, confirmed_flush_lsn)))"
                        ".end_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (lsn, name))
        except psycopg2.errors.ObjectInUse:
            return _TAKEN
        row = cur.fetchone()
        return row[0] if row else None

    found = _once_free(conn, name, timeout_seconds, advance)
    return None if found is _MISSING else found


def drop_slot(conn, name: str, *, timeout_seconds: float) -> bool:
    """Drop the slot once nothing streams from it. False if there was none. Raises SwitchPending if
    a consumer still holds it after `timeout_seconds` (its task or worker is still stopping)."""
    def drop(cur):
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active", (name,))
        return True if cur.rowcount == 1 else _TAKEN

    return _once_free(conn, name, timeout_seconds, drop) is not _MISSING


_MISSING, _TAKEN = object(), object()


def _once_free(conn, name: str, timeout_seconds: float, act):
    """`act(cursor)`'s result once no consumer holds the slot (`_TAKEN` from it: a consumer took the
    slot between the check and the act, wait again); `_MISSING` if there is no slot. Raises
    SwitchPending if a consumer still holds it after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        info = slot_info(conn, name)
        if info is None:
            return _MISSING
        if not info["active"]:
            with conn.cursor() as cur:
                result = act(cur)
            if result is not _TAKEN:
                return result
        if time.monotonic() >= deadline:
            raise SwitchPending(f"replication slot {name} on {conn.info.dbname} is still in use by pid "
                                f"{info['active_pid']} after {timeout_seconds:g} s; the step can be retried")
        time.sleep(POLL_SECONDS)
