"""The steps of a data cutover (and of a rollback after it, the same with the sides swapped), in the
order the state machine calls them:

    preflight → checkpoint → [validation of the live replica] → catch_up → fence → wait_replication →
    validate_changes → advance_sequences → [validation of the sequences] → switch_replication →
    prove_fence → open → set_writer → [weights]

and `abort`, the Catch path. Every step is idempotent and detects work already done, so an execution
that failed can be run again from the start. Each takes the controller's connections and clients in
a `Controller` and returns a JSON-able dict.

Invariants the steps enforce rather than assume: the side that is not the writer is fenced; a side is
opened only while the other is fenced, replication runs from it back to the other, and the witness
proves that nothing but the controller's markers reached the old writer's replicated tables after
its fence; the old replication direction is stopped only after a marker written behind THIS fence
(payment_control.cutover_fence) has reached the new writer; the new direction starts from a slot
made while its source was fenced; one switch at a time — every mutating step runs inside the switch
mutex holding the switch lease (payment_cutover.control), so a second execution, a retried invoke,
a rollback or an abort cannot interleave with it.

The fenced window holds no full comparison: `checkpoint` makes a logical slot (test_decoding) on
each side before the live validation (the validation Lambda, settle-and-recheck) compares every
row; inside the fence `validate_changes` compares only the keys those slots decoded since, and the
sequences (payment_validation.engine says why that proves as much). The target's slot catches what
reached the target other than through replication since the checkpoint; the exact row counts are
O(rows) and counted only with CHECKPOINT_COUNT_ROWS=true. The slots are the controller's: peeking
a slot needs REPLICATION, which the validator's role does not have, so the step Lambda reads them
and runs the comparison itself with the validation engine (bundled into its zip), as the controller
role, which may SELECT the payment tables on both sides. A slot retains WAL while it exists:
`set_writer` and `abort` drop them, the next `checkpoint` replaces whatever an earlier run left,
and `status` shows them. A fallback to every row must fit in one invocation (WAIT_SECONDS + 60 s):
on a database too large for that it times out, and the execution aborts and reopens the old writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import errors as pg_errors

from payment_validation.changes import CHECKPOINT_PLUGIN, ChangesUnreadable, current_lsn, read_changes
from payment_validation.engine import ValidationOptions, validate, validate_changes as compare_changes

from payment_common.sides import ONPREM, SIDES, Direction, other
from payment_common.writer import read_writer
from payment_cutover import capabilities, control, markers, slots
from payment_cutover import fence as fencing
from payment_cutover.errors import (
    FenceIncomplete,
    ReplicationBehind,
    RoutingNotSettled,
    ReplicationLoop,
    ReplicationNotRunning,
    SwitchPending,
    WriterMismatch,
)
from payment_cutover.replication import STARTING, ReplicationDriver
from payment_cutover.sequences import advance_sequences as advance
from payment_cutover.writer import set_writer as put_writer

LEGACY = "legacy"
FOLLOWS_WRITER = "follows-writer"
LEGACY_CHECK_SECONDS = 5  # the gate reads the routing and the on-prem application's sessions this often


@dataclass
class Controller:
    databases: Mapping[str, Any]  # the controller role's autocommit connection to each side
    driver: ReplicationDriver
    ssm: Any
    writer_parameter: str
    roles: list[str] = field(default_factory=lambda: ["payment_app"])
    schema: str = "public"
    tables: list[str] = field(default_factory=list)
    wait_seconds: float = 20.0  # bound of one invocation's waits (marker, task state, slot release)
    holder: str = "controller"  # who takes the switch lease: the Step Functions execution
    lease_seconds: float = 140.0  # longer than one invocation can run (its timeout is wait_seconds + 60)
    max_changed_rows: int = 1_000_000  # beyond, validate_changes compares every row
    count_rows: bool = False  # validate_changes also counts every table's rows (O(rows), inside the fence)
    # the scheduled validation: every row at most this often, else what changed; rechecks on live data
    full_every_seconds: int = 86_400
    recheck_rounds: int = 3
    recheck_seconds: float = 5.0
    # How the on-prem application finds the writer (legacy_gate): "legacy" (it does not) or
    # "follows-writer"; its own database role, when it has one; the quiet window a legacy gate needs.
    onprem_application: str = FOLLOWS_WRITER
    onprem_application_role: str | None = None
    legacy_window_seconds: float = 0.0
    lease: control.Lease | None = field(default=None, init=False)

    @property
    def replicated(self) -> list[tuple[str, str]]:
        """The replicated tables: the payment tables and the marker table."""
        return [(self.schema, table) for table in self.tables] + [markers.MARKER_TABLE]

    def witness_slot(self, side: str) -> str:
        """The witness slot of a fence of `side`, named after the slot of the direction it is the source of."""
        return f"{self.driver.slot_name(Direction(side, other(side)))[:55]}_witness"

    def checkpoint_slot(self, side: str) -> str:
        """The checkpoint slot of a switch away from `side` (made there before its live validation)."""
        return f"{self.driver.slot_name(Direction(side, other(side)))[:52]}_checkpoint"


@contextmanager
def switching(c: Controller) -> Iterator[control.Lease]:
    """The body of a mutating step: inside the switch mutex, holding the switch lease (taken now, with
    a new token: an earlier invocation of the same execution loses it)."""
    lease_db = c.databases[ONPREM]
    with control.switch_mutex(lease_db, wait_seconds=c.wait_seconds):
        c.lease = control.take_lease(lease_db, c.holder, seconds=c.lease_seconds)
        try:
            yield c.lease
        finally:
            c.lease = None


def legacy_gate(c: Controller, source: str, target: str, *, weights: Mapping[str, int], since: str | None) -> dict:
    """Before a data cutover away from on-prem when the on-prem application is legacy (it writes to
    its own database whoever is the writer): `weights` (the routing, read by the execution just
    before) must send all traffic to `target`, and on `source` the on-prem application's role must
    have had no session busy — in a transaction, running a statement, or finished one — for
    legacy_window_seconds (the routing TTL plus a margin), counted from `since` (the first check of
    this execution; "" for none). Returns `settled` and, when not yet, `wait_seconds` before the
    next check. Any activity of the role moves the window's start past it; routing that is not all
    on `target` fails (RoutingNotSettled): nothing was changed. pg_stat_activity shows sessions
    that exist: a connection opened, used and closed between two checks is invisible, which is why
    the routing, read at every check, must hold too. With "follows-writer" it passes at once."""
    if c.onprem_application != LEGACY or source != ONPREM:
        return {"settled": True, "onprem_application": c.onprem_application, "wait_seconds": 0}
    if weights.get(target) != 100 or weights.get(source) != 0:
        raise RoutingNotSettled(
            f"the on-prem application is legacy: the data cutover runs only once all traffic goes to {target} "
            f"(advance to aws-primary first, then wait {c.legacy_window_seconds:g} s); the weights are {dict(weights)}")
    conn = c.databases[source]
    with conn.cursor() as cur:
        cur.execute("SELECT now()")
        now = cur.fetchone()[0]
        start = now if not since else _timestamp(cur, since)
        last, sessions = None, 0
        if c.onprem_application_role:
            # Any state but idle is activity now; an idle session's state_change is when its last
            # statement ended. (The controller has pg_read_all_stats: other roles' rows are visible.)
            cur.execute("SELECT count(*), max(CASE WHEN state = 'idle' THEN state_change ELSE now() END) "
                        "FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'",
                        (c.onprem_application_role,))
            sessions, last = cur.fetchone()
        if last is not None and last > start:
            start = last
        cur.execute("SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)::float8", (now, start))
        quiet = max(0.0, cur.fetchone()[0])
    remaining = c.legacy_window_seconds - quiet
    return {"settled": remaining <= 0, "onprem_application": LEGACY, "since": start.isoformat(),
            "quiet_seconds": round(quiet, 1), "window_seconds": c.legacy_window_seconds, "weights": dict(weights),
            "role": c.onprem_application_role, "role_sessions": sessions,
            "role_last_active": None if last is None else last.isoformat(),
            "database_checked": c.onprem_application_role is not None,
            "wait_seconds": 0 if remaining <= 0 else max(1, min(LEGACY_CHECK_SECONDS, int(remaining + 0.999)))}


def _timestamp(cur: Any, text: str):
    cur.execute("SELECT %s::timestamptz", (text,))
    return cur.fetchone()[0]


def preflight(c: Controller, source: str, target: str) -> dict:
    """The writer is `source` and `source` → `target` replication runs (or this cutover already switched
    it: a re-run). Fences `target` if it is open: the side that is not the writer is always fenced.
    Refuses, before anything changes, what the fence would refuse: write paths it cannot close,
    prepared transactions on `source`."""
    record = read_writer(c.ssm, c.writer_parameter)
    fenced_non_writer = False
    if not fencing.is_fenced(c.databases[other(record.writer)], c.roles):
        with switching(c) as lease:
            # Read again under the mutex: a switch that held it may have just named the other side
            # the writer (and opened it); fencing by the record read before would fence the writer.
            record = read_writer(c.ssm, c.writer_parameter)
            fenced_non_writer = _ensure_fenced(c, other(record.writer))
            control.release_lease(c.databases[ONPREM], lease)
    result = {"writer": record.to_dict(), "fenced_non_writer": fenced_non_writer}
    if record.writer == target:
        return {**result, "already_done": True, "replication": _states(c)}
    old = Direction(source, target)
    old_state, new_state = c.driver.state(old), c.driver.state(old.reverse)
    if old_state.active and new_state.active:
        raise ReplicationLoop(f"both directions run: {old_state.detail}; {new_state.detail}")
    started = _switch_started(c, old)
    if not old_state.running and not started:
        raise ReplicationNotRunning(f"{old} does not run ({old_state.detail}): start it and let it catch up first")
    if started and not fencing.is_fenced(c.databases[source], c.roles):
        raise FenceIncomplete(f"{old} was already switched but {source} is open: resolve by hand (status step)")
    if not started:
        paths = fencing.write_paths(c.databases[source], c.replicated)
        prepared = fencing.prepared_transactions(c.databases[source])
        if paths or prepared:
            raise FenceIncomplete(f"{source} cannot be fenced as it is (nothing was changed): "
                                  + "; ".join([*(str(path) for path in paths), *prepared]))
        # the new direction must be able to start once the old one is taken apart: proven now, when a
        # refusal costs nothing, not after the switch has dropped the old slot
        # (no trial slot on the live writer: it would wait for every long transaction there, which
        # only the fence ends; the fence makes its witness slot once they are gone)
        problems = [*(f"{source}: {problem}" for problem in capabilities.check_side(
                        c.databases[source], fencing.WITNESS_PLUGIN, apply_role=c.driver.apply_role,
                        trial_slot_seconds=0)),
                    *(f"{target}: {problem}" for problem in capabilities.check_side(c.databases[target],
                                                                                    c.driver.plugin)),
                    *c.driver.check_can_start(old.reverse)]
        if problems:
            raise ReplicationNotRunning(f"{old.reverse} could not start after the switch (nothing was changed): "
                                        + "; ".join(problems))
    return {**result, "already_done": False, "switch_started": started,
            "replication": {old.name: old_state.to_dict(), old.reverse.name: new_state.to_dict()}}


def checkpoint(c: Controller, source: str, target: str) -> dict:
    """A checkpoint before the live validation compares every row: a new logical slot on the writer
    `source` and one on `target` (any an earlier run left is dropped first), from which
    `validate_changes` reads what changed since on each side — on `target`, what the replication
    applied, and any write that reached it otherwise. Its creation waits for the transactions
    running there (SwitchPending after wait_seconds: they are long, retry later); it changes nothing
    the application sees."""
    with switching(c) as lease:
        _require_writer(c, source, target)
        slot, lsns, replaced = c.checkpoint_slot(source), {}, False
        for side in (source, target):
            conn = c.databases[side]
            replaced = slots.drop_slot(conn, slot, timeout_seconds=c.wait_seconds) or replaced
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(c.wait_seconds * 1000)}ms",))
                try:
                    cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
                                (slot, CHECKPOINT_PLUGIN))
                    lsns[side] = cur.fetchone()[0]
                except pg_errors.QueryCanceled as error:
                    raise SwitchPending(f"the checkpoint slot {slot} could not be made on {side} within "
                                        f"{c.wait_seconds:g} s: it waits for the transactions running there; the "
                                        "step can be retried") from error
                finally:
                    cur.execute("RESET statement_timeout")
        control.release_lease(c.databases[ONPREM], lease)
    return {"slot": slot, "lsn": lsns, "replaced": replaced}


def catch_up(c: Controller, source: str, target: str) -> dict:
    """Before the fence, after the live validation PASSED: compare on the live replica (with the
    recheck rounds) the keys written on either side since the checkpoint, and when every one is
    equal move the checkpoint up to where they were read — so the fenced comparison reads only what
    was written during this round, not during the whole live validation (which grows with the
    database). The same argument as the fenced one (payment_validation.engine): the keys compared
    here are equal in snapshots taken after the new checkpoint position, the others unchanged since
    the live validation saw them equal. A key that does not settle (written faster than replication
    applies it) leaves the checkpoint where it was: the fenced comparison then reads everything
    since it, as without this round. Never fails the execution on a difference."""
    _require_writer(c, source, target)
    slot = c.checkpoint_slot(source)
    upto = {side: current_lsn(c.databases[side]) for side in (source, target)}
    try:
        source_changes = read_changes(c.databases[source], slot, max_rows=c.max_changed_rows, upto_lsn=upto[source])
        target_changes = read_changes(c.databases[target], slot, max_rows=c.max_changed_rows, upto_lsn=upto[target])
    except ChangesUnreadable as error:
        return {"advanced": False, "reason": str(error)}
    changes = source_changes.merged(target_changes, c.max_changed_rows)
    if changes.overflow:
        return {"advanced": False, "reason": f"more than {c.max_changed_rows} rows changed since the checkpoint"}
    options = ValidationOptions(schemas=(c.schema,), tables=tuple(c.tables), recheck_rounds=c.recheck_rounds,
                                recheck_seconds=c.recheck_seconds)
    with _validation_sessions(c, source, target) as (source_conn, target_conn):
        report = compare_changes(source_conn, target_conn, changes, options, count_rows=False).to_dict()
    advanced = report["status"] == "PASSED"
    if advanced:
        for side in (source, target):
            with c.databases[side].cursor() as cur:
                cur.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, upto[side]))
    return {"advanced": advanced, "upto": upto, "keys_compared": report["scope"]["keys_compared"],
            "status": report["status"], "message": report["message"],
            **({} if advanced else {"reason": f"the changes since the checkpoint did not settle: {report['message']}"})}


def validate_changes(c: Controller, source: str, target: str, *, live_validation: str | None) -> dict:
    """Inside the fence, after the marker arrived: compare the keys written on either side since the
    checkpoint, by key, and the sequences (payment_validation.engine.validate_changes); the exact row
    counts too when `count_rows` (O(rows): off by default, see README).
    Compares every row instead, and says why in `scope`, when the live validation after the
    checkpoint did not pass (`live_validation`, its status), the checkpoint cannot be read, or more
    than max_changed_rows rows changed. Returns the validation report (`status` PASSED/FAILED/ERROR)."""
    _require_fenced(c, source, "what changed is only final once writes stopped")
    slot = c.checkpoint_slot(source)
    fallback, changes = None, None
    if live_validation != "PASSED":
        fallback = f"the live validation after the checkpoint is {live_validation or 'missing'}, not PASSED"
    else:
        try:
            source_changes = read_changes(c.databases[source], slot, max_rows=c.max_changed_rows)
            target_changes = read_changes(c.databases[target], slot, max_rows=c.max_changed_rows)
        except ChangesUnreadable as error:
            fallback = str(error)
        else:
            changes = source_changes.merged(target_changes, c.max_changed_rows)
            if changes.overflow:
                fallback = f"more than {c.max_changed_rows} rows changed since the checkpoint (CHECKPOINT_MAX_CHANGED_ROWS)"
    options = ValidationOptions(schemas=(c.schema,), tables=tuple(c.tables), recheck_rounds=0)
    with _validation_sessions(c, source, target) as (source_conn, target_conn):
        if fallback is None:
            report = compare_changes(source_conn, target_conn, changes, options, count_rows=c.count_rows).to_dict()
        else:
            report = validate(source_conn, target_conn, options).to_dict()
            report["scope"] = {"mode": "full", "fallback": fallback}
    return {**report, "checkpoint_slot": slot}


@contextmanager
def _validation_sessions(c: Controller, source: str, target: str) -> Iterator[tuple[Any, Any]]:
    """The controller's connections lent to the validation engine (which pins its own session
    settings and read-only transactions), and given back autocommit with the settings they started
    with (RESET ALL restores the values of the connection's startup options)."""
    lent = (c.databases[source], c.databases[target])
    try:
        yield lent
    finally:
        for conn in lent:
            if conn.closed:
                continue
            conn.rollback()
            conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT", autocommit=True)
            with conn.cursor() as cur:
                cur.execute("RESET ALL")


SCHEDULED_PENDING = "_validating"
SCHEDULED_PASSED = "_validated_"  # + the Unix time of the full pass the checkpoint descends from


def scheduled_validation(c: Controller, *, now: float | None = None) -> dict:
    """The scheduled validation of the replica against the writer, on live data (settle-and-recheck).

    A full pass (every row) when the last one that PASSED is `full_every_seconds` old or more, or
    there is none; otherwise only the keys the writer's slot decoded since the last PASSED
    checkpoint (payment_validation.engine: the same argument as the cutover's, between runs). The
    checkpoint is a logical slot on the writer named after the full pass it descends from
    (<direction slot>_validated_<unix time>): a full pass makes a new one before it starts and keeps
    it only if it PASSED; a run over the changes that PASSED advances it to the position it read up
    to; one that did not leaves it, so the next run compares those keys again. Checkpoints left on
    the side that is no longer the writer (after a switch) are dropped."""
    now = time.time() if now is None else now
    record = read_writer(c.ssm, c.writer_parameter)
    source, target = record.writer, other(record.writer)
    conn = c.databases[source]
    prefix = c.driver.slot_name(Direction(source, target))[:36]
    stale = [name for name, _ in _scheduled_slots(c.databases[target], c.driver.slot_name(Direction(target, source))[:36])]
    for name in stale:
        slots.drop_slot(c.databases[target], name, timeout_seconds=c.wait_seconds)
    passed = sorted(_scheduled_slots(conn, prefix), key=lambda found: found[1])
    options = ValidationOptions(schemas=(c.schema,), tables=tuple(c.tables), recheck_rounds=c.recheck_rounds,
                                recheck_seconds=c.recheck_seconds)
    full_because = None
    if not passed:
        full_because = "no PASSED checkpoint"
    elif now - passed[-1][1] >= c.full_every_seconds:
        full_because = f"the last full pass that PASSED is {int(now - passed[-1][1])} s old"
    changes = None
    if full_because is None:
        checkpoint = passed[-1][0]
        upto = current_lsn(conn)
        try:
            changes = read_changes(conn, checkpoint, max_rows=c.max_changed_rows, upto_lsn=upto)
        except ChangesUnreadable as error:
            full_because = str(error)
        else:
            if changes.overflow:
                full_because = f"more than {c.max_changed_rows} rows changed since the checkpoint"
    if full_because is None:
        with _validation_sessions(c, source, target) as (source_conn, target_conn):
            report = compare_changes(source_conn, target_conn, changes, options, count_rows=False).to_dict()
        advanced = report["status"] == "PASSED"
        if advanced:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (checkpoint, upto))
        report["scope"]["checkpoint"] = {"slot": checkpoint, "advanced_to": upto if advanced else None}
    else:
        pending = f"{prefix}{SCHEDULED_PENDING}"
        slots.drop_slot(conn, pending, timeout_seconds=c.wait_seconds)
        slots.create_slot(conn, pending, CHECKPOINT_PLUGIN)
        try:
            with _validation_sessions(c, source, target) as (source_conn, target_conn):
                report = validate(source_conn, target_conn, options).to_dict()
            kept = None
            if report["status"] == "PASSED":
                kept = f"{prefix}{SCHEDULED_PASSED}{int(now)}"
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (pending, kept))
                for name, _ in passed:
                    slots.drop_slot(conn, name, timeout_seconds=c.wait_seconds)
        finally:
            slots.drop_slot(conn, pending, timeout_seconds=c.wait_seconds)
        report["scope"] = {"mode": "full", "reason": full_because, "checkpoint": kept}
    return {**report, "writer": source, "dropped_stale_checkpoints": stale}


