"""Watchers that run beside the runbook.

OneWriterWatch samples both databases several times a second and records which of them the
application roles can write to (a member of payment_writer: the privilege half of the fence, the
half that binds whatever a session sets). Two writable sides at the same moment is the fault the
whole design exists to prevent; the watch counts such samples and keeps every change of state, so
the report shows each handover (old writer fenced → new writer opened) as the databases saw it.

ControlsWatch polls the two controls after the fault: when Route 53 answers on-prem 100 / AWS 0,
when the writer parameter names on-prem, and when both hold.
"""

from __future__ import annotations

import threading
import time
from typing import Any

WRITER_GROUP = "payment_writer"


class OneWriterWatch:
    def __init__(self, servers: dict[str, Any], roles: list[str], origin: float, interval: float = 0.1) -> None:
        self.servers = servers
        self.roles = roles
        self.origin = origin
        self.interval = interval
        self.samples = 0
        self.both_writable: list[float] = []  # seconds since the rehearsal began
        self.neither_writable_seconds = 0.0
        self.transitions: list[dict] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="one-writer-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        connections = {}
        previous: dict[str, bool] | None = None
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    for side, server in self.servers.items():
                        if side not in connections or connections[side].closed:
                            connections[side] = server.admin()
                    state = {side: self._writable(conn) for side, conn in connections.items()}
                except Exception as error:  # noqa: BLE001 - a failed sample is noted, not fatal
                    self.errors.append(f"{time.monotonic() - self.origin:.1f}s {type(error).__name__}: {error}")
                    for conn in connections.values():
                        conn.close()
                    connections.clear()
                    self._stop.wait(self.interval)
                    continue
                now = time.monotonic()
                self.samples += 1
                if previous is not None and not any(previous.values()):
                    self.neither_writable_seconds += now - last
                if all(state.values()):
                    self.both_writable.append(round(now - self.origin, 2))
                if state != previous:
                    self.transitions.append({"at_seconds": round(now - self.origin, 2),
                                             "writable": [side for side, writable in state.items() if writable]})
                previous, last = state, now
                self._stop.wait(self.interval)
        finally:
            for conn in connections.values():
                conn.close()

    def _writable(self, conn) -> bool:
        """Whether any application role holds payment_writer here (directly or through a role)."""
        with conn.cursor() as cur:
            cur.execute("SELECT bool_or(pg_has_role(r.oid, %s::regrole, 'MEMBER')) FROM pg_roles r "
                        "WHERE r.rolname = ANY(%s)", (WRITER_GROUP, list(self.roles)))
            return bool(cur.fetchone()[0])

    def to_dict(self) -> dict:
        return {"samples": self.samples, "interval_seconds": self.interval,
                "both_writable_samples": len(self.both_writable), "both_writable_at_seconds": self.both_writable[:20],
                "no_writer_seconds": round(self.neither_writable_seconds, 2), "transitions": self.transitions,
                "errors": self.errors[:10],
                "how": "both databases sampled as the superuser: is payment_app a member of payment_writer there "
                       "(the fence's privilege half, which binds whatever a session sets)"}


class ControlsWatch:
    def __init__(self, controls: Any, interval: float = 0.2) -> None:
        self.controls = controls
        self.interval = interval
        self.weights_at: float | None = None
        self.writer_at: float | None = None
        self.both_at: float | None = None
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controls-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                weights = self.controls.weights()
                writer = self.controls.writer()["writer"]
            except Exception as error:  # noqa: BLE001 - a read that failed is retried
                self.errors.append(repr(error))
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            on_weights = weights.get("onprem") == 100 and weights.get("aws") == 0
            if on_weights and self.weights_at is None:
                self.weights_at = now
            if writer == "onprem" and self.writer_at is None:
                self.writer_at = now
            if on_weights and writer == "onprem" and self.both_at is None:
                self.both_at = now
            self._stop.wait(self.interval)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.both_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.both_at is not None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
