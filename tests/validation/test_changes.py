"""Comparing only the keys changed since a checkpoint (validate_changes), the sequences alone
(validate_sequences), and the parsing of test_decoding's tuples. Reading a real slot:
tests/cutover/test_checkpoint.py."""

from __future__ import annotations

import pytest

from payment_validation import ValidationOptions
from payment_validation.changes import Changes, _collect, parse_tuple
from payment_validation.engine import validate_changes, validate_sequences
from tests.validation.conftest import ROW_COUNTS, customer_id, payment_id


def changed(*lines: str) -> Changes:
    """The Changes test_decoding's output lines make."""
    changes = Changes()
    for line in lines:
        _collect(changes, line, max_rows=1_000)
    return changes


def payment_line(i: int, operation: str = "UPDATE") -> str:
    return f"table public.payments: {operation}: payment_id[uuid]:'{payment_id(i)}' amount[numeric]:12.50"


def run(connect, databases, changes: Changes, **options) -> dict:
    return validate_changes(connect(databases.source), connect(databases.target), changes,
                            ValidationOptions(**options)).to_dict()


def test_a_difference_on_a_changed_key_is_found(connect, databases):
    databases.on_target("UPDATE payments SET amount = 1.00 WHERE payment_id = %s", (payment_id(7),))

    result = run(connect, databases, changed(payment_line(7), payment_line(8)))

    payments = result["tables"]["public.payments"]
    assert result["status"] == "FAILED"
    assert payments["mismatched"] == [{"payment_id": payment_id(7)}]
    assert result["scope"]["mode"] == "changes"
    assert result["scope"]["keys_compared"] == 2


def test_a_key_deleted_on_both_sides_is_equal_and_counts_are_compared(connect, databases):
    databases.on_both("DELETE FROM transactions WHERE payment_id = %s", (payment_id(9),))
    databases.on_both("DELETE FROM payments WHERE payment_id = %s", (payment_id(9),))

    result = run(connect, databases, changed(payment_line(9, "DELETE")))

    assert result["status"] == "PASSED", result["message"]
    payments = result["tables"]["public.payments"]
    assert (payments["source_rows"], payments["target_rows"]) == (ROW_COUNTS["public.payments"] - 1,) * 2


def test_a_difference_on_a_key_the_checkpoint_does_not_name_fails_the_row_counts(connect, databases):
    # a write on the target outside replication, on a key the source left alone: the counts witness it
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 3")

    result = run(connect, databases, changed(payment_line(1)))

    audit_log = result["tables"]["public.audit_log"]
    assert audit_log["status"] == "FAILED"
    assert "row counts differ (source 200, target 199)" in audit_log["message"]


def test_without_row_counts_only_the_changed_keys_decide(connect, databases):
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 3")

    result = run(connect, databases, changed(payment_line(1)), recheck_rounds=0)
    result_uncounted = validate_changes(connect(databases.source), connect(databases.target), changed(payment_line(1)),
                                        ValidationOptions(), count_rows=False).to_dict()

    assert result["status"] == "FAILED"
    assert result_uncounted["status"] == "PASSED", "the key the checkpoint does not name is not compared"
    assert result_uncounted["scope"]["row_counts"] is False


def test_a_truncated_table_is_compared_whole(connect, databases):
    databases.on_target("UPDATE customers SET display_name = 'Changed' WHERE customer_id = %s", (customer_id(5),))

    result = run(connect, databases, changed("table public.customers, public.audit_log: TRUNCATE: (no-flags)"))

    customers = result["tables"]["public.customers"]
    assert customers["mismatched"] == [{"customer_id": customer_id(5)}]
    assert set(result["scope"]["compared_whole"]) == {"public.customers", "public.audit_log"}


def test_a_key_change_names_both_keys(connect, databases):
    changes = changed("table public.audit_log: UPDATE: old-key: audit_id[bigint]:4 new-tuple: audit_id[bigint]:9004 "
                      "entity[text]:'payment' entity_id[text]:'x' action[text]:'it''s moved' detail[jsonb]:'{}' "
                      "recorded_at[timestamp with time zone]:'2024-02-01 00:04:00+00'")

    assert [row["audit_id"] for row in changes.tables["public.audit_log"].rows] == ["4", "9004"]
    assert changes.tables["public.audit_log"].rows[1]["action"] == "it's moved"


