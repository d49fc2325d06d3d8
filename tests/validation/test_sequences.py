"""Sequences owned by the compared tables' columns (identity, serial): reported for every table,
and with check_sequences a target sequence that would hand out an id its column already holds
fails the table, naming the sequence. Replication copies ids but never advances sequences."""

from __future__ import annotations

import pytest

from payment_validation import ValidationOptions, validate

AUDIT_SEQUENCE = "public.audit_log_audit_id_seq"


def run(connect, databases, **options) -> dict:
    return validate(connect(databases.source), connect(databases.target), ValidationOptions(**options)).to_dict()


def test_sequences_of_identity_columns_are_reported(connect, databases):
    result = run(connect, databases, check_sequences=True)

    assert result["status"] == "PASSED", result["message"]
    assert result["tables"]["public.audit_log"]["sequences"] == [{
        "column": "audit_id", "name": AUDIT_SEQUENCE, "source_position": 201, "target_position": 201,
        "target_column_max": 200, "problem": None,
    }]
    assert result["tables"]["public.payments"]["sequences"] == []


def test_a_target_sequence_behind_its_column_is_reported(connect, databases):
    """As DMS leaves it: the rows copied with their ids, the sequence where it was."""
    databases.on_target("SELECT setval('audit_log_audit_id_seq', 150)")

    reported = run(connect, databases)

    audit_log = reported["tables"]["public.audit_log"]
    assert audit_log["status"] == "PASSED"  # not asked to check: only reported
    (sequence,) = audit_log["sequences"]
    assert (sequence["target_position"], sequence["target_column_max"]) == (151, 200)
    assert sequence["problem"] == (f"sequence {AUDIT_SEQUENCE} is behind column audit_id on target: "
                                   "next value 151 <= max 200")

    checked = run(connect, databases, check_sequences=True)

    assert checked["status"] == "FAILED"
    assert checked["tables"]["public.audit_log"]["status"] == "FAILED"
    assert checked["tables"]["public.audit_log"]["message"] == f"match; {sequence['problem']}"
    assert AUDIT_SEQUENCE in checked["message"]


@pytest.mark.parametrize("setval, behind", [
    ("setval('audit_log_audit_id_seq', 200)", False),  # next value 201: free
    ("setval('audit_log_audit_id_seq', 200, false)", True),  # next value 200: taken
    ("setval('audit_log_audit_id_seq', 5000)", False),  # advanced with a margin, as the cutover does
])
def test_the_next_value_decides(connect, databases, setval, behind):
    databases.on_target(f"SELECT {setval}")

    result = run(connect, databases, check_sequences=True, tables=("audit_log",))

    assert (result["status"] == "FAILED") is behind, result["message"]


def test_serial_columns_and_empty_tables(connect, databases):
    databases.on_both("""
        CREATE TABLE refunds (refund_id bigserial PRIMARY KEY, note text);
        CREATE TABLE batches (batch_no serial PRIMARY KEY, day date);
        INSERT INTO refunds (note) SELECT 'r' || i FROM generate_series(1, 5) AS i;
    """)
    databases.on_target("SELECT setval('refunds_refund_id_seq', 3)")

    result = run(connect, databases, check_sequences=True, tables=("refunds", "batches"))

    refunds, batches = result["tables"]["public.refunds"], result["tables"]["public.batches"]
    assert refunds["status"] == "FAILED"
    assert "sequence public.refunds_refund_id_seq is behind column refund_id on target" in refunds["message"]
    # never used: the next value is the start, and no row holds it
    assert batches["sequences"] == [{"column": "batch_no", "name": "public.batches_batch_no_seq",
                                     "source_position": 1, "target_position": 1, "target_column_max": None,
                                     "problem": None}]
    assert batches["status"] == "PASSED"


def test_a_column_without_its_sequence_on_target_fails_the_check(connect, databases):
    databases.on_target("ALTER TABLE audit_log ALTER COLUMN audit_id DROP IDENTITY")

    result = run(connect, databases, check_sequences=True, tables=("audit_log",))

    audit_log = result["tables"]["public.audit_log"]
    assert audit_log["status"] == "FAILED"
    assert audit_log["sequences"][0]["problem"] == (
        f"column audit_id owns sequence {AUDIT_SEQUENCE} on source but no sequence on target")


def test_a_sequence_the_role_cannot_read_fails_the_check(connect, databases):
    databases.on_both("CREATE SEQUENCE ids_seq; CREATE TABLE ids (id bigint PRIMARY KEY DEFAULT nextval('ids_seq'));"
                      "ALTER SEQUENCE ids_seq OWNED BY ids.id")
    databases.on_target("REVOKE ALL ON SEQUENCE ids_seq FROM payments_app")  # its owner, but without SELECT

    result = run(connect, databases, check_sequences=True, tables=("ids",))

    assert result["tables"]["public.ids"]["sequences"][0]["problem"] == (
        "sequence public.ids_seq cannot be read on target (grant SELECT on it)")
    assert result["status"] == "FAILED"


def test_a_table_without_primary_key_still_has_its_sequence_checked(connect, databases):
    databases.on_both("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY, body text);"
                      "INSERT INTO events (body) VALUES ('a'), ('b')")
    databases.on_target("SELECT setval('events_id_seq', 1)")

    result = run(connect, databases, check_sequences=True, tables=("events",))

    events = result["tables"]["public.events"]
    assert events["status"] == "FAILED"
    assert events["message"] == ("no primary key: rows cannot be matched by key, content not compared; "
                                 "sequence public.events_id_seq is behind column id on target: next value 2 <= max 2")