def _scheduled_slots(conn, prefix: str) -> list[tuple[str, int]]:
    """The scheduled validation's PASSED checkpoints on this side: (slot, time of its full pass)."""
    with conn.cursor() as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database() "
                    "AND starts_with(slot_name::text, %s)", (prefix + SCHEDULED_PASSED,))
        names = [name for (name,) in cur.fetchall()]
    return [(name, int(name.rsplit("_", 1)[1])) for name in names if name.rsplit("_", 1)[1].isdigit()]


def fence(c: Controller, source: str, target: str) -> dict:
    """Fence `source` (payment_cutover.fence), with a witness slot, and record the fence. A fresh fence
    (the side was open) starts a new record and a new witness; a re-run keeps both."""
    with switching(c):
        _require_writer(c, source, target)
        conn = c.databases[source]
        if not fencing.is_fenced(conn, c.roles):
            # what an earlier fence of this side left (an abort that could not clean up) proves nothing now
            stale = control.current_fence(conn, source)
            if stale is not None:
                control.release_fence(conn, stale)
            fencing.drop_witness(conn, c.witness_slot(source))
        report = fencing.fence(conn, c.roles, deadline_seconds=c.wait_seconds, tables=c.replicated,
                               witness_slot=c.witness_slot(source))
        record = control.record_fence(conn, source, c.holder, witness_slot=c.witness_slot(source),
                                      revoked=report.revoked)
    return {"side": source, "fence_id": record.fence_id, **report.to_dict()}


