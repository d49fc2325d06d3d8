"""The comparison engine against a real PostgreSQL server: source and target are two databases
loaded with the reference schema and the same rows; each test changes the target and checks that
exactly the changed keys are reported."""

from __future__ import annotations

import json

import psycopg2
import pytest

from payment_validation import ValidationOptions, validate
from payment_validation import engine
from payment_validation.engine import DIFFERENCE_KINDS, NothingToValidateError, UnknownTableError
from payment_validation.queries import RowHash
from tests.validation.conftest import ROW_COUNTS, TABLES, customer_id, payment_id


def run(connect, databases, **options) -> dict:
    report = validate(connect(databases.source), connect(databases.target), ValidationOptions(**options))
    result = report.to_dict()
    json.dumps(result)  # what the handler returns must serialize
    return result


def statuses(result: dict) -> dict[str, str]:
    return {name: table["status"] for name, table in result["tables"].items()}


def differences(table: dict) -> dict:
    return {kind: (table[kind], table[f"{kind}_total"]) for kind in DIFFERENCE_KINDS}


NO_DIFFERENCES = {"missing_in_target": ([], 0), "extra_in_target": ([], 0), "mismatched": ([], 0)}


def test_identical_databases_pass(connect, databases):
    result = run(connect, databases)

    assert result["status"] == "PASSED", result["message"]
    assert statuses(result) == {name: "PASSED" for name in TABLES}
    for name, table in result["tables"].items():
        assert (table["source_rows"], table["target_rows"], table["rows_checked"]) == (ROW_COUNTS[name],) * 3, name
        assert differences(table) == NO_DIFFERENCES, name
        assert table["schema_differences"] == []


def test_changed_value_is_reported_as_mismatched_with_its_key(connect, databases):
    databases.on_target("UPDATE payments SET amount = amount + 0.01 WHERE payment_id = %s", (payment_id(17),))

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    assert statuses(result) == {**{name: "PASSED" for name in TABLES}, "public.payments": "FAILED"}
    payments = result["tables"]["public.payments"]
    assert differences(payments) == {**NO_DIFFERENCES, "mismatched": ([{"payment_id": payment_id(17)}], 1)}
    assert payments["message"] == "1 mismatched"


def test_deleted_row_is_reported_missing_in_target(connect, databases):
    databases.on_target("DELETE FROM audit_log WHERE audit_id = 42")

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    audit_log = result["tables"]["public.audit_log"]
    assert differences(audit_log) == {**NO_DIFFERENCES, "missing_in_target": ([{"audit_id": 42}], 1)}
    assert (audit_log["source_rows"], audit_log["target_rows"]) == (200, 199)


def test_extra_row_is_reported_extra_in_target(connect, databases):
    extra_customer = "00000000-0000-4000-8000-00000000beef"
    databases.on_target(
        "INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, 'CUST-X', 'Extra')",
        (extra_customer,),
    )

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    customers = result["tables"]["public.customers"]
    assert differences(customers) == {**NO_DIFFERENCES, "extra_in_target": ([{"customer_id": extra_customer}], 1)}
    assert customers["rows_checked"] == 41


@pytest.mark.parametrize("source_value, target_value", [(None, ""), ("", None)])
def test_null_and_empty_string_differ(connect, databases, source_value, target_value):
    # payment 5 has transactions 1-3; processor_ref of seq 2 is NULL in the seed
    statement = "UPDATE transactions SET processor_ref = %s WHERE payment_id = %s AND seq = 2"
    databases.on_source(statement, (source_value, payment_id(5)))
    databases.on_target(statement, (target_value, payment_id(5)))

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    transactions = result["tables"]["public.transactions"]
    assert differences(transactions) == {**NO_DIFFERENCES, "mismatched": ([{"payment_id": payment_id(5), "seq": 2}], 1)}


