"""A steady payment write load through the real payment API handler, as the ALB would send it.

Each client thread is one caller with its own execution environment of the API function: its own
copy of the payment_api package (so its own connection, writer cache and request state — Lambda
never runs two requests in one environment at a time), with the function's deployed environment
plus the rehearsal's overrides. A client creates payments one after another at a steady pace,
each with a new Idempotency-Key and retried with that same key and body until it is acknowledged:
after a 503 it waits the Retry-After it was given (capped low, so the measured pause is the
system's, not the client's patience), after any other failure (a 5xx, an exception) a moment.
Between payments it reads one of its acknowledged payments back now and then (GET /payments/{id}).

With a `Routing`, each client resolves the service name before every request through its own
caching stub resolver (lib/local/rehearsal/resolver.py: Route 53's weighted answer, kept for the
record's TTL) and sends the request where the answer points: the AWS record to its API execution
environment (in-process, as the ALB would invoke it), the on-prem record to the on-prem application
(a real HTTP server on loopback). Every attempt is kept (when, where, what came back), so the
report can say per client how long it went without a successful write and why requests failed.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import http.client
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lib.local.lambdas import FakeContext, thread_environ
from lib.local.rehearsal.ledger import Acknowledgement

RETRY_AFTER_CAP_SECONDS = 0.5
ERROR_RETRY_SECONDS = 0.25
FINISH_SECONDS = 60  # after stop(): how long a client keeps retrying the payment it is on
READ_EVERY = 4  # one read per this many payments
MAX_EVENTS_KEPT = 200


def isolated_module(package: str, module: str):
    """A fresh copy of `module` from `package`, with fresh copies of the package's modules it
    imports; sys.modules is left as it was (the canonical copy stays registered)."""
    prefix = f"{package}."
    saved = {name: loaded for name, loaded in sys.modules.items() if name == package or name.startswith(prefix)}
    for name in saved:
        del sys.modules[name]
    try:
        return importlib.import_module(module)
    finally:
        for name in [name for name in sys.modules if name == package or name.startswith(prefix)]:
            del sys.modules[name]
        sys.modules.update(saved)


def private_metrics(metrics: Any) -> None:
    """Powertools Metrics share one metric set per process (class attributes); in Lambda each
    execution environment is its own process. Give this instance its own, so environments running
    side by side in this process do not flush each other's metrics."""
    provider = metrics.provider
    for name in ("metric_set", "dimension_set", "metadata_set"):
        fresh: dict = {}
        setattr(metrics, name, fresh)
        setattr(provider, name, fresh)


def alb_event(method: str, path: str, body: dict | None = None, headers: Mapping[str, str] | None = None) -> dict:
    """An event as an ALB target group (single-value headers) sends it to a Lambda target."""
    return {
        "requestContext": {"elb": {"targetGroupArn":
                                   "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/payment-api/0"}},
        "httpMethod": method, "path": path, "queryStringParameters": {},
        "headers": {"host": "api.payments-local.test", "content-type": "application/json",
                    "x-forwarded-proto": "https",
                    **{name.lower(): value for name, value in (headers or {}).items()}},
        "body": json.dumps(body) if body is not None else "", "isBase64Encoded": False,
    }


class FaultSwitch:
    """The fault the rehearsal injects into the AWS API: while on, every request the API's handler
    resolves fails inside it (its database access raises), which the handler answers 500."""

    def __init__(self) -> None:
        self.on = False

    def wrap(self, handler_module: Any) -> None:
        real = handler_module.database
        switch = self

        def database():
            if switch.on:
                raise RuntimeError("injected fault: the AWS side of the payment API is failing")
            return real()

        handler_module.database = database


@dataclass
class Routing:
    """Where the clients' requests go: the weighted records in the emulator's Route 53 (resolved
    per client, cached for the TTL), the on-prem application's port, and the fault switch of the
    AWS API."""

    lookup: Any  # () -> list[WeightedRecord]
    sides: dict[str, str]  # set identifier -> "onprem" | "aws"
    onprem_port: int
    fault: FaultSwitch = field(default_factory=FaultSwitch)


@dataclass(frozen=True)
class Attempt:
    at: float  # monotonic, when the answer came
    side: str
    write: bool
    outcome: str  # "ok", or the cause of the failure: "<side> <status> <error code>" / "<side> exception <type>"