def wait_replication(c: Controller, source: str, target: str) -> dict:
    """Write a marker on the fenced `source`, wait until it is on `target`; report the lag. Skipped when
    this cutover already switched the direction (the switch proved the same before stopping it)."""
    old = Direction(source, target)
    with switching(c):
        _require_fenced(c, source, "the marker proves nothing while writes continue")
        record = _require_fence_record(c, source)
        state = c.driver.state(old)
        if not state.running:
            if _switch_started(c, old):
                _require_last_marker_arrived(c, old)
                return {"skipped": True, "reason": f"{old} already switched; its last marker reached {target}"}
            if state.status == STARTING:
                raise ReplicationBehind(f"{old} is not streaming yet ({state.detail}); the step can be retried")
            raise ReplicationNotRunning(f"{old} does not run ({state.detail})")
        marker = markers.insert_marker(c.databases[source], old)
        control.update_fence(c.databases[source], record, last_marker=marker.marker_id)
        lag = markers.wait_for_marker(c.databases[source], c.databases[target], marker,
                                      timeout_seconds=c.wait_seconds)
    return {"skipped": False, "marker_id": marker.marker_id, "fence_id": record.fence_id, "lag_seconds": round(lag, 3)}


def advance_sequences(c: Controller, source: str, target: str) -> dict:
    with switching(c):
        _require_fenced(c, source, "its sequences must not move while they are copied")
        results = advance(c.databases[source], c.databases[target], c.schema, c.tables)
    return {"sequences": [result.to_dict() for result in results],
            "changed": sum(result.set_to is not None for result in results)}