def test_composite_key_differences_name_every_key_column(connect, databases):
    databases.on_target(f"""
        DELETE FROM transactions WHERE payment_id = '{payment_id(7)}' AND seq = 1;
        UPDATE transactions SET kind = 'void' WHERE payment_id = '{payment_id(8)}' AND seq = 3;
        INSERT INTO transactions (payment_id, seq, kind, amount) VALUES ('{payment_id(9)}', 4, 'refund', 1.00);
    """)

    result = run(connect, databases)

    assert differences(result["tables"]["public.transactions"]) == {
        "missing_in_target": ([{"payment_id": payment_id(7), "seq": 1}], 1),
        "extra_in_target": ([{"payment_id": payment_id(9), "seq": 4}], 1),
        "mismatched": ([{"payment_id": payment_id(8), "seq": 3}], 1),
    }


def test_partitioned_table_is_compared_through_its_parent(connect, databases):
    databases.on_both("""
        CREATE TABLE settlements (day date, batch int, total numeric, PRIMARY KEY (day, batch))
            PARTITION BY RANGE (day);
        CREATE TABLE settlements_2024 PARTITION OF settlements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE settlements_2025 PARTITION OF settlements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO settlements SELECT date '2024-12-01' + i, 1, i FROM generate_series(0, 59) AS i;
    """)
    databases.on_target("UPDATE settlements SET total = 0 WHERE day = '2025-01-05'")

    result = run(connect, databases)

    assert not any("settlements_" in name for name in result["tables"])
    assert differences(result["tables"]["public.settlements"]) == {
        **NO_DIFFERENCES, "mismatched": ([{"day": "2025-01-05", "batch": 1}], 1)}


def test_table_missing_in_target_fails(connect, databases):
    databases.on_target("DROP TABLE audit_log")

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    audit_log = result["tables"]["public.audit_log"]
    assert (audit_log["status"], audit_log["message"]) == ("FAILED", "table is missing in target")
    assert audit_log["schema_differences"] == ["table is missing in target"]
    assert audit_log["source_rows"] is None
    assert statuses(result)["public.payments"] == "PASSED"


def test_table_only_in_target_fails(connect, databases):
    databases.on_target("CREATE TABLE refunds (refund_id bigint PRIMARY KEY)")

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    assert result["tables"]["public.refunds"]["message"] == "table is missing in source (exists only in target)"


def test_table_without_primary_key_keeps_the_result_from_passing(connect, databases):
    databases.on_both("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('same'), ('rows')")

    result = run(connect, databases)

    assert result["status"] == "FAILED"
    notes = result["tables"]["public.notes"]
    assert notes["status"] == "UNVERIFIABLE"
    assert "no primary key" in notes["message"]
    assert "public.notes" in result["message"]
    assert all(status == "PASSED" for name, status in statuses(result).items() if name != "public.notes")


def test_column_type_difference_fails_and_other_columns_are_still_compared(connect, databases):
    databases.on_target("ALTER TABLE customers ALTER COLUMN display_name TYPE varchar(200)")
    databases.on_target("UPDATE customers SET email = 'changed@mail.test' WHERE external_ref = 'CUST-2'")

    result = run(connect, databases)

    customers = result["tables"]["public.customers"]
    assert customers["status"] == "FAILED"
    assert customers["schema_differences"] == [
        "column display_name is text in source but character varying(200) in target"
    ]
    assert differences(customers) == {**NO_DIFFERENCES, "mismatched": ([{"customer_id": customer_id(2)}], 1)}


def test_missing_column_and_primary_key_difference_are_schema_differences(connect, databases):
    databases.on_target("ALTER TABLE payments DROP COLUMN request_hash")
    databases.on_target("ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey")

    result = run(connect, databases)

    assert result["tables"]["public.payments"]["schema_differences"] == [
        "column request_hash (text) is missing in target"
    ]
    assert result["tables"]["public.payments"]["mismatched_total"] == 0  # the remaining columns match
    audit_log = result["tables"]["public.audit_log"]
    assert audit_log["schema_differences"] == ["primary key is (audit_id) in source but absent in target"]
    assert audit_log["message"] == "primary keys differ: content not compared"


