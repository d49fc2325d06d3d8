"""The replication direction switch behind one small interface, with two drivers: DMS tasks on AWS
(payment_cutover.dms) and PostgreSQL logical replication, the stand-in used by the tests and the
rehearsal (payment_cutover.postgres_logical).

A driver starts and stops one direction and says what state it is in; slots are created and dropped
by the step itself (payment_cutover.slots), the same SQL for both drivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from payment_common.sides import Direction

RUNNING = "running"
STARTING = "starting"  # started, not streaming yet
STOPPING = "stopping"
STOPPED = "stopped"
ABSENT = "absent"  # the stand-in's subscription does not exist (DMS tasks always exist)
# Neither replicating nor ready to be started: a DMS task being created, modified, moved, assessed or
# deleted, or whose move failed. A start waits for the passing ones and refuses the others.
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class DirectionState:
    direction: Direction
    status: str
    detail: str

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def active(self) -> bool:
        """Running, or on its way there: not to be touched by a start."""
        return self.status in (RUNNING, STARTING)

    def to_dict(self) -> dict:
        return {"direction": self.direction.name, "source": self.direction.source,
                "target": self.direction.target, "status": self.status, "detail": self.detail}


class ReplicationDriver(Protocol):
    plugin: str  # output plugin of the logical slots this driver's consumer reads
    apply_role: str | None  # the role that applies on a direction's target and SETs session_replication_role

    def slot_name(self, direction: Direction) -> str: ...

    def state(self, direction: Direction) -> DirectionState: ...

    def stop(self, direction: Direction, *, timeout_seconds: float) -> str:
        """Stop the direction and wait until it has stopped (idempotent); say what was done."""

    def start(self, direction: Direction, *, start_lsn: str, timeout_seconds: float) -> str:
        """Start the direction from its slot (created at `start_lsn`) and wait until it streams."""

    def check_can_start(self, direction: Direction, *, timeout_seconds: float = ...) -> list[str]:
        """What would keep `start` from working for this direction, found without starting it (each
        problem a sentence naming what to fix); empty when nothing was found. Waits at most
        `timeout_seconds` for the checks it starts (the driver's default when left out)."""