def switch_replication(c: Controller, source: str, target: str) -> dict:
    """Stop `source` → `target` (after a last marker behind this fence proves it caught up), drop its slot
    on `source`, create the reverse direction's slot on `target` (still fenced, so nothing is missed)
    and start `target` → `source` from it, waiting until it streams."""
    old, new = Direction(source, target), Direction(target, source)
    actions, lag = [], None
    with switching(c):
        _require_fenced(c, source, "its last changes must have been replicated before the switch")
        record = _require_fence_record(c, source)
        new_state = c.driver.state(new)
        if c.driver.state(old).active:
            if new_state.active:
                raise ReplicationLoop(f"both directions run: {old} and {new}; stop one by hand")
            marker = markers.insert_marker(c.databases[source], old)
            control.update_fence(c.databases[source], record, last_marker=marker.marker_id)
            lag = markers.wait_for_marker(c.databases[source], c.databases[target], marker,
                                          timeout_seconds=c.wait_seconds)
            actions.append(f"marker {marker.marker_id} reached {target} after {lag:.3f} s")
        else:
            _require_last_marker_arrived(c, old)
        actions.append(c.driver.stop(old, timeout_seconds=c.wait_seconds))
        old_slot = c.driver.slot_name(old)
        control.update_fence(c.databases[source], record, old_slot_dropped=True)
        if slots.drop_slot(c.databases[source], old_slot, timeout_seconds=c.wait_seconds):
            actions.append(f"dropped slot {old_slot} on {source}")
        new_slot = c.driver.slot_name(new)
        start_lsn = None
        if new_state.running:
            actions.append(f"{new} already running")
        else:
            if new_state.status != STARTING:
                # A slot made now starts at the current position; one left by an earlier attempt may be
                # older, which is only harmless while `target` is fenced — and it is re-made anyway.
                _require_fenced(c, target, f"{new} must start from a position taken while it is fenced")
                if slots.drop_slot(c.databases[target], new_slot, timeout_seconds=c.wait_seconds):
                    actions.append(f"dropped stale slot {new_slot} on {target}")
                start_lsn = slots.create_slot(c.databases[target], new_slot, c.driver.plugin)
                actions.append(f"created slot {new_slot} on {target} at {start_lsn}")
            else:
                start_lsn = (slots.slot_info(c.databases[target], new_slot) or {}).get("confirmed_flush_lsn")
            actions.append(c.driver.start(new, start_lsn=start_lsn, timeout_seconds=c.wait_seconds))
    return {"actions": actions, "lag_seconds": None if lag is None else round(lag, 3),
            "replication": {old.name: c.driver.state(old).to_dict(), new.name: c.driver.state(new).to_dict()}}