def test_session_settings_of_the_connections_do_not_matter(connect, databases):
    odd_session = ("-c TimeZone=Asia/Kathmandu -c DateStyle=German,DMY -c IntervalStyle=sql_standard "
                   "-c extra_float_digits=-3 -c bytea_output=escape -c search_path=nowhere")
    databases.on_both("CREATE TABLE formats (id int PRIMARY KEY, at timestamptz, span interval, ratio float8, "
                      "raw bytea, doc jsonb, day date)")
    databases.on_source("INSERT INTO formats VALUES (1, '2024-03-01 12:00:00+02', '1 day 02:00', 0.1, '\\x00ff', "
                        "'{\"b\": 1, \"a\": [2]}', '2024-03-01')")
    # the same values, written differently
    databases.on_target("INSERT INTO formats VALUES (1, '2024-03-01T10:00:00Z', '1 day 2 hours', 1e-1, "
                        "decode('00ff', 'hex'), '{\"a\": [2], \"b\": 1}', 'March 1, 2024')")

    report = validate(connect(databases.source), connect(databases.target, options=odd_session),
                      ValidationOptions(tables=("formats",)))

    assert report.to_dict()["tables"]["public.formats"]["status"] == "PASSED", report.message


@pytest.mark.parametrize("row_hash", [RowHash.RECORD, RowHash.TEXT])
def test_values_that_compare_equal_but_print_differently_are_differences(connect, databases, monkeypatch, row_hash):
    """A column's hash function treats 1.0 and 1.00, '1 day' and '24:00:00', 0 and -0 as equal;
    the rows differ all the same."""
    monkeypatch.setattr(engine, "_row_hash_method", lambda source, target: row_hash)
    databases.on_both("""
        CREATE TYPE mood AS ENUM ('calm', 'tense');
        CREATE TABLE odd (id int PRIMARY KEY, n numeric, i interval, f float8, j jsonb, m mood, a int[],
                          t text, b bytea);
        INSERT INTO odd SELECT id, 1.0, '1 day', 0, '{"x": 1.0}', 'calm', '{1,2}', 'Ab', '\\x00'
        FROM generate_series(1, 8) AS id;
    """)
    databases.on_target("""
        UPDATE odd SET n = 1.00 WHERE id = 2;
        UPDATE odd SET i = '24 hours' WHERE id = 3;
        UPDATE odd SET f = '-0' WHERE id = 4;
        UPDATE odd SET j = '{"x": 1.00}' WHERE id = 5;
        UPDATE odd SET a = '[0:1]={1,2}' WHERE id = 6;
        UPDATE odd SET t = 'AB' WHERE id = 7;
        UPDATE odd SET b = '\\x0000' WHERE id = 8;
    """)

    result = run(connect, databases, tables=("odd",))

    assert result["tables"]["public.odd"]["mismatched"] == [{"id": i} for i in range(2, 9)]


@pytest.mark.parametrize("row_hash", [RowHash.RECORD, RowHash.TEXT])
def test_numeric_with_a_typmod_differs_by_value_alone(connect, databases, monkeypatch, row_hash):
    """numeric(12,2) stores every value at scale 2 (its scale is not hashed then): 1.5 written on
    one side and 1.50 on the other are the same row, 1.51 is a difference; beside it, a numeric
    without typmod still tells 1.0 from 1.00."""
    monkeypatch.setattr(engine, "_row_hash_method", lambda source, target: row_hash)
    databases.on_both("""
        CREATE TABLE amounts (id int PRIMARY KEY, fixed numeric(12,2), free numeric);
        INSERT INTO amounts SELECT id, 1.5, 1.0 FROM generate_series(1, 4) AS id;
    """)
    databases.on_target("""
        UPDATE amounts SET fixed = 1.50 WHERE id = 2;
        UPDATE amounts SET fixed = 1.51 WHERE id = 3;
        UPDATE amounts SET free = 1.00 WHERE id = 4;
    """)

    result = run(connect, databases, tables=("amounts",))

    assert result["tables"]["public.amounts"]["mismatched"] == [{"id": 3}, {"id": 4}]


