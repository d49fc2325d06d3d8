"""PostgreSQL logical replication standing in for the DMS tasks (tests, rehearsal).

Each side publishes the payment tables and the marker table (publication `publication`). A direction
is a subscription on its target, named like its slot on the source: forward = subscription on AWS
(Aurora) from on-prem's publication, fallback = subscription on on-prem from AWS's publication.

Stopping a direction drops its subscription (detached from its slot, which the step drops on the old
source); starting one creates the subscription on an existing slot with copy_data = false, so it
replicates from the slot's position, and waits until the publisher streams to it.

Subscriptions are managed over `admin` connections: on PostgreSQL 15 and older only a superuser may
create, alter or drop one; from 16 on, payment_controller can (pg_create_subscription, schema/roles.sql),
and reads how far a subscription applied (pg_replication_origin_progress, granted there too).
`controller` connections read slots and the publisher's walsender state (pg_read_all_stats).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import psycopg2
from psycopg2 import sql
from psycopg2.extras import LogicalReplicationConnection

from payment_common.sides import Direction
from payment_cutover import slots
from payment_cutover.errors import SwitchPending
from payment_cutover.replication import ABSENT, RUNNING, STARTING, STOPPED, DirectionState

POLL_SECONDS = 0.05
MARKER_TABLE = ("payment_control", "cutover_marker")


def conninfo(**params: object) -> str:
    """A libpq connection string, every value quoted (for a subscription's CONNECTION)."""
    def quote(value: object) -> str:
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{key}={quote(value)}" for key, value in params.items() if value is not None)


def create_publication(admin_conn, name: str, schema: str, tables: list[str]) -> None:
    """The side's publication: the payment tables and the marker table (setup, by their owner or a
    superuser). Idempotent."""
    with admin_conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
        if cur.fetchone():
            return
        relations = [sql.Identifier(schema, table) for table in tables] + [sql.Identifier(*MARKER_TABLE)]
        cur.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(name), sql.SQL(", ").join(relations)))


def subscribe(admin_conn, name: str, publisher_conninfo: str, publication: str, *, copy_data: bool,
              create_slot: bool) -> None:
    """Create the subscription `name` (slot `name` on the publisher) if it does not exist. One that
    exists but was left disabled (a drop_subscription that stopped half-way) is attached to its slot
    again and enabled: it goes on from where its slot is."""
    with admin_conn.cursor() as cur:
        row = _subscription(cur, name)
        if row is not None:
            _, enabled, slot = row
            if slot is None:
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = {})").format(
                    sql.Identifier(name), sql.Literal(name)))
            if not enabled:
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))
            return
        cur.execute(sql.SQL(
            "CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {publication} "
            "WITH (slot_name = {slot}, create_slot = {create_slot}, copy_data = {copy_data}, enabled = true)"
        ).format(name=sql.Identifier(name), conninfo=sql.Literal(publisher_conninfo),
                 publication=sql.Identifier(publication), slot=sql.Literal(name),
                 create_slot=sql.Literal(create_slot), copy_data=sql.Literal(copy_data)))


def _subscription(cur, name: str) -> tuple | None:
    """(oid, enabled, slot name) of the subscription `name` in this database, or None."""
    cur.execute("SELECT oid, subenabled, subslotname FROM pg_subscription WHERE subname = %s AND subdbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())", (name,))
    return cur.fetchone()


ABSENT_SUBSCRIPTION = object()


def disable_subscription(admin_conn, name: str, *, timeout_seconds: float):
    """Disable the subscription and wait until its apply worker has exited; return the remote
    position its replication origin applied up to (WAL flushed on the target up to that commit
    first), None if it applied nothing, ABSENT_SUBSCRIPTION if there is no such subscription.
    Raises SwitchPending if the worker is still running after `timeout_seconds`."""
    with admin_conn.cursor() as cur:
        row = _subscription(cur, name)
        if row is None:
            return ABSENT_SUBSCRIPTION
        oid, enabled, _ = row
        if enabled:
            cur.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
        deadline = time.monotonic() + timeout_seconds
        while True:
            cur.execute("SELECT count(*) FROM pg_stat_subscription WHERE subid = %s AND pid IS NOT NULL", (oid,))
            if cur.fetchone()[0] == 0:
                break
            if time.monotonic() >= deadline:
                raise SwitchPending(f"subscription {name} disabled, but its workers still run after "
                                    f"{timeout_seconds:g} s; the step can be retried")
            time.sleep(POLL_SECONDS)
        # the origin a subscription applies under is named after its oid (pg_<oid>)
        cur.execute("SELECT pg_replication_origin_progress(%s, true)::text", (f"pg_{oid}",))
        return cur.fetchone()[0]


def drop_subscription(admin_conn, name: str) -> bool:
    """Disable, detach from its slot and drop the subscription (the slot stays on the publisher)."""
    with admin_conn.cursor() as cur:
        row = _subscription(cur, name)
        if row is None:
            return False
        _, enabled, slot = row
        if enabled:
            cur.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
        if slot is not None:
            cur.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(name)))
        cur.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))
    return True