def prove_fence(c: Controller, source: str, target: str) -> dict:
    """The proof, at the old writer, that its fence held: its witness slot saw nothing reach the
    replicated tables since the fence but the controller's markers. FenceBreached (both sides stay
    fenced) names every other change."""
    with switching(c):
        _require_fenced(c, source, "a proof of a fence that is not there proves nothing")
        record = _require_fence_record(c, source)
        proof = _prove(c, source, record)
    return {"side": source, "fence_id": record.fence_id, **proof}


def open_writer(c: Controller, source: str, target: str) -> dict:
    """Open `target` for the application roles (and the members its own last fence revoked), only while
    `source` is fenced, `target` → `source` replication runs and — proven again now, unless `target`
    is already open — nothing but markers reached `source` after its fence."""
    with switching(c):
        _require_fenced(c, source, f"{target} and {source} would both accept writes")
        back = Direction(target, source)
        state = c.driver.state(back)
        if not state.running:
            raise ReplicationNotRunning(f"{back} does not run ({state.detail}): writes on {target} would not reach "
                                        f"{source}; run switch_replication first")
        proof = None
        if not fencing.is_open(c.databases[target], c.roles):
            proof = _prove(c, source, _require_fence_record(c, source))
        target_fence = control.current_fence(c.databases[target], target)
        roles = fencing.open_side(c.databases[target], c.roles,
                                  members=target_fence.revoked if target_fence else ())
        if target_fence is not None:
            control.release_fence(c.databases[target], target_fence)
    return {"side": target, "roles": roles, "proof": proof}


