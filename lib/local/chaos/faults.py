"""The built-in faults. A fault has a `name`, the Task `states` where it applies (None: every Task
state of both definitions), `inject(world)` — called when the trial's execution first invokes the
state, before the state's function runs — and `heal(world)`, called `hold_seconds` later (default
2 s) and in any case before the runbook's recovery. A fault may also define `around(world, handler,
event, context)`: it then runs the state's first invocation itself (the step crashing inside, or its
answer lost). A custom fault file (`make chaos FAULTS=file.py`) defines `FAULTS`, a list of such
objects (README, "Fault matrix").
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions

# The step function's states that change something (and so can crash after a change).
MUTATING_STEP_STATES = ("Checkpoint", "CatchUp", "Fence", "WaitReplication", "AdvanceSequences",
                        "SwitchReplication", "ProveFence", "Open", "SetWriter")
STEP_STATES = ("Preflight", *MUTATING_STEP_STATES)
LAMBDA_TASK_STATES = ("TrafficToOnprem", "Preflight", "Checkpoint", "ValidateLive", "CatchUp", "Fence",
                      "WaitReplication", "Validate", "AdvanceSequences", "ValidateSequences", "SwitchReplication",
                      "ProveFence", "Open", "SetWriter", "ReplicationAlarms", "MoveTraffic")
# A statement that changes something, but not the switch's own lease bookkeeping (every step takes the
# lease first: crashing there would test only that).
_MUTATING = re.compile(r"^\s*(INSERT|UPDATE|DELETE|ALTER|GRANT|REVOKE|CREATE|DROP|TRUNCATE|COMMENT)\b"
                       r"|pg_(create|drop)_\w*slot|pg_terminate_backend|setval\(|pg_replication_origin",
                       re.IGNORECASE)
_LEASE = re.compile(r"cutover_lease", re.IGNORECASE)

_crash = threading.local()


class _CrashingCursor(psycopg2.extensions.cursor):
    """Drops its connection right after the first statement that changed something, when armed in
    this thread."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's signature
        result = super().execute(query, vars)
        plan = getattr(_crash, "plan", None)
        text = query if isinstance(query, str) else query.as_string(self.connection) if hasattr(query, "as_string") \
            else str(query)
        if plan is not None and plan["armed"] and _MUTATING.search(text) and not _LEASE.search(text):
            plan["armed"] = False
            plan["statement"] = " ".join(text.split())[:160]
            self.connection.close()
            raise psycopg2.OperationalError("server closed the connection unexpectedly (injected after a change)")
        return result


def install_crash_hook() -> None:
    """Every connection the step function opens gets the crashing cursor (inert unless armed)."""
    from payment_cutover import connections

    if getattr(connections.connect, "_chaos", False):
        return
    original = connections.connect

    def connect(*args, **kwargs):
        conn = original(*args, **kwargs)
        conn.cursor_factory = _CrashingCursor
        return conn

    connect._chaos = True  # type: ignore[attr-defined]
    connections.connect = connect


@dataclass
class CrashAfterChange:
    """The step's connection drops right after its first statement that changed something (the
    switch lease aside): the invocation fails with OperationalError, which the state machine does not
    retry; its Catch runs Abort. Recovery: the execution run again."""

    name: str = "crash-after-change"
    states: tuple[str, ...] = MUTATING_STEP_STATES
    hold_seconds: float = 0.0
    statement: str | None = None

    def inject(self, world) -> None:
        pass

    def heal(self, world) -> None:
        pass

    def around(self, world, handler, event, context):
        _crash.plan = {"armed": True}
        try:
            return handler(event, context)
        finally:
            plan, _crash.plan = _crash.plan, None
            world.log(f"    crashed after: {plan.get('statement') or 'no change was made'}")


class LambdaServiceError(Exception):
    """Raised under the name Step Functions gives a Lambda service error (retried by every Task)."""


LambdaServiceError.__name__ = "Lambda.ServiceException"


@dataclass
class AnswerLost:
    """The function ran and its effect is done, but its answer is lost: the Invoke API answers 500
    (Lambda.ServiceException), so Step Functions retries a step that completed."""

    name: str = "answer-lost"
    states: tuple[str, ...] = LAMBDA_TASK_STATES
    hold_seconds: float = 0.0

    def inject(self, world) -> None:
        pass

    def heal(self, world) -> None:
        pass

    def around(self, world, handler, event, context):
        handler(event, context)
        raise LambdaServiceError("the function ran, its answer was lost (injected)")