def test_parse_tuple_reads_quoted_names_nulls_and_untouched_toast():
    assert parse_tuple('"Odd [name]"[text]:\'a b\' n[integer]:null big[text]:unchanged-toast-datum k[int8]:-3') == {
        "Odd [name]": "a b", "n": None, "k": "-3"}


def test_overflow_stops_collecting():
    changes = Changes()
    for i in range(5):
        _collect(changes, payment_line(i), max_rows=3)

    assert changes.overflow and changes.rows == 3
    with pytest.raises(ValueError):
        validate_changes(None, None, changes)


def test_sequences_alone_find_a_sequence_behind_its_column(connect, databases):
    # the target's identity behind the rows it holds, as replication leaves it
    databases.on_target("SELECT setval(pg_get_serial_sequence('audit_log', 'audit_id'), 5)")

    result = validate_sequences(connect(databases.source), connect(databases.target),
                                ValidationOptions(check_sequences=True)).to_dict()

    audit_log = result["tables"]["public.audit_log"]
    assert result["status"] == "FAILED"
    assert "is behind column audit_id" in audit_log["message"]
    assert audit_log["source_rows"] is None, "content is not compared"
    assert result["scope"] == {"mode": "sequences"}


def test_changed_keys_read_alike_whether_the_key_leads_the_tuple_or_not():
    table = changed(
        "table public.transactions: UPDATE: payment_id[uuid]:'a' seq[integer]:1 kind[text]:'x'",
        # a quoted value that looks like the key columns, before them: never taken for them
        "table public.transactions: UPDATE: note[text]:'payment_id[uuid]:''z'' seq[integer]:9' "
        "payment_id[uuid]:'b' seq[integer]:2",
        "table public.transactions: INSERT: payment_id[uuid]:'it''s' seq[integer]:3",
        # a column named like the key's prefix between the key columns
        "table public.transactions: INSERT: payment_id[uuid]:'c' seqx[integer]:7 seq[integer]:4",
    ).tables["public.transactions"]

    assert table.keys(("payment_id", "seq")) == {("a", "1"), ("b", "2"), ("it's", "3"), ("c", "4")}
    assert table.keys(("seq", "payment_id")) == {("1", "a"), ("2", "b"), ("3", "it's"), ("4", "c")}
    assert table.keys(("payment_id", "missing")) is None


def test_differences_among_many_changed_keys_are_named_on_simple_and_composite_keys(connect, databases):
    databases.on_target("INSERT INTO audit_log (audit_id, entity, entity_id, action) "
                        "VALUES (9001, 'payment', 'x', 'created')")
    databases.on_target("UPDATE transactions SET processor_ref = 'changed' WHERE payment_id = %s AND seq = 1",
                        (payment_id(3),))
    audit = [f"table public.audit_log: UPDATE: audit_id[bigint]:{i} action[text]:'x'" for i in (*range(1, 60), 9001)]
    transactions = [f"table public.transactions: UPDATE: payment_id[uuid]:'{payment_id(i)}' seq[integer]:1"
                    for i in range(1, 40)]

    result = validate_changes(connect(databases.source), connect(databases.target), changed(*audit, *transactions),
                              ValidationOptions(), count_rows=False).to_dict()

    audit_log, transactions_result = result["tables"]["public.audit_log"], result["tables"]["public.transactions"]
    assert audit_log["extra_in_target"] == [{"audit_id": 9001}]
    assert (audit_log["source_rows"], audit_log["target_rows"]) == (59, 60)
    assert transactions_result["mismatched"] == [{"payment_id": payment_id(3), "seq": 1}]
    assert result["tables"]["public.payments"]["status"] == "PASSED"


def test_keys_sent_as_one_array_literal_arrive_as_they_were(connect, databases):
    from payment_validation.queries import text_array

    values = ['plain', 'it\'s', 'a "quoted" word', 'back\\slash', '{braces,comma}', ' spaced ', 'NULL', '', None]
    with connect(databases.source).cursor() as cur:
        for sent in (values, ["plain", "it's", "{x,y}", " spaced "], []):
            cur.execute("SELECT %s::text[]", (text_array(sent),))
            assert cur.fetchone()[0] == sent