def set_writer(c: Controller, source: str, target: str, reason: str) -> dict:
    """The writer record names `target`; the old writer's witness is dropped (it proved what it had to)
    and the switch lease released: the switch is over."""
    with switching(c) as lease:
        _require_fenced(c, source, "the old writer must stay fenced")
        if not fencing.is_open(c.databases[target], c.roles):
            raise FenceIncomplete(f"{target} is still fenced ({fencing.fence_state(c.databases[target], c.roles)}): "
                                  "run the open step first")
        record, changed = put_writer(c.ssm, c.writer_parameter, target, reason, expected=source)
        dropped = fencing.drop_witness(c.databases[source], c.witness_slot(source))
        checkpoint_dropped = _drop_checkpoint(c, source)
        control.release_lease(c.databases[ONPREM], lease)
    return {"writer": record.to_dict(), "changed": changed, "witness_dropped": dropped,
            "checkpoint_dropped": checkpoint_dropped}


def abort(c: Controller, source: str, target: str) -> dict:
    """The Catch path. Reopens `source` (still the writer) only while the switch has not begun to take
    the old direction apart — its slot still there, the new direction neither running nor made, and
    the fence record not saying the slot was dropped — and keeps `target` fenced. A switch that
    failed while stopping the old direction (its subscription or task stopped, the slot kept) has it
    started again from that slot, so what `source` takes once reopened reaches `target` and the next
    run's preflight finds it running. Otherwise it changes nothing and says so (run the execution
    again to finish it). Needs the switch lease: held by another execution, it changes nothing
    (LeaseHeld)."""
    old = Direction(source, target)
    with switching(c) as lease:
        # what changed since the checkpoint matters to no one once this switch is given up (a new
        # run makes a new checkpoint), and the slot holds WAL back while it exists
        _drop_checkpoint(c, source)
        record = read_writer(c.ssm, c.writer_parameter)
        reopen, why = record.writer == source, f"{target} is the writer"
        if reopen:
            reopen, why = _old_direction_intact(c, old)
        if reopen:
            _ensure_fenced(c, target)
            fence_record = control.current_fence(c.databases[source], source)
            fencing.drop_witness(c.databases[source], c.witness_slot(source))
            roles = fencing.open_side(c.databases[source], c.roles,
                                      members=fence_record.revoked if fence_record else ())
            if fence_record is not None:
                control.release_fence(c.databases[source], fence_record)
            restarted = None
            if not c.driver.state(old).active:
                start_lsn = (slots.slot_info(c.databases[source], c.driver.slot_name(old)) or {}).get(
                    "confirmed_flush_lsn")
                restarted = c.driver.start(old, start_lsn=start_lsn, timeout_seconds=c.wait_seconds)
            control.release_lease(c.databases[ONPREM], lease)
            return {"reopened": source, "roles": roles, "old_direction": c.driver.state(old).to_dict(),
                    "restarted": restarted, "fence": _fence_states(c)}
        control.release_lease(c.databases[ONPREM], lease)
    return {"reopened": None, "writer": record.to_dict(), "fence": _fence_states(c), "replication": _states(c),
            "message": f"nothing reopened ({why}): run the execution again to finish the cutover to {target}"}