def test_columns_hashed_alone_neither_cancel_out_nor_confuse_null(connect, databases):
    """Columns whose hash functions take the value itself are hashed one by one, with their own
    seeds: two columns swapping values, NULL against '', 0 or NaN, all differ."""
    databases.on_both("""
        CREATE TABLE alone (id int PRIMARY KEY, a text, b text, n numeric(12,2), u uuid, at timestamptz);
        INSERT INTO alone SELECT id, 'x', 'y', 0, md5(id::text)::uuid, '2024-01-01' FROM generate_series(1, 7) AS id;
    """)
    databases.on_target("""
        UPDATE alone SET a = 'y', b = 'x' WHERE id = 2;
        UPDATE alone SET n = NULL WHERE id = 3;
        UPDATE alone SET n = 'NaN' WHERE id = 4;
        UPDATE alone SET a = '' WHERE id = 5;
        UPDATE alone SET u = NULL WHERE id = 6;
    """)
    databases.on_source("UPDATE alone SET a = NULL WHERE id = 5")

    result = run(connect, databases, tables=("alone",))

    assert result["tables"]["public.alone"]["mismatched"] == [{"id": i} for i in range(2, 7)]


def test_bigint_values_postgresql_hashes_alike_still_differ(connect, databases):
    """PostgreSQL's bigint hash folds the high half into the low one: 0 and 4294967297 (2^32 + 1),
    -1 and 4294967296 hash alike there. The engine also hashes the high half."""
    with connect(databases.source).cursor() as cursor:  # what the test guards against, as PostgreSQL does it
        cursor.execute("SELECT hashint8extended(0, 1) = hashint8extended(4294967297, 1)")
        assert cursor.fetchone() == (True,)
    databases.on_both("""
        CREATE TABLE folded (id int PRIMARY KEY, n bigint);
        INSERT INTO folded VALUES (1, 0), (2, -1), (3, 5), (4, NULL);
    """)
    databases.on_target("""
        UPDATE folded SET n = 4294967297 WHERE id = 1;
        UPDATE folded SET n = 4294967296 WHERE id = 2;
    """)

    result = run(connect, databases, tables=("folded",))

    assert result["tables"]["public.folded"]["mismatched"] == [{"id": 1}, {"id": 2}]


def test_lists_are_capped_in_key_order_with_exact_totals(connect, databases):
    databases.on_target("DELETE FROM audit_log WHERE audit_id IN (14, 12, 10, 13, 11)")

    result = run(connect, databases, max_diffs_per_table=2)

    audit_log = result["tables"]["public.audit_log"]
    assert differences(audit_log)["missing_in_target"] == ([{"audit_id": 10}, {"audit_id": 11}], 5)


def test_empty_target_table_reports_every_row_missing(connect, databases):
    databases.on_target("DELETE FROM audit_log")

    result = run(connect, databases, tables=("audit_log",))

    audit_log = result["tables"]["public.audit_log"]
    assert differences(audit_log)["missing_in_target"] == ([{"audit_id": i} for i in range(1, 101)], 200)
    assert (audit_log["source_rows"], audit_log["target_rows"]) == (200, 0)


def test_tables_can_be_chosen_by_plain_or_qualified_name(connect, databases):
    result = run(connect, databases, tables=("payments", "public.customers", "payments"))

    assert list(result["tables"]) == ["public.payments", "public.customers"]


def test_unknown_table_is_an_error_naming_it(connect, databases):
    with pytest.raises(UnknownTableError, match="paymnts"):
        run(connect, databases, tables=("payments", "paymnts"))