class PostgresLogicalReplication:
    plugin = "pgoutput"
    apply_role = None  # the subscription's owner applies (a superuser on PostgreSQL 15)

    def __init__(self, *, controller: Mapping[str, object], admin: Mapping[str, object],
                 publisher_conninfo: Mapping[str, str], slot_names: Mapping[str, str], publication: str) -> None:
        self.controller = controller
        self.admin = admin
        self.publisher_conninfo = publisher_conninfo
        self.slot_names = slot_names
        self.publication = publication

    def slot_name(self, direction: Direction) -> str:
        return self.slot_names[direction.name]

    def state(self, direction: Direction) -> DirectionState:
        name = self.slot_name(direction)
        with self.admin[direction.target].cursor() as cur:
            cur.execute(
                """SELECT s.subenabled,
                          (SELECT pid FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL),
                          (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
                   FROM pg_subscription s
                   WHERE s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())""",
                (name,))
            row = cur.fetchone()
        if row is None:
            return DirectionState(direction, ABSENT, f"no subscription {name} on {direction.target}")
        enabled, worker, syncing = row
        if not enabled:
            return DirectionState(direction, STOPPED, f"subscription {name} on {direction.target} is disabled")
        walsender = self._walsender_state(direction)
        if worker is None or walsender != "streaming" or syncing:
            return DirectionState(direction, STARTING,
                                  f"subscription {name}: apply worker {worker or 'not started'}, publisher "
                                  f"walsender {walsender or 'absent'}, {syncing} table(s) still copying")
        return DirectionState(direction, RUNNING, f"subscription {name} streaming from {direction.source}")

    def stop(self, direction: Direction, *, timeout_seconds: float) -> str:
        """Disable the subscription, move its slot up to what the target applied, drop it.

        The subscription's replication origin, not the slot, knows how far the target applied: the
        slot's confirmed position is the last one the apply worker reported, which may be older. A
        subscription dropped without moving the slot and made again on it (an abort restarting a
        switch that crashed after the drop) would be sent transactions the target already holds;
        the first INSERT among them stops its apply for good (duplicate key). So once the worker has
        exited, the origin's progress (flushed on the target first) becomes the slot's position,
        before anything is dropped; a crash at any point leaves either the subscription with its
        origin or a slot that starts after the last applied transaction."""
        name = self.slot_name(direction)
        target = self.admin[direction.target]
        applied = disable_subscription(target, name, timeout_seconds=timeout_seconds)
        if applied is ABSENT_SUBSCRIPTION:
            return f"{direction}: no subscription {name} on {direction.target} (already stopped)"
        moved = ""
        if applied is not None:
            position = slots.advance_slot(self.controller[direction.source], name, applied,
                                          timeout_seconds=timeout_seconds)
            if position is not None:
                moved = f", slot {name} on {direction.source} moved to {position} (applied up to {applied})"
        drop_subscription(target, name)
        return f"{direction}: subscription {name} on {direction.target} disabled{moved}, detached, dropped"

    def start(self, direction: Direction, *, start_lsn: str, timeout_seconds: float) -> str:
        name = self.slot_name(direction)
        subscribe(self.admin[direction.target], name, self.publisher_conninfo[direction.source], self.publication,
                  copy_data=False, create_slot=False)
        deadline = time.monotonic() + timeout_seconds
        while not (state := self.state(direction)).running:
            if time.monotonic() >= deadline:
                raise SwitchPending(f"{direction} created but not streaming after {timeout_seconds:g} s "
                                    f"({state.detail}); the step can be retried")
            time.sleep(POLL_SECONDS)
        return f"{direction}: subscription {name} on {direction.target} streaming from slot {name} at {start_lsn}"

    def check_can_start(self, direction: Direction, *, timeout_seconds: float = 10.0) -> list[str]:
        """The source publishes, the target's admin role may create the subscription, and the publisher
        accepts the subscription's replication connection (made here with its connection string)."""
        problems = []
        with self.controller[direction.source].cursor() as cur:
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,))
            if cur.fetchone() is None:
                problems.append(f"{direction}: no publication {self.publication} on {direction.source}")
        with self.admin[direction.target].cursor() as cur:
            cur.execute("""SELECT current_user, r.rolsuper OR (current_setting('server_version_num')::int >= 160000
                                  AND pg_has_role('pg_create_subscription', 'MEMBER')
                                  AND has_database_privilege(current_database(), 'CREATE'))
                           FROM pg_roles r WHERE r.rolname = current_user""")
            role, may_subscribe = cur.fetchone()
        if not may_subscribe:
            problems.append(f"{direction}: role {role} on {direction.target} may not create a subscription (a "
                            "superuser on PostgreSQL 15; pg_create_subscription and CREATE on the database from 16)")
        try:
            publisher = psycopg2.connect(self.publisher_conninfo[direction.source],
                                         connect_timeout=max(int(timeout_seconds), 2),
                                         connection_factory=LogicalReplicationConnection)
            try:
                with publisher.cursor() as cur:
                    cur.execute("IDENTIFY_SYSTEM")
                    cur.fetchone()
            finally:
                publisher.close()
        except psycopg2.Error as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problems.append(f"{direction}: {direction.source} refuses the subscription's replication connection: "
                            f"{message}")
        return problems

    def _walsender_state(self, direction: Direction) -> str | None:
        with self.controller[direction.source].cursor() as cur:
            cur.execute("""SELECT r.state FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
                           WHERE s.slot_name = %s""", (self.slot_name(direction),))
            row = cur.fetchone()
        return row[0] if row else None