def fence_non_writer(c: Controller) -> dict:
    """Fence whichever side the writer parameter does not name (first setup, or a repair)."""
    with switching(c) as lease:
        record = read_writer(c.ssm, c.writer_parameter)  # under the mutex: no switch is changing it now
        fenced = _ensure_fenced(c, other(record.writer))
        control.release_lease(c.databases[ONPREM], lease)
    return {"writer": record.to_dict(), "fenced": fenced, "fence": _fence_states(c)}


def status(c: Controller) -> dict:
    record = read_writer(c.ssm, c.writer_parameter)
    return {"writer": record.to_dict(), "fence": _fence_states(c), "replication": _states(c),
            # each side is the source of one direction, whose slot lives there
            "slots": {side: slots.slot_info(c.databases[side], c.driver.slot_name(Direction(side, other(side))))
                      for side in SIDES},
            # a checkpoint left by a switch that neither finished nor aborted keeps WAL on that side
            "checkpoint_slots": {side: [info for info in (slots.slot_info(c.databases[side], c.checkpoint_slot(switch))
                                                          for switch in SIDES) if info]
                                 for side in SIDES},
            "fence_records": {side: _fence_record_dict(c, side) for side in SIDES}}


def _fence_record_dict(c: Controller, side: str) -> dict | None:
    record = control.current_fence(c.databases[side], side)
    return record.to_dict() if record else None


