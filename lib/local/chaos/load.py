"""The payment load: worker processes, each running client threads through the real payment API
handler (its own copy per thread, as Lambda runs one request per execution environment), started once
and told to write for each trial.

A client creates payments one after another at a steady pace, each with a new Idempotency-Key; on a
retryable answer (503, 5xx, an exception) it retries with the same key and body until acknowledged,
waiting the Retry-After it was given (capped). Every attempt and its answer is one JSON line in the
worker's log of the trial: key, customer, amount, status, the API's error code, payment id, the times
it was sent and answered (time.time(), seconds). After `stop` a client finishes the payment it is on
for at most FINISH_SECONDS, then gives up on it (its last answer stays in the log: ambiguous).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

RETRY_AFTER_CAP_SECONDS = 0.2
ERROR_RETRY_SECONDS = 0.1
FINISH_SECONDS = 20.0
LAMBDA_ROOT = Path(__file__).resolve().parents[2] / "lambda"


# Powertools' event handler keeps the event being resolved on a class (BaseRouter.current_event), so two
# threads running the API at once in one process read each other's requests (a client then gets
# another client's payment back). Lambda runs one request per environment at a time: so does each
# worker process; the clients' waits (pacing, Retry-After) stay concurrent.
_ONE_REQUEST_AT_A_TIME = threading.Lock()


class _Trial:
    def __init__(self, log: Path, prefix: str, customers: list[str], seed: int) -> None:
        self.stop = threading.Event()
        self.log = log.open("w")
        self.lock = threading.Lock()
        self.prefix = prefix
        self.customers = customers
        self.seed = seed
        self.acknowledged = 0
        self.attempts = 0

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry)
        with self.lock:
            self.log.write(line + "\n")
            self.attempts += 1
            if entry["status"] in (200, 201):
                self.acknowledged += 1


class _Client(threading.Thread):
    def __init__(self, index: int, environment: dict[str, str], interval: float) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        from lib.local.rehearsal.load import isolated_module, private_metrics

        self.index = index
        self.environment = environment
        self.interval = interval
        self.handler = isolated_module("payment_api", "payment_api.handler")
        private_metrics(self.handler.metrics)
        self.trial: _Trial | None = None
        self.go = threading.Event()
        self.warm = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        from lib.local.lambdas import thread_environ

        with thread_environ().overlaid(self.environment):
            while True:
                self.go.wait()
                self.go.clear()
                try:
                    self._warm_up()
                    self._write(self.trial)
                finally:
                    self.done.set()

    def _warm_up(self) -> None:
        """A health check first: the connection to the writer (TLS, SCRAM) and the SSM client are made
        before the trial's clock starts, as in a warm Lambda environment."""
        from lib.local.lambdas import FakeContext
        from lib.local.rehearsal.load import alb_event

        try:
            with _ONE_REQUEST_AT_A_TIME:
                self.handler.lambda_handler(alb_event("GET", "/health"), FakeContext("payment-api-chaos"))
        except Exception:  # noqa: BLE001 - the trial's requests will meet it again
            pass
        finally:
            self.warm.set()

    def _write(self, trial: _Trial) -> None:
        rng = random.Random(f"{trial.seed}-{trial.prefix}-{self.index}")
        number, next_at = 0, time.monotonic() + rng.random() * self.interval
        while not trial.stop.is_set():
            trial.stop.wait(max(0.0, next_at - time.monotonic()))
            if trial.stop.is_set():
                break
            number += 1
            key = f"{trial.prefix}-{self.index:02d}-{number:05d}"
            body = {"customer_id": rng.choice(trial.customers),
                    "amount": f"{rng.randint(100, 99_999) / 100:.2f}", "currency": "EUR"}
            self._pay(trial, key, body)
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)

    def _pay(self, trial: _Trial, key: str, body: dict) -> None:
        from lib.local.lambdas import FakeContext
        from lib.local.rehearsal.load import alb_event

        stopped_at = None
        while True:
            if trial.stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > FINISH_SECONDS:
                    return
            entry = {"key": key, "customer": body["customer_id"], "amount": body["amount"], "sent": time.time()}
            try:
                with _ONE_REQUEST_AT_A_TIME:
                    result = self.handler.lambda_handler(
                        alb_event("POST", "/payments", body, {"Idempotency-Key": key}), FakeContext("payment-api-chaos"))
                    database = self.handler._database
                    side = database.side if database is not None else None  # where the API sent it
                status = result["statusCode"]
                headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
                answer = json.loads(result.get("body") or "{}")
                entry.update(status=status, error=answer.get("error"), payment_id=answer.get("payment_id"))
            except Exception as error:  # noqa: BLE001 - a crashed invocation: the ALB answers 502
                status, headers, side = "exception", {}, None
                entry.update(status=status, error=repr(error)[:200], payment_id=None)
            entry["answered"] = time.time()
            entry["side"] = side
            trial.write(entry)
            if status in (200, 201):
                return
            if isinstance(status, int) and 400 <= status < 500:
                return  # refused: the same request would be refused again
            wait = ERROR_RETRY_SECONDS
            if status == 503:
                try:
                    wait = min(float(headers.get("retry-after", wait)), RETRY_AFTER_CAP_SECONDS)
                except ValueError:
                    pass
            time.sleep(wait)


