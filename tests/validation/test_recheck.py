"""Settle and recheck, step by step: the engine's pause between rounds is replaced by a function
that changes the databases the way replication catching up (or not) would, so each round's outcome
is known exactly. The same behaviour under a real write load: test_live_replica.py."""

from __future__ import annotations

import pytest

from payment_validation import ValidationOptions, validate
from payment_validation import engine
from tests.validation.conftest import customer_id, payment_id
from tests.validation.test_engine import NO_DIFFERENCES, differences


@pytest.fixture
def pauses(monkeypatch):
    """pauses.then(action, …): what happens during each pause, in order; records the waits."""

    class Pauses:
        def __init__(self):
            self.actions = []
            self.seconds = []

        def then(self, *actions):
            self.actions += actions
            return self

    recorded = Pauses()

    def pause(seconds):
        recorded.seconds.append(seconds)
        if recorded.actions:
            recorded.actions.pop(0)()

    monkeypatch.setattr(engine, "_wait", pause)
    return recorded


def run(connect, databases, **options) -> dict:
    options = {"recheck_rounds": 3, "recheck_seconds": 2.5, **options}
    return validate(connect(databases.source), connect(databases.target), ValidationOptions(**options)).to_dict()


def test_a_row_that_arrives_before_the_recheck_converges(connect, databases, pauses):
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 42")
    pauses.then(lambda: copy_audit_row(databases, 42))

    result = run(connect, databases)

    assert result["status"] == "PASSED", result["message"]
    audit_log = result["tables"]["public.audit_log"]
    assert differences(audit_log) == NO_DIFFERENCES
    assert audit_log["converged_in_flight"] == 1
    assert (audit_log["source_rows"], audit_log["target_rows"]) == (200, 199)  # the first pass's snapshot
    assert result["recheck_rounds"] == 1, "every key settled: no further round"
    assert pauses.seconds == [2.5]


def copy_audit_row(databases, audit_id: int) -> None:
    """What replication does: the source's row, as it is now, written to the target."""
    source = databases.server.app_connect(databases.source)
    try:
        with source.cursor() as cur:
            cur.execute("SELECT entity, entity_id, action, detail::text, recorded_at FROM audit_log "
                        "WHERE audit_id = %s", (audit_id,))
            row = cur.fetchone()
    finally:
        source.close()
    databases.on_target("INSERT INTO audit_log (audit_id, entity, entity_id, action, detail, recorded_at) "
                        "VALUES (%s, %s, %s, %s, %s::jsonb, %s)", (audit_id, *row))


def test_a_difference_that_stays_is_reported_after_the_last_round(connect, databases, pauses):
    databases.on_target("UPDATE payments SET amount = amount + 1 WHERE payment_id = %s", (payment_id(17),))

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    payments = result["tables"]["public.payments"]
    assert differences(payments) == {**NO_DIFFERENCES, "mismatched": ([{"payment_id": payment_id(17)}], 1)}
    assert payments["converged_in_flight"] == 0
    assert result["recheck_rounds"] == 3
    assert pauses.seconds == [2.5, 2.5, 2.5]


def test_each_key_is_reported_as_it_differs_in_the_last_round(connect, databases, pauses):
    """Missing at first, then present with other content: mismatched. Extra at first, then gone:
    converged."""
    extra = "00000000-0000-4000-8000-00000000beef"
    databases.on_target(f"""
        DELETE FROM transactions WHERE payment_id = '{payment_id(4)}';
        DELETE FROM payments WHERE payment_id = '{payment_id(4)}';
        INSERT INTO customers (customer_id, external_ref, display_name) VALUES ('{extra}', 'CUST-X', 'Extra');
    """)
    pauses.then(lambda: databases.on_target(f"""
        INSERT INTO payments (payment_id, customer_id, amount, currency, status, idempotency_key, request_hash)
        VALUES ('{payment_id(4)}', '{customer_id(5)}', 99.99, 'EUR', 'pending', 'idem-4', 'changed');
        DELETE FROM customers WHERE customer_id = '{extra}';
    """))

    result = run(connect, databases, recheck_rounds=2)

    payments, customers = result["tables"]["public.payments"], result["tables"]["public.customers"]
    assert differences(payments) == {**NO_DIFFERENCES, "mismatched": ([{"payment_id": payment_id(4)}], 1)}
    assert differences(customers) == NO_DIFFERENCES
    assert customers["converged_in_flight"] == 1
    transactions = result["tables"]["public.transactions"]
    assert transactions["missing_in_target_total"] == 2  # payment 4 has two transactions, never copied


def test_rechecks_read_only_the_keys_found_different(connect, databases, pauses):
    """A row corrupted after the first pass is not in its snapshot and not among the keys read
    again: rechecks look up keys, they do not compare ranges."""
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 7")
    pauses.then(lambda: (copy_audit_row(databases, 7),
                         databases.on_target("UPDATE audit_log SET action = 'tampered' WHERE audit_id = 8")))

    result = run(connect, databases)

    assert result["status"] == "PASSED"
    assert result["tables"]["public.audit_log"]["converged_in_flight"] == 1


def test_one_pause_per_round_for_all_tables(connect, databases, pauses):
    databases.on_target("UPDATE payments SET status = 'failed' WHERE payment_id = %s", (payment_id(9),))
    databases.on_target("UPDATE customers SET display_name = 'X' WHERE external_ref = 'CUST-3'")
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 5")

    result = run(connect, databases, recheck_rounds=2, recheck_seconds=0.5)

    assert result["status"] == "FAILED"
    assert pauses.seconds == [0.5, 0.5]
    assert {name: table["message"] for name, table in result["tables"].items() if table["status"] == "FAILED"} == {
        "public.payments": "1 mismatched", "public.customers": "1 mismatched", "public.audit_log": "1 missing_in_target"}


def test_without_rounds_the_first_pass_is_the_report(connect, databases, pauses):
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 42")

    result = run(connect, databases, recheck_rounds=0)

    assert result["status"] == "FAILED"
    assert result["recheck_rounds"] == 0
    assert pauses.seconds == []


def test_keys_beyond_the_recheck_limit_are_reported_without_a_recheck(connect, databases, pauses, monkeypatch):
    monkeypatch.setattr(engine, "MAX_RECHECKED_KEYS", 2)
    databases.on_target("DELETE FROM audit_log WHERE audit_id IN (10, 11, 12, 13, 14)")
    pauses.then(lambda: [copy_audit_row(databases, audit_id) for audit_id in (10, 11, 12, 13, 14)])

    result = run(connect, databases, max_diffs_per_table=2)

    audit_log = result["tables"]["public.audit_log"]
    assert audit_log["converged_in_flight"] == 2  # 10 and 11
    assert differences(audit_log)["missing_in_target"] == ([{"audit_id": 12}, {"audit_id": 13}], 3)
    assert audit_log["message"] == "3 missing_in_target (3 of them beyond the first 2 differing keys, not rechecked)"


def test_a_table_whose_recheck_fails_is_an_error(connect, databases, pauses, postgres):
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 3")
    blocker = postgres.app_connect(databases.target)

    def lock():
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")  # held until rollback

    pauses.then(lock)
    try:
        result = run(connect, databases, statement_timeout_seconds=0.5)
    finally:
        blocker.rollback()
        blocker.close()

    assert result["status"] == "ERROR"
    audit_log = result["tables"]["public.audit_log"]
    assert (audit_log["status"], audit_log["message"]) == (
        "ERROR", "target database: canceling statement due to statement timeout")
    assert audit_log["source_rows"] is None