def test_schemas_without_tables_are_an_error(connect, databases):
    with pytest.raises(NothingToValidateError, match="billing"):
        run(connect, databases, schemas=("billing",))


def test_other_schemas_are_compared_when_configured(connect, databases):
    databases.on_both("CREATE SCHEMA billing;"
                      "CREATE TABLE billing.invoices (invoice_no text PRIMARY KEY, total numeric)")
    databases.on_source("INSERT INTO billing.invoices VALUES ('INV-1', 10), ('INV-2', 20)")
    databases.on_target("INSERT INTO billing.invoices VALUES ('INV-1', 10)")

    result = run(connect, databases, schemas=("public", "billing"))

    assert differences(result["tables"]["billing.invoices"])["missing_in_target"] == ([{"invoice_no": "INV-2"}], 1)


def test_a_table_that_cannot_be_read_is_an_error_and_the_others_are_still_compared(connect, databases, postgres):
    blocker = postgres.app_connect(databases.target)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")  # held until rollback

            result = run(connect, databases, statement_timeout_seconds=1)
    finally:
        blocker.rollback()
        blocker.close()

    assert result["status"] == "ERROR"
    audit_log = result["tables"]["public.audit_log"]
    assert (audit_log["status"], audit_log["message"]) == (
        "ERROR", "target database: canceling statement due to statement timeout")
    assert all(status == "PASSED" for name, status in statuses(result).items() if name != "public.audit_log")


def test_sessions_are_read_only(connect, databases):
    source = connect(databases.source)

    validate(source, connect(databases.target), ValidationOptions(tables=("customers",)))

    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), source.cursor() as cur:
        cur.execute("DELETE FROM public.audit_log")


def test_incompatible_server_versions_are_refused():
    old = engine._Server(version=100023, encoding="UTF8")
    with pytest.raises(engine.IncompatibleServersError, match="PostgreSQL 10 is too old"):
        engine._row_hash_method(old, engine._Server(version=150000, encoding="UTF8"))
    with pytest.raises(engine.IncompatibleServersError, match="encodings differ"):
        engine._row_hash_method(engine._Server(150000, "LATIN1"), engine._Server(150000, "UTF8"))
    assert engine._row_hash_method(engine._Server(130000, "UTF8"), engine._Server(160000, "UTF8")) is RowHash.TEXT


def test_dms_control_tables_are_never_compared(connect, databases):
    """Wherever DMS puts them: in its own schema (ControlSchema) or, by default, in public."""
    databases.on_source("CREATE TABLE awsdms_heartbeat (hb_key int PRIMARY KEY, hb_timestamp timestamp)")
    databases.on_target("""
        CREATE TABLE awsdms_apply_exceptions (task_name varchar(128), error text);
        CREATE TABLE awsdms_validation_failures_v1 (task_name varchar(128), key text);
        CREATE SCHEMA awsdms;
        CREATE TABLE awsdms.awsdms_status (server_name text PRIMARY KEY, task_status text);
        CREATE TABLE awsdms.history (id int PRIMARY KEY);
    """)

    result = run(connect, databases, schemas=("public", "awsdms"))

    assert result["status"] == "PASSED", result["message"]
    assert sorted(result["tables"]) == sorted(TABLES)


@pytest.mark.parametrize("name", ["awsdms_apply_exceptions", "public.awsdms_heartbeat", "awsdms.history"])
def test_a_dms_control_table_asked_for_by_name_is_an_error_saying_so(connect, databases, name):
    databases.on_target("CREATE TABLE awsdms_apply_exceptions (error text);"
                        "CREATE SCHEMA awsdms; CREATE TABLE awsdms.history (id int PRIMARY KEY)")
    databases.on_source("CREATE TABLE awsdms_heartbeat (hb_key int PRIMARY KEY)")

    with pytest.raises(UnknownTableError, match=f"{name}: AWS DMS control tables .* are never compared"):
        run(connect, databases, tables=("payments", name))