class Ledger:
    """What every client was told, shared by the clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acks: dict[str, Acknowledgement] = {}
        self.statuses: Counter = Counter()  # "POST 201", "POST 503", "GET 200", "POST exception", …
        self.rejected: list[dict] = []  # non-retryable answers (4xx): each one is a finding
        self.failures: list[dict] = []  # retried failures other than 503 (first MAX_EVENTS_KEPT)
        self.read_missing: list[str] = []  # an acknowledged payment answered 404
        self.abandoned: list[str] = []  # keys still unacknowledged when the client had to stop
        self.in_flight: dict[int, str] = {}  # client → the key it is working on

    def record(self, label: str) -> None:
        with self._lock:
            self.statuses[label] += 1

    def acknowledge(self, ack: Acknowledgement) -> None:
        with self._lock:
            self.acks[ack.key] = ack

    def note(self, kind: str, event: dict) -> None:
        with self._lock:
            target = getattr(self, kind)
            if kind != "failures" or len(target) < MAX_EVENTS_KEPT:
                target.append(event)

    def ack_times(self) -> list[float]:
        with self._lock:
            return [ack.acknowledged for ack in self.acks.values()]

    def acknowledged_ids(self) -> dict[str, str]:
        with self._lock:
            return {key: ack.payment_id for key, ack in self.acks.items()}

    def count(self) -> int:
        with self._lock:
            return len(self.acks)


class Client(threading.Thread):
    def __init__(self, index: int, environment: Mapping[str, str], customers: list[str], ledger: Ledger,
                 interval: float, stop: threading.Event, function_name: str, routing: Routing | None = None) -> None:
        super().__init__(name=f"payment-client-{index}", daemon=True)
        self.index = index
        self.environment = dict(environment)
        self.customers = customers
        self.ledger = ledger
        self.interval = interval
        self.stop_requested = stop
        self.function_name = function_name
        self.random = random.Random(index)
        self.mine: list[str] = []  # payment ids this client was acknowledged
        handler = isolated_module("payment_api", "payment_api.handler")
        private_metrics(handler.metrics)
        handler.metrics.clear_metrics()
        self.handler = handler
        self.crashed: BaseException | None = None
        self.routing = routing
        self.attempts: list[Attempt] = []
        self.resolver = None
        if routing is not None:
            from lib.local.rehearsal.resolver import CachingStub

            routing.fault.wrap(handler)
            self.resolver = CachingStub(routing.lookup, random.Random(1000 + index))

    def run(self) -> None:
        try:
            with thread_environ().overlaid(self.environment):
                self._run()
        except BaseException as error:  # noqa: BLE001 - reported by the load's health check
            self.crashed = error

    def _run(self) -> None:
        number = 0
        next_at = time.monotonic()
        while not self.stop_requested.is_set():
            number += 1
            key = f"rh-{self.index:02d}-{number:06d}"
            body = {"customer_id": self.random.choice(self.customers),
                    "amount": f"{self.random.randint(100, 99_999) / 100:.2f}", "currency": "EUR"}
            self.ledger.in_flight[self.index] = key
            if not self._pay(key, body):
                self.ledger.note("abandoned", key)
            self.ledger.in_flight.pop(self.index, None)
            if number % READ_EVERY == 0 and self.mine:
                self._read(self.random.choice(self.mine))
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            self.stop_requested.wait(max(0.0, next_at - time.monotonic()))

    def _pay(self, key: str, body: dict) -> bool:
        first, attempts, stopped_at = time.monotonic(), 0, None
        while True:
            if self.stop_requested.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > FINISH_SECONDS:
                    return False
            attempts += 1
            side = self._side()
            try:
                status, headers, answer = self._call("POST", "/payments", body, {"Idempotency-Key": key}, side=side)
            except Exception as error:  # noqa: BLE001 - a crashed invocation: Lambda answers the ALB 502
                self.ledger.record("POST exception")
                self.attempts.append(Attempt(time.monotonic(), side, True, f"{side} exception {type(error).__name__}"))
                self.ledger.note("failures", {"key": key, "at": time.time(), "error": repr(error)[:300]})
                time.sleep(ERROR_RETRY_SECONDS)
                continue
            self.ledger.record(f"POST {status}")
            self.attempts.append(Attempt(time.monotonic(), side, True, "ok" if status in (200, 201) else
                                         f"{side} {status} {answer.get('error', '') if isinstance(answer, dict) else ''}"
                                         .strip()))
            if status in (200, 201):
                payment_id = answer["payment_id"]
                self.ledger.acknowledge(Acknowledgement(key, payment_id, first, time.monotonic(), attempts, status))
                self.mine.append(payment_id)
                return True
            if status == 503:
                try:
                    retry_after = float(headers.get("retry-after", ERROR_RETRY_SECONDS))
                except ValueError:
                    retry_after = ERROR_RETRY_SECONDS
                time.sleep(min(retry_after, RETRY_AFTER_CAP_SECONDS))
                continue
            if 400 <= status < 500:
                self.ledger.note("rejected", {"key": key, "status": status, "body": answer, "at": time.time()})
                return True  # answered, not acknowledged: retrying the same request changes nothing
            self.ledger.note("failures", {"key": key, "status": status, "body": answer, "at": time.time()})
            time.sleep(ERROR_RETRY_SECONDS)

    def _read(self, payment_id: str) -> None:
        try:
            status, _, _ = self._call("GET", f"/payments/{payment_id}", side=self._side())
        except Exception:  # noqa: BLE001
            self.ledger.record("GET exception")
            return
        self.ledger.record(f"GET {status}")
        if status == 404:
            self.ledger.note("read_missing", payment_id)

    def _side(self) -> str:
        if self.resolver is None:
            return "aws"
        return self.routing.sides[self.resolver.resolve()]

    def _call(self, method: str, path: str, body: dict | None = None,
              headers: Mapping[str, str] | None = None, *, side: str = "aws") -> tuple[int, dict, dict]:
        if side == "onprem":
            return self._call_onprem(method, path, body, headers)
        result = self.handler.lambda_handler(alb_event(method, path, body, headers), FakeContext(self.function_name))
        answer_headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        try:
            answer = json.loads(result.get("body") or "{}")
        except ValueError:
            answer = {"raw": result.get("body")}
        return result["statusCode"], answer_headers, answer


    def _call_onprem(self, method: str, path: str, body: dict | None,
                     headers: Mapping[str, str] | None) -> tuple[int, dict, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.routing.onprem_port, timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers={
                "Content-Type": "application/json", **dict(headers or {})})
            response = connection.getresponse()
            raw = response.read()
            answer_headers = {name.lower(): value for name, value in response.getheaders()}
            try:
                answer = json.loads(raw or b"{}")
            except ValueError:
                answer = {"raw": raw[:200].decode(errors="replace")}
            return response.status, answer_headers, answer
        finally:
            connection.close()


class PaymentLoad:
    """`clients` callers sharing `rate` payments per second between them."""

    def __init__(self, environment: Mapping[str, str], customers: list[str], *, clients: int, rate: float,
                 function_name: str, routing: Routing | None = None) -> None:
        # Before the API's modules are imported: payment_api.writer binds os.environ as a default
        # argument at import time, so it must already be the per-thread environment then.
        thread_environ()
        self.ledger = Ledger()
        self.stop_event = threading.Event()
        self.rate = rate
        self.clients = [Client(index, environment, customers, self.ledger, clients / rate, self.stop_event,
                               function_name, routing) for index in range(clients)]
        self.routing = routing
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        for client in self.clients:
            client.start()

    def stop(self) -> None:
        self.stop_event.set()
        for client in self.clients:
            client.join(timeout=FINISH_SECONDS + 30)
        self.stopped_at = time.monotonic()
        for client in self.clients:
            if client.handler._database is not None:  # the environment's kept connection
                client.handler._database.close()

    def crashed(self) -> list[str]:
        return [f"{client.name}: {client.crashed!r}" for client in self.clients if client.crashed is not None]

    def wait_for(self, more: int, timeout: float) -> bool:
        """Until `more` payments beyond the current count are acknowledged (False after `timeout`)."""
        target = self.ledger.count() + more
        deadline = time.monotonic() + timeout
        while self.ledger.count() < target:
            if time.monotonic() > deadline or self.crashed():
                return False
            time.sleep(0.1)
        return True
