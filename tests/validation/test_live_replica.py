"""Validation of a live replica: while the engine runs, a writer keeps changing the source and an
applier copies every change to the target LAG_SECONDS later, as replication does (row images,
applied in commit order). Rows in flight differ at any instant; settled by rechecks, they are
counted, not reported, and a row corrupted on the target still is reported, alone."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from payment_validation import ValidationOptions, validate
from tests.validation.conftest import ROW_COUNTS, TABLES, customer_id, payment_id
from tests.validation.test_engine import NO_DIFFERENCES, differences

LAG_SECONDS = 1.5
WRITE_INTERVAL_SECONDS = 0.01
# Each key is written at most twice, a few hundred milliseconds apart: once the writes to it are
# older than the lag, it is equal on both sides for good, so the rechecks settle every key found
# in flight. A row written over and over (a hot row) may never be seen equal; see the engine.
UPDATE_AFTER_CYCLES = 30
CORRUPTED_PAYMENT = 250  # a seeded payment the writer never touches

PRIMARY_KEYS = {"payments": ("payment_id",), "transactions": ("payment_id", "seq"), "audit_log": ("audit_id",)}


class LiveReplica:
    """A writer thread on the source and an applier thread copying its changes to the target."""

    def __init__(self, databases):
        self._databases = databases
        self._changes: queue.Queue = queue.Queue()  # (due time, table, key json, row json or None)
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._guarded, args=(self._write,), name="writer"),
                         threading.Thread(target=self._guarded, args=(self._apply,), name="applier")]
        self.errors: list[BaseException] = []
        self.written = 0
        self.applied = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()

    def _guarded(self, loop) -> None:
        try:
            loop()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.errors.append(error)
            self._stopping.set()

    def _write(self) -> None:
        """Per cycle, in one transaction: a new payment with its first transaction, the payment of
        UPDATE_AFTER_CYCLES cycles ago captured, an audit entry, the audit entry of that cycle deleted."""
        conn = self._databases.server.app_connect(self._databases.source)
        inserted: list[tuple[str, int]] = []
        try:
            while not self._stopping.is_set():
                cycle = len(inserted)
                new_payment = str(uuid.UUID(int=(0xFEED << 112) + cycle))
                changes = []
                with conn, conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, request_hash)"
                        " VALUES (%s, %s, %s, 'EUR', %s, %s) RETURNING to_jsonb(payments)",
                        (new_payment, customer_id(1 + cycle % 40), 1 + cycle % 500, f"live-{cycle}", f"req-{cycle}"))
                    changes.append(("payments", cur.fetchone()[0]))
                    cur.execute("INSERT INTO transactions (payment_id, seq, kind, amount) VALUES (%s, 1, 'authorize', 1)"
                                " RETURNING to_jsonb(transactions)", (new_payment,))
                    changes.append(("transactions", cur.fetchone()[0]))
                    cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'created')"
                                " RETURNING audit_id, to_jsonb(audit_log)", (new_payment,))
                    audit_id, row = cur.fetchone()
                    changes.append(("audit_log", row))
                    if cycle >= UPDATE_AFTER_CYCLES:
                        old_payment, old_audit_id = inserted[cycle - UPDATE_AFTER_CYCLES]
                        cur.execute("UPDATE payments SET status = 'captured', updated_at = now() WHERE payment_id = %s"
                                    " RETURNING to_jsonb(payments)", (old_payment,))
                        changes.append(("payments", cur.fetchone()[0]))
                        cur.execute("DELETE FROM audit_log WHERE audit_id = %s", (old_audit_id,))
                        changes.append(("audit_log", {"audit_id": old_audit_id, "deleted": True}))
                    inserted.append((new_payment, audit_id))
                due = time.monotonic() + LAG_SECONDS
                for table, row in changes:
                    self._changes.put((due, table, row))
                self.written += 1
                time.sleep(WRITE_INTERVAL_SECONDS)
        finally:
            conn.close()

    def _apply(self) -> None:
        """Every change whose time has come, in order, one target transaction per batch."""
        conn = self._databases.server.app_connect(self._databases.target)
        pending = None
        try:
            while not self._stopping.is_set():
                if pending is None:
                    try:
                        pending = self._changes.get(timeout=0.05)
                    except queue.Empty:
                        continue
                wait = pending[0] - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, 0.05))
                    continue
                batch, pending = [pending], None
                while pending is None:
                    try:
                        change = self._changes.get_nowait()
                    except queue.Empty:
                        break
                    if change[0] > time.monotonic():
                        pending = change
                    else:
                        batch.append(change)
                with conn, conn.cursor() as cur:
                    for _, table, row in batch:
                        apply(cur, table, row)
                self.applied += len(batch)
        finally:
            conn.close()


def apply(cur, table: str, row: dict) -> None:
    """Upsert the row image (or delete the key), as logical replication applies a change."""
    key = PRIMARY_KEYS[table]
    if row.get("deleted"):
        cur.execute(f"DELETE FROM {table} WHERE ({', '.join(key)}) = "
                    f"(SELECT {', '.join(key)} FROM jsonb_populate_record(NULL::{table}, %s::jsonb))",
                    (json.dumps(row),))
        return
    columns = [column for column in row]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column not in key)
    cur.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} "
                f"FROM jsonb_populate_record(NULL::{table}, %s::jsonb) "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}", (json.dumps(row),))


@pytest.fixture
def live_replica(databases) -> Iterator[LiveReplica]:
    replica = LiveReplica(databases)
    replica.start()
    # Changes are in flight from the first write on: the applier holds each back LAG_SECONDS.
    deadline = time.monotonic() + 10
    while not replica.written and not replica.errors:
        assert time.monotonic() < deadline, "the write load wrote nothing in 10 s"
        time.sleep(0.01)
    yield replica
    replica.stop()
    assert not replica.errors, f"the write load failed: {replica.errors[0]!r}"


def validate_live(connect, databases) -> dict:
    # rounds * seconds three times the lag: every key in flight settles (the rounds stop once all
    # have; with a corrupted row, all of them run)
    options = ValidationOptions(recheck_rounds=6, recheck_seconds=0.75, max_diffs_per_table=1000)
    return validate(connect(databases.source), connect(databases.target), options).to_dict()


def test_a_lagging_replica_passes_with_the_keys_in_flight_counted(connect, databases, live_replica):
    result = validate_live(connect, databases)

    assert not live_replica.errors
    assert result["status"] == "PASSED", result["message"]
    converged = {name: table["converged_in_flight"] for name, table in result["tables"].items()}
    assert converged["public.payments"] > 0 and converged["public.audit_log"] > 0, converged
    # the first pass saw a source ahead of its target: counts differed, and decided nothing
    payments = result["tables"]["public.payments"]
    assert payments["source_rows"] > payments["target_rows"] >= ROW_COUNTS["public.payments"]
    assert live_replica.written > 0 and live_replica.applied > 0


def test_a_corrupted_row_fails_with_exactly_its_key_under_load(connect, databases, live_replica):
    databases.on_target("UPDATE payments SET amount = amount + 100 WHERE payment_id = %s",
                        (payment_id(CORRUPTED_PAYMENT),))

    result = validate_live(connect, databases)

    assert not live_replica.errors
    assert result["status"] == "FAILED"
    payments = result["tables"]["public.payments"]
    assert differences(payments) == {
        **NO_DIFFERENCES, "mismatched": ([{"payment_id": payment_id(CORRUPTED_PAYMENT)}], 1)}, payments["message"]
    assert payments["converged_in_flight"] > 0
    assert {name: table["status"] for name, table in result["tables"].items()} == {
        **{name: "PASSED" for name in TABLES}, "public.payments": "FAILED"}
