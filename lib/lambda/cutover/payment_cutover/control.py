"""The controller's own records in payment_control (schema/roles.sql), never replicated: the switch
lease and the fence record.

THE LEASE: one switch at a time. A row on the on-prem database (the one both switch directions
reach) naming its holder — the Step Functions execution — and a fencing token that every invocation
that takes it increments. Every mutating step takes it when it starts and checks it before each
change; a second execution, a rollback's execution or a CLI abort finds it held (LeaseHeld, nothing
changed), and an invocation whose lease was taken over by a retried invoke of its own execution
finds its token stale (LeaseLost) before its next change. A lease expires `seconds` after it was
last taken or checked (longer than one invocation can run), so a dead execution blocks the next one
for at most that long; the end of a switch (set_writer) and `abort` release it.

THE FENCE RECORD: on the fenced side, one row per fence the switch made, ordered by a sequence (not
a clock). It binds the steps after the fence to that fence: the markers written behind it (the
catch-up proof is the last of them, never "the newest marker of any age"), the witness slot (the
proof), the payment_writer members it revoked (opening the side grants them back), whether the
switch dropped the old direction's slot (so "both slots absent" is known to be the switch's own
doing, and an error otherwise), and when it was proven and released.

THE MUTEX: the lease orders steps; within a step, taking or checking the lease and the changes that
follow must not interleave with another invocation's (a check, then someone else's change, then
ours). Each mutating step therefore runs whole inside `switch_mutex`, a session advisory lock on the
on-prem database, so two invocations never change anything at the same time, whatever they are. The
session holding it ends with its invocation (the connections' idle_session_timeout covers a frozen
one), and the lock with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from payment_cutover.errors import LeaseHeld, LeaseLost, SwitchPending

LEASE_TABLE = "payment_control.cutover_lease"
FENCE_TABLE = "payment_control.cutover_fence"
LEASE = "switch"
MUTEX_KEY = 7_306_520_263_657_002_339  # pg_advisory_lock key of the switch mutex ("payment-migration switch")
POLL_SECONDS = 0.05


@contextmanager
def switch_mutex(conn, *, wait_seconds: float) -> Iterator[None]:
    """Hold the switch mutex for the block. Raises SwitchPending (retryable) if another invocation
    holds it past `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (MUTEX_KEY,))
            if cur.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                cur.execute("""SELECT string_agg(format('pid %%s (%%s, %%s)', a.pid, a.usename, a.application_name), ', ')
                               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                               WHERE l.locktype = 'advisory' AND l.granted
                                 AND (l.classid::bigint << 32) + l.objid::bigint = %s""", (MUTEX_KEY,))
                raise SwitchPending(f"another invocation holds the switch mutex ({cur.fetchone()[0] or 'unknown'}) "
                                    f"after {wait_seconds:g} s; the step can be retried")
            time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        if not conn.closed:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MUTEX_KEY,))


@dataclass(frozen=True)
class Lease:
    holder: str
    token: int


def take_lease(conn, holder: str, *, seconds: float) -> Lease:
    """Take the lease for `holder` (free, expired, or already its own), with a new token."""
    with conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {LEASE_TABLE} AS l (lease, holder, token, taken_at, expires_at)
                VALUES (%(lease)s, %(holder)s, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => %(seconds)s))
                ON CONFLICT (lease) DO UPDATE
                  SET holder = EXCLUDED.holder, token = l.token + 1, taken_at = EXCLUDED.taken_at,
                      expires_at = EXCLUDED.expires_at
                  WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
                RETURNING token""",
            {"lease": LEASE, "holder": holder, "seconds": seconds})
        row = cur.fetchone()
        if row is not None:
            return Lease(holder, row[0])
        cur.execute(f"SELECT holder, expires_at FROM {LEASE_TABLE} WHERE lease = %s", (LEASE,))
        other, expires_at = cur.fetchone()
    raise LeaseHeld(f"{other} holds the switch lease until {expires_at}: one switch at a time; nothing was changed "
                    "(wait for it to end, or for the lease to expire if it died)")


def check_lease(conn, lease: Lease, *, seconds: float) -> None:
    """Still ours, with our token: extend it. Raises LeaseLost otherwise."""
    with conn.cursor() as cur:
        cur.execute(f"""UPDATE {LEASE_TABLE}
                        SET expires_at = clock_timestamp() + make_interval(secs => %s)
                        WHERE lease = %s AND holder = %s AND token = %s AND expires_at > clock_timestamp()
                        RETURNING token""", (seconds, LEASE, lease.holder, lease.token))
        if cur.fetchone() is not None:
            return
        cur.execute(f"SELECT holder, token, expires_at FROM {LEASE_TABLE} WHERE lease = %s", (LEASE,))
        row = cur.fetchone()
    now = f"held by {row[0]} with token {row[1]} until {row[2]}" if row else "not held"
    raise LeaseLost(f"the switch lease of {lease.holder} (token {lease.token}) was lost (now {now}): this invocation "
                    "stops before its next change")


def release_lease(conn, lease: Lease) -> bool:
    with conn.cursor() as cur:
        cur.execute(f"""UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp()
                        WHERE lease = %s AND holder = %s AND token = %s""", (LEASE, lease.holder, lease.token))
        return cur.rowcount == 1


@dataclass(frozen=True)
class FenceRecord:
    fence_id: int
    side: str
    holder: str
    witness_slot: str | None
    revoked: tuple[str, ...]
    last_marker: str | None
    old_slot_dropped: bool
    proven: bool

    def to_dict(self) -> dict:
        return {"fence_id": self.fence_id, "side": self.side, "holder": self.holder,
                "witness_slot": self.witness_slot, "last_marker": self.last_marker,
                "old_slot_dropped": self.old_slot_dropped, "proven": self.proven}


_COLUMNS = "fence_id, side, holder, witness_slot, revoked, last_marker::text, old_slot_dropped, proven_at IS NOT NULL"


def current_fence(conn, side: str) -> FenceRecord | None:
    """The side's fence that is still in force (not released), the newest if several."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM {FENCE_TABLE} WHERE side = %s AND released_at IS NULL "
                    "ORDER BY fence_id DESC LIMIT 1", (side,))
        row = cur.fetchone()
    return _record(row)


def record_fence(conn, side: str, holder: str, *, witness_slot: str | None, revoked: list[str]) -> FenceRecord:
    """The fence in force for `side`: the existing one (a re-run keeps what it recorded, adding any
    member revoked now), or a new one."""
    existing = current_fence(conn, side)
    with conn.cursor() as cur:
        if existing is not None:
            cur.execute(f"""UPDATE {FENCE_TABLE}
                            SET revoked = ARRAY(SELECT DISTINCT unnest(revoked || %s::text[]) ORDER BY 1)
                            WHERE fence_id = %s RETURNING {_COLUMNS}""", (revoked, existing.fence_id))
        else:
            cur.execute(f"""INSERT INTO {FENCE_TABLE} (side, holder, witness_slot, revoked)
                            VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}""", (side, holder, witness_slot, revoked))
        return _record(cur.fetchone())


def update_fence(conn, record: FenceRecord, **changes) -> None:
    """Record on the fence: last_marker (uuid), old_slot_dropped (bool), proven (True)."""
    columns = {"last_marker": "last_marker = %s::uuid", "old_slot_dropped": "old_slot_dropped = %s",
               "proven": "proven_at = CASE WHEN %s THEN clock_timestamp() END"}
    assignments = [columns[name] for name in changes]
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {FENCE_TABLE} SET {', '.join(assignments)} WHERE fence_id = %s",
                    (*changes.values(), record.fence_id))


def release_fence(conn, record: FenceRecord) -> None:
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {FENCE_TABLE} SET released_at = clock_timestamp() WHERE fence_id = %s "
                    "AND released_at IS NULL", (record.fence_id,))


def _record(row) -> FenceRecord | None:
    if row is None:
        return None
    fence_id, side, holder, witness_slot, revoked, last_marker, dropped, proven = row
    return FenceRecord(fence_id, side, holder, witness_slot, tuple(revoked or ()), last_marker, dropped, proven)