def _drop_checkpoint(c: Controller, source: str) -> bool:
    """Drop the checkpoint of a switch away from `source`, on both sides."""
    dropped = [slots.drop_slot(c.databases[side], c.checkpoint_slot(source), timeout_seconds=c.wait_seconds)
               for side in (source, other(source))]
    return any(dropped)


def _prove(c: Controller, source: str, record: control.FenceRecord) -> dict:
    if not record.witness_slot:
        raise FenceIncomplete(f"the fence {record.fence_id} of {source} has no witness slot: fence it again")
    proof = fencing.prove(c.databases[source], record.witness_slot, c.replicated)
    control.update_fence(c.databases[source], record, proven=True)
    return proof


def _old_direction_intact(c: Controller, old: Direction) -> tuple[bool, str]:
    """Whether the old direction can still carry what `old.source` receives once reopened."""
    record = control.current_fence(c.databases[old.source], old.source)
    if record is not None and record.old_slot_dropped:
        return False, f"the switch dropped (or was about to drop) the slot of {old}"
    if slots.slot_info(c.databases[old.source], c.driver.slot_name(old)) is None:
        return False, f"the slot of {old} is gone: writes on {old.source} would reach {old.target} no more"
    new = old.reverse
    if c.driver.state(new).active or slots.slot_info(c.databases[new.source], c.driver.slot_name(new)) is not None:
        return False, f"{new} was already made"
    return True, ""


def _switch_started(c: Controller, old: Direction) -> bool:
    """Whether a switch of `old` began: the old direction no longer runs and either the new one exists
    (running, starting or its slot made) or the fence record says the switch dropped the old slot.
    While the old direction runs, the switch has not started (stopping it is its first change). The
    old slot gone without the switch's record of it is an error: `old.source` failed over to a server
    without logical slots, or the slot was dropped by hand, and what it held may be missing."""
    if c.driver.state(old).active:
        return False
    new = old.reverse
    if c.driver.state(new).active or slots.slot_info(c.databases[new.source], c.driver.slot_name(new)) is not None:
        return True
    # the switch records the drop before it drops the slot: a run that died in between left the
    # slot, and the switch has begun all the same (the abort did not reopen the old writer)
    record = control.current_fence(c.databases[old.source], old.source)
    if record is not None and record.old_slot_dropped:
        return True
    if slots.slot_info(c.databases[old.source], c.driver.slot_name(old)) is not None:
        return False
    raise ReplicationNotRunning(
        f"the slot of {old} is gone from {old.source} and no switch dropped it (a failover to a server without "
        f"logical slots, or dropped by hand): changes on {old.source} may be missing on {old.target}; compare "
        "them and make the direction again before any switch")


def _require_fence_record(c: Controller, side: str) -> control.FenceRecord:
    record = control.current_fence(c.databases[side], side)
    if record is None:
        raise FenceIncomplete(f"{side} is fenced, but not by this controller's fence step (no fence record in "
                              "payment_control.cutover_fence): run the fence step")
    return record


def _require_last_marker_arrived(c: Controller, old: Direction) -> None:
    """The catch-up proof bound to this fence: the last marker written behind it is on the new side."""
    record = control.current_fence(c.databases[old.source], old.source)
    marker_id = record.last_marker if record else None
    if marker_id is None or not markers.has_marker(c.databases[old.target], marker_id):
        raise ReplicationNotRunning(
            f"{old} is stopped and the last marker behind this fence ({marker_id or 'none'}) is not on {old.target}: "
            f"changes on {old.source} may be missing on {old.target}; compare them before going on")


def _require_writer(c: Controller, source: str, target: str) -> None:
    record = read_writer(c.ssm, c.writer_parameter)
    if record.writer != source:
        raise WriterMismatch(f"the writer is {record.writer}, not {source}: this {source} → {target} step "
                             "does not apply (a finished cutover? check the status step)")


def _require_fenced(c: Controller, side: str, why: str) -> None:
    state = fencing.fence_state(c.databases[side], c.roles)
    if any(value != fencing.FENCED for value in state.values()):
        raise FenceIncomplete(f"{side} is not fenced ({state}): {why}")


def _ensure_fenced(c: Controller, side: str) -> bool:
    if fencing.is_fenced(c.databases[side], c.roles):
        return False
    fencing.fence(c.databases[side], c.roles, deadline_seconds=c.wait_seconds)
    return True


def _fence_states(c: Controller) -> dict:
    return {side: fencing.fence_state(c.databases[side], c.roles) for side in SIDES}


def _states(c: Controller) -> dict:
    return {d.name: c.driver.state(d).to_dict() for d in (Direction(side, other(side)) for side in SIDES)}
