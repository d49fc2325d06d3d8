"""The steps of a data cutover (and of a rollback after it, the same with the sides swapped), in the
order the state machine calls them:

    preflight → fence → wait_replication → [validation] → advance_sequences → [validation with
    check_sequences] → switch_replication → open → set_writer → [weights]

and `abort`, the Catch path. Every step is idempotent and detects work already done, so an execution
that failed can be run again from the start. Each takes the controller's connections and clients in
a `Controller` and returns a JSON-able dict.

Invariants the steps enforce rather than assume: the side that is not the writer is fenced; a side is
opened only while the other is fenced and replication runs from it back to the other; the old
replication direction is stopped only after a marker written behind the fence has reached the new
writer; the new direction starts from a slot made while its source was fenced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payment_cutover import fence as fencing
from payment_cutover import markers, slots
from payment_cutover.errors import FenceIncomplete, ReplicationBehind, ReplicationLoop, ReplicationNotRunning, WriterMismatch
from payment_cutover.replication import STARTING, ReplicationDriver
from payment_cutover.sequences import advance_sequences as advance
from payment_cutover.sides import SIDES, Direction, other
from payment_cutover.writer import read_writer, set_writer as put_writer


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


def preflight(c: Controller, source: str, target: str) -> dict:
    """The writer is `source` and `source` → `target` replication runs (or this cutover already switched
    it: a re-run). Fences `target` if it is open: the side that is not the writer is always fenced."""
    record = read_writer(c.ssm, c.writer_parameter)
    non_writer = other(record.writer)
    fenced_non_writer = _ensure_fenced(c, non_writer)
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
    return {**result, "already_done": False, "switch_started": started,
            "replication": {old.name: old_state.to_dict(), old.reverse.name: new_state.to_dict()}}


def fence(c: Controller, source: str, target: str) -> dict:
    _require_writer(c, source, target)
    report = fencing.fence(c.databases[source], c.roles, deadline_seconds=c.wait_seconds)
    return {"side": source, **report.to_dict()}


def wait_replication(c: Controller, source: str, target: str) -> dict:
    """Write a marker on the fenced `source`, wait until it is on `target`; report the lag. Skipped when
    this cutover already switched the direction (the switch proved the same before stopping it)."""
    old = Direction(source, target)
    _require_fenced(c, source, "the marker proves nothing while writes continue")
    state = c.driver.state(old)
    if not state.running:
        if _switch_started(c, old):
            _require_last_marker_arrived(c, old)
            return {"skipped": True, "reason": f"{old} already switched; its last marker reached {target}"}
        if state.status == STARTING:
            raise ReplicationBehind(f"{old} is not streaming yet ({state.detail}); the step can be retried")
        raise ReplicationNotRunning(f"{old} does not run ({state.detail})")
    marker = markers.insert_marker(c.databases[source], old)
    lag = markers.wait_for_marker(c.databases[source], c.databases[target], marker, timeout_seconds=c.wait_seconds)
    return {"skipped": False, "marker_id": marker.marker_id, "lag_seconds": round(lag, 3)}


def advance_sequences(c: Controller, source: str, target: str) -> dict:
    _require_fenced(c, source, "its sequences must not move while they are copied")
    results = advance(c.databases[source], c.databases[target], c.schema, c.tables)
    return {"sequences": [result.to_dict() for result in results],
            "changed": sum(result.set_to is not None for result in results)}


def switch_replication(c: Controller, source: str, target: str) -> dict:
    """Stop `source` → `target` (after a last marker proves it caught up), drop its slot on `source`,
    create the reverse direction's slot on `target` (still fenced, so nothing is missed) and start
    `target` → `source` from it, waiting until it streams."""
    old, new = Direction(source, target), Direction(target, source)
    _require_fenced(c, source, "its last changes must have been replicated before the switch")
    actions, lag = [], None
    new_state = c.driver.state(new)
    if c.driver.state(old).active:
        if new_state.active:
            raise ReplicationLoop(f"both directions run: {old} and {new}; stop one by hand")
        marker = markers.insert_marker(c.databases[source], old)
        lag = markers.wait_for_marker(c.databases[source], c.databases[target], marker, timeout_seconds=c.wait_seconds)
        actions.append(f"marker {marker.marker_id} reached {target} after {lag:.3f} s")
    else:
        _require_last_marker_arrived(c, old)
    actions.append(c.driver.stop(old, timeout_seconds=c.wait_seconds))
    old_slot = c.driver.slot_name(old)
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


def open_writer(c: Controller, source: str, target: str) -> dict:
    """Open `target` for the application roles, only while `source` is fenced and `target` → `source`
    replication runs."""
    _require_fenced(c, source, f"{target} and {source} would both accept writes")
    back = Direction(target, source)
    state = c.driver.state(back)
    if not state.running:
        raise ReplicationNotRunning(f"{back} does not run ({state.detail}): writes on {target} would not reach "
                                    f"{source}; run switch_replication first")
    return {"side": target, "roles": fencing.open_side(c.databases[target], c.roles)}


def set_writer(c: Controller, source: str, target: str, reason: str) -> dict:
    _require_fenced(c, source, "the old writer must stay fenced")
    state = fencing.fence_state(c.databases[target], c.roles)
    if any(value != fencing.OPEN for value in state.values()):
        raise FenceIncomplete(f"{target} is still fenced ({state}): run the open step first")
    record, changed = put_writer(c.ssm, c.writer_parameter, target, reason, expected=source)
    return {"writer": record.to_dict(), "changed": changed}


def abort(c: Controller, source: str, target: str) -> dict:
    """The Catch path. Before the switch started: reopen `source` (still the writer) and keep `target`
    fenced. From the switch on: change nothing and say so (run the execution again to finish it)."""
    old = Direction(source, target)
    record = read_writer(c.ssm, c.writer_parameter)
    if record.writer == source and not _switch_started(c, old):
        _ensure_fenced(c, target)
        return {"reopened": source, "roles": fencing.open_side(c.databases[source], c.roles),
                "fence": _fence_states(c)}
    return {"reopened": None, "writer": record.to_dict(), "fence": _fence_states(c), "replication": _states(c),
            "message": f"the replication direction was already switched (or {target} is the writer): "
                       f"nothing reopened; run the execution again to finish the cutover to {target}"}


def fence_non_writer(c: Controller) -> dict:
    """Fence whichever side the writer parameter does not name (first setup, or a repair)."""
    record = read_writer(c.ssm, c.writer_parameter)
    return {"writer": record.to_dict(), "fenced": _ensure_fenced(c, other(record.writer)), "fence": _fence_states(c)}


def status(c: Controller) -> dict:
    record = read_writer(c.ssm, c.writer_parameter)
    return {"writer": record.to_dict(), "fence": _fence_states(c), "replication": _states(c),
            # each side is the source of one direction, whose slot lives there
            "slots": {side: slots.slot_info(c.databases[side], c.driver.slot_name(Direction(side, other(side))))
                      for side in SIDES}}


def _switch_started(c: Controller, old: Direction) -> bool:
    """Whether a switch of `old` began: the old direction no longer runs and either the new one exists
    (running, starting or its slot made) or the old slot is gone. While the old direction runs, the
    switch has not started (stopping it is its first change)."""
    if c.driver.state(old).active:
        return False
    new = old.reverse
    return (c.driver.state(new).active
            or slots.slot_info(c.databases[new.source], c.driver.slot_name(new)) is not None
            or slots.slot_info(c.databases[old.source], c.driver.slot_name(old)) is None)


def _require_last_marker_arrived(c: Controller, old: Direction) -> None:
    marker_id = markers.latest_marker(c.databases[old.source], old)
    if marker_id is None or not markers.has_marker(c.databases[old.target], marker_id):
        raise ReplicationNotRunning(
            f"{old} is stopped and its last marker ({marker_id or 'none'}) is not on {old.target}: "
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
