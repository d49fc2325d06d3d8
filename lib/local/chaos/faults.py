"""The built-in faults. A fault has a `name`, the Task `states` where it applies (None: every Task
state of both definitions), `inject(world)` — called when the trial's execution first invokes the
state, before the state's function runs — and `heal(world)`, called `hold_seconds` later (default
2 s) and in any case before the runbook's recovery. A fault may also define `around(world, handler,
event, context)`: it then runs the state's first invocation itself (the step crashing inside, or its
answer lost). A custom fault file (`make chaos FAULTS=file.py`) defines `FAULTS`, a list of such
objects (README, "Fault matrix").
"""

from __future__ import annotations

import json
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
                       r"|pg_(create|drop)_\w*slot|pg_replication_slot_advance|pg_terminate_backend|setval\("
                       r"|pg_replication_origin_(create|drop|advance|session)",
                       re.IGNORECASE)
_LEASE = re.compile(r"cutover_lease", re.IGNORECASE)

_crash = threading.local()


class _CrashingCursor(psycopg2.extensions.cursor):
    """Drops its connection right after the plan's n-th statement that changed something (`nth`,
    default the first), when armed in this thread."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's signature
        result = super().execute(query, vars)
        plan = getattr(_crash, "plan", None)
        if plan is None or not plan["armed"]:
            return result
        text = query if isinstance(query, str) else query.as_string(self.connection) if hasattr(query, "as_string") \
            else str(query)
        if _MUTATING.search(text) and not _LEASE.search(text):
            if plan.get("distinct"):  # the same statement again (one per session it ends) counts once
                seen = plan.setdefault("seen", set())
                if text in seen:
                    return result
                seen.add(text)
            plan["changes"] = plan.get("changes", 0) + 1
            if plan["changes"] < plan.get("nth", 1):
                return result
            plan["armed"] = False
            plan["statement"] = " ".join(text.split())[:160]
            self.connection.close()
            raise psycopg2.OperationalError("server closed the connection unexpectedly (injected after a change)")
        return result


def install_crash_hook() -> None:
    """Every connection the step function opens gets the crashing cursor (inert unless armed)."""
    from payment_cutover import connections

    if getattr(connections.connect_as, "_chaos", False):
        return
    original = connections.connect_as

    def connect_as(*args, **kwargs):
        conn = original(*args, **kwargs)
        conn.cursor_factory = _CrashingCursor
        return conn

    connect_as._chaos = True  # type: ignore[attr-defined]
    connections.connect_as = connect_as


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


@dataclass
class CrashAfterEachChange:
    """A crash after each statement that changes something in the step, one per execution: the
    state's first invocation crashes after its first change (as crash-after-change), the invocation
    of the same state in the runbook's next execution after its second change, then its third, …
    (a statement repeated with other arguments — one pg_terminate_backend per session — counts once)
    until an invocation makes fewer changes than the crash waits for (it then completes) or
    `max_crashes` is reached. A step whose failure path undoes its work (Abort before the switch)
    redoes every change in the next run, so each of its statements is crashed after in turn; a step
    that skips what is done moves on faster. Recovery: the execution run again, as often as it
    crashed."""

    name: str = "crash-after-each-change"
    states: tuple[str, ...] = ("SwitchReplication",)
    every_state: tuple[str, ...] = MUTATING_STEP_STATES
    machines: tuple[str, ...] | None = ("cutover",)
    hold_seconds: float = 0.0
    max_crashes: int = 8
    every_invocation: bool = True  # the Injection hands it every invocation of its state
    recovery_attempts: int = 10
    crashes: list[str] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        if _full():
            self.states, self.machines, self.max_crashes, self.recovery_attempts = self.every_state, None, 30, 32

    def inject(self, world) -> None:
        self.crashes, self.done = [], False

    def heal(self, world) -> None:
        pass

    @property
    def reached(self) -> bool:
        return bool(self.crashes)

    def around(self, world, handler, event, context):
        if self.done or len(self.crashes) >= self.max_crashes:
            return handler(event, context)
        nth = len(self.crashes) + 1
        _crash.plan = {"armed": True, "nth": nth, "distinct": True}
        try:
            return handler(event, context)
        finally:
            plan, _crash.plan = _crash.plan, None
            if plan["armed"]:  # fewer changes than nth: it completed, every change was crashed after
                self.done = True
                world.log(f"    invocation {nth} made {plan.get('changes', 0)} changes: no crash; "
                          f"{len(self.crashes)} crashes in all")
            else:
                self.crashes.append(plan.get("statement") or "")
                world.log(f"    crashed after change {nth}: {plan.get('statement')}")


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


CUTOVER_TASK_STATES = tuple(state for state in LAMBDA_TASK_STATES if state != "TrafficToOnprem")
# The Lambda retries an asynchronous (SNS) invocation that raised twice: three attempts in all.
ASYNC_ATTEMPTS = 3


def _full() -> bool:
    """CHAOS_FULL=1: the new fault kinds at every state where they apply, not the sampled ones."""
    return os.environ.get("CHAOS_FULL", "").strip() not in ("", "0")


@dataclass
class AlarmRollback:
    """The rollback alarm fires while the cutover is at this state: its action, the rollback function,
    is invoked with the alarm's SNS notification (the alarm set to ALARM first, as CloudWatch would
    have it). The rollback waits for the running cutover to end, moves traffic to on-prem and, Aurora
    being the writer by then, runs the fenced writer rollback. An invocation that raises (PARTIAL,
    NO_WRITER, FAILED) is invoked again, as Lambda retries an asynchronous one, ASYNC_ATTEMPTS times in
    all; if the writer is still not on-prem after that, the operator's `python -m lib.cutover rollback
    --resume` (the writer rollback machine, started again) is the recovery. Healed once all that has
    ended. The trial expects on-prem the writer. `api_fault`: (service, mode) the AWS API proxy
    answers for hold_seconds from the alarm on (the Step Functions calls the rollback makes)."""

    name: str = "alarm-rollback"
    states: tuple[str, ...] = ("Fence", "SwitchReplication", "MoveTraffic")
    every_state: tuple[str, ...] = CUTOVER_TASK_STATES
    machines: tuple[str, ...] = ("cutover",)
    expected_writer: str = "onprem"
    hold_seconds: float = 0.0
    api_fault: tuple[str, str] | None = None
    api_fault_seconds: float = 3.0
    thread: threading.Thread | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)
    recovery: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if _full():
            self.states = self.every_state

    def inject(self, world) -> None:
        from tests.rollback.world import ROLLBACK_ALARM_NAMES

        self.answers, self.recovery = [], []
        alarm = ROLLBACK_ALARM_NAMES[0]
        world.world.cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="chaos: alarm")
        if self.api_fault is not None:
            world.api_proxy.set(self.api_fault[0], self.api_fault[1])
            threading.Timer(self.api_fault_seconds, world.api_proxy.set, args=(None,)).start()
        event = {"Records": [{"EventSource": "aws:sns", "EventSubscriptionArn": "chaos", "Sns": {
            "Type": "Notification", "Subject": f"ALARM: {alarm}",
            "Message": json.dumps({"AlarmName": alarm, "NewStateValue": "ALARM", "OldStateValue": "OK",
                                   "NewStateReason": "chaos: the alarm fired mid-cutover"})}}]}
        self.thread = threading.Thread(target=self._invoke, args=(world, event), name="alarm-rollback", daemon=True)
        self.thread.start()

    def _invoke(self, world, event) -> None:
        for attempt in range(1, ASYNC_ATTEMPTS + 1):
            try:
                answer = world.lambdas.invoke(world.function_names["rollback"], event)
                self.answers.append({"attempt": attempt, "status": answer.get("status"),
                                     "writer_rollback": answer.get("writer_rollback"),
                                     "errors": answer.get("errors", [])[:3]})
                return
            except Exception as error:  # noqa: BLE001 - Lambda retries an asynchronous invocation that raised
                self.answers.append({"attempt": attempt, "error": str(error)[:300]})
            time.sleep(1.0)

    def heal(self, world) -> None:
        if self.thread is not None:
            self.thread.join(timeout=300)
        world.api_proxy.set(None)
        world.log(f"    rollback function: {self.answers}")
        for attempt in range(1, 4):
            if world.writer()["writer"] == self.expected_writer:
                break
            execution = world.wait_execution(world.start_execution("rollback", {"reason": "chaos: resume"}))
            self.recovery.append({"machine": "rollback", "role": f"recovery {attempt} (rollback --resume)",
                                  "status": execution["status"], "error": execution.get("error"),
                                  "cause": (execution.get("cause") or "")[:400]})
        world.world.cloudwatch.set_alarm_state(AlarmName=self._alarm(), StateValue="OK", StateReason="chaos: healed")

    @staticmethod
    def _alarm() -> str:
        from tests.rollback.world import ROLLBACK_ALARM_NAMES

        return ROLLBACK_ALARM_NAMES[0]


@dataclass
class LinkDown:
    """The link to on-prem down (lib/local/chaos/proxy.py's LinkProxy, which every connection of the
    handlers and the payment API to on-prem goes through): every connection reset, or the link
    black-holed (nothing gets through; a query waits), for hold_seconds; then up again. The runbook's
    recovery follows (the execution run again)."""

    name: str = "link-reset"
    mode: str = "reset"
    # the sampled trials: (machine, state)
    trials: tuple[tuple[str, str], ...] = (("cutover", "Fence"), ("rollback", "Open"))
    every_state: tuple[str, ...] = STEP_STATES
    hold_seconds: float = 3.0

    def __post_init__(self) -> None:
        self.states = tuple({state for _, state in self.trials})
        if _full():
            self.states, self.trials = self.every_state, ()

    def inject(self, world) -> None:
        held = world.link.set(self.mode)
        world.log(f"    link to on-prem {self.mode}: {held['connections']} connections open on it")

    def heal(self, world) -> None:
        world.link.set("up")


@dataclass
class ApiErrors:
    """One AWS API (the SigV4 service: ssm, route53, states) answering errors to every handler and
    to the payment API for hold_seconds (lib/local/chaos/proxy.py's ApiProxy in front of moto):
    HTTP 500, throttling, or 500 after the call was applied. The clients' own retries see it first;
    the runbook's recovery follows."""

    name: str
    service: str
    mode: str
    states: tuple[str, ...]
    machines: tuple[str, ...] | None = None
    writes_only: bool = False
    every_state: tuple[str, ...] | None = None
    hold_seconds: float = 3.0
    failed: int = 0

    def __post_init__(self) -> None:
        if _full():
            self.states, self.machines = self.every_state or self.states, None

    def inject(self, world) -> None:
        world.api_proxy.set(self.service, self.mode, writes_only=self.writes_only)

    def heal(self, world) -> None:
        self.failed = world.api_proxy.set(None)["failed"]
        world.log(f"    {self.service} {self.mode}: {self.failed} calls failed")


def api_error_faults() -> list[Any]:
    return [
        ApiErrors("ssm-500", "ssm", "500", ("SetWriter",), every_state=("Preflight", "SetWriter", "MoveTraffic")),
        ApiErrors("ssm-throttle", "ssm", "throttle", ("Preflight",), machines=("cutover",),
                  every_state=("Preflight", "SetWriter")),
        ApiErrors("ssm-applied-500", "ssm", "applied-500", ("SetWriter",), machines=("cutover",), writes_only=True),
        ApiErrors("route53-500", "route53", "500", ("TrafficToOnprem",), every_state=("TrafficToOnprem", "MoveTraffic")),
        ApiErrors("route53-throttle", "route53", "throttle", ("MoveTraffic",), machines=("cutover",),
                  every_state=("TrafficToOnprem", "MoveTraffic")),
        ApiErrors("route53-applied-500", "route53", "applied-500", ("MoveTraffic",), machines=("cutover",),
                  writes_only=True, every_state=("TrafficToOnprem", "MoveTraffic")),
        AlarmRollback(name="states-500-alarm-rollback", states=("Fence",), every_state=("Fence",),
                      api_fault=("states", "500")),
        AlarmRollback(name="states-applied-500-alarm-rollback", states=("SetWriter",), every_state=("SetWriter",),
                      api_fault=("states", "applied-500"), api_fault_seconds=8.0),
    ]


def builtin_faults() -> list[Any]:
    return [CrashAfterChange(), AnswerLost(), SecondExecution(), ReplicationStalled(),
            LongTransaction(name="idle-in-transaction"), LongTransaction(name="stopped-backend", stopped=True),
            NewWriterCrash(), CrashAfterEachChange(), AlarmRollback(),
            LinkDown(name="link-reset", mode="reset", trials=(("cutover", "Fence"), ("rollback", "Open"))),
            LinkDown(name="link-blackhole", mode="blackhole",
                     trials=(("cutover", "SwitchReplication"), ("rollback", "WaitReplication"))),
            *api_error_faults()]


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