def worker(connection, environment: dict[str, str], threads: int, rate: float) -> None:
    """A worker process: `threads` clients sharing `rate` payments per second; commands on `connection`."""
    import os

    sys.stdout = open(os.devnull, "w")  # the API's metrics (EMF) and logs: the trial's log is the record
    for root in sorted(LAMBDA_ROOT.iterdir()):
        if root.is_dir() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
    from lib.local.lambdas import thread_environ

    thread_environ()  # before payment_api is imported: it binds os.environ at import
    clients = [_Client(index, environment, threads / rate) for index in range(threads)]
    for client in clients:
        client.start()
    trial: _Trial | None = None
    connection.send({"ready": True})
    while True:
        command = connection.recv()
        if command["cmd"] == "start":
            trial = _Trial(Path(command["log"]), command["prefix"], command["customers"], command["seed"])
            for client in clients:
                client.trial = trial
                client.done.clear()
                client.warm.clear()
                client.go.set()
            for client in clients:
                client.warm.wait(timeout=30)
            connection.send({"started": True})
        elif command["cmd"] == "stop":
            trial.stop.set()
            for client in clients:
                client.done.wait()
            for client in clients:  # the environment's kept connection: a reset ends it anyway
                if client.handler._database is not None:
                    client.handler._database.close()
                    client.handler._database = None
            trial.log.close()
            connection.send({"acknowledged": trial.acknowledged, "attempts": trial.attempts})
        elif command["cmd"] == "exit":
            return


class Load:
    """`processes` worker processes of `threads` clients each, `rate` payments per second in total."""

    def __init__(self, environment: dict[str, str], *, processes: int = 4, threads: int = 3, rate: float = 150.0):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=worker, args=(child, environment, threads, rate / processes),
                                      daemon=True, name="payment-load")
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for pipe in self.pipes:
            pipe.recv()
        self.rate = rate
        self.process_count = processes

    def start(self, directory: Path, trial: str, customers: list[str], seed: int) -> list[Path]:
        logs = []
        for index, pipe in enumerate(self.pipes):
            log = directory / f"clients-{index}.jsonl"
            pipe.send({"cmd": "start", "log": str(log), "prefix": f"{trial}-p{index}", "customers": customers,
                       "seed": seed})
            logs.append(log)
        for pipe in self.pipes:
            pipe.recv()
        return logs

    def stop(self) -> dict[str, int]:
        for pipe in self.pipes:
            pipe.send({"cmd": "stop"})
        totals = {"acknowledged": 0, "attempts": 0}
        for pipe in self.pipes:
            answer = pipe.recv()
            for name in totals:
                totals[name] += answer[name]
        return totals

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"cmd": "exit"})
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def read_log(paths: list[Path]) -> list[dict[str, Any]]:
    entries = []
    for path in paths:
        if path.exists():
            entries += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return entries