@dataclass
class SecondExecution:
    """A second execution of the same machine started while the first runs (at this state); healed
    once it has ended. The switch lease and mutex must keep them from interleaving."""

    name: str = "second-execution"
    states: tuple[str, ...] = ("Preflight", "Fence", "WaitReplication", "SwitchReplication", "Open", "SetWriter")
    hold_seconds: float = 0.0
    arn: str | None = None

    def inject(self, world) -> None:
        self.arn = world.start_execution(world.machine, {"reason": "chaos: second execution"})

    def heal(self, world) -> None:
        if self.arn:
            outcome = world.wait_execution(self.arn)
            world.log(f"    second execution: {outcome['status']} {outcome.get('error') or ''}")


@dataclass
class ReplicationStalled:
    """Every subscription of both sides disabled (ALTER SUBSCRIPTION ... DISABLE) for hold_seconds."""

    name: str = "replication-stalled"
    states: tuple[str, ...] = ("Fence", "WaitReplication", "SwitchReplication")
    hold_seconds: float = 4.0
    disabled: list[tuple[str, str]] = field(default_factory=list)

    def inject(self, world) -> None:
        self.disabled = []
        for side in ("onprem", "aws"):
            conn = world.connect(side)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT subname FROM pg_subscription WHERE subenabled AND subdbid = "
                                "(SELECT oid FROM pg_database WHERE datname = current_database())")
                    for (name,) in cur.fetchall():
                        cur.execute(f'ALTER SUBSCRIPTION "{name}" DISABLE')
                        self.disabled.append((side, name))
            finally:
                conn.close()

    def heal(self, world) -> None:
        for side, name in self.disabled:
            conn = world.connect(side)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,))
                    if cur.fetchone():
                        cur.execute(f'ALTER SUBSCRIPTION "{name}" ENABLE')
            finally:
                conn.close()


@dataclass
class LongTransaction:
    """A payment inserted on the old writer in a transaction left open (idle in transaction) — with
    `stopped`, its backend also stopped with SIGSTOP, so it cannot even die when told to. Healed
    hold_seconds later: the backend continued, and the transaction tries to COMMIT; its client's answer
    (acknowledged if the commit succeeded, an error otherwise) joins the trial's history."""

    name: str = "long-transaction"
    states: tuple[str, ...] = ("Fence",)
    stopped: bool = False
    hold_seconds: float = 4.0
    conn: Any = None
    pid: int | None = None
    entry: dict[str, Any] = field(default_factory=dict)

    def inject(self, world) -> None:
        source, _ = world.source_target()
        customer = world.customers[0]
        key = f"long-{uuid.uuid4().hex[:12]}"
        payment_id = str(uuid.uuid4())
        self.entry = {"key": key, "customer": customer, "amount": "77.77", "sent": time.time(),
                      "payment_id": payment_id}
        self.conn = world.connect(source, "payment_app")
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
            cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                        "request_hash) VALUES (%s, %s, 77.77, 'EUR', %s, 'chaos')", (payment_id, customer, key))
        if self.stopped:
            os.kill(self.pid, signal.SIGSTOP)

    def heal(self, world) -> None:
        if self.stopped and self.pid:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        try:
            self.conn.commit()
            self.entry.update(status=201, error=None)
        except psycopg2.Error as error:
            self.entry.update(status="exception", error=f"{type(error).__name__}: {str(error).strip()[:120]}",
                              payment_id=None)
        finally:
            self.conn.close()
        self.entry["answered"] = time.time()
        world.extra_requests.append(dict(self.entry))
        world.log(f"    long transaction on pid {self.pid}: {self.entry['status']} {self.entry.get('error') or ''}")


@dataclass
class NewWriterCrash:
    """The new writer's server stopped at once (`pg_ctl -m immediate`: a crash) and started again
    hold_seconds later. Commits are synchronous in the chaos world, so none acknowledged may be lost."""

    name: str = "new-writer-crash"
    states: tuple[str, ...] = (*STEP_STATES, "MoveTraffic")
    hold_seconds: float = 1.5

    def inject(self, world) -> None:
        _, target = world.source_target()
        world.server(target)._pg_ctl("-w", "-m", "immediate", "stop", check=False)

    def heal(self, world) -> None:
        _, target = world.source_target()
        world.server(target).start()


def builtin_faults() -> list[Any]:
    return [CrashAfterChange(), AnswerLost(), SecondExecution(), ReplicationStalled(),
            LongTransaction(name="idle-in-transaction"), LongTransaction(name="stopped-backend", stopped=True),
            NewWriterCrash()]


def load_faults(path: str) -> list[Any]:
    """The FAULTS of a custom fault file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"chaos_custom_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    faults = list(getattr(module, "FAULTS", []))
    for fault in faults:
        for attribute in ("name", "inject", "heal"):
            if not hasattr(fault, attribute):
                raise ValueError(f"{path}: a fault without {attribute!r}: {fault!r}")
    return faults
