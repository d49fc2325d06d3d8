"""What preflight can prove before a fence, on the real servers: a side can be a replication source
and target (payment_cutover.capabilities), and the PostgreSQL logical stand-in can start a direction."""

from __future__ import annotations

import pytest

from payment_common.sides import FALLBACK, FORWARD
from payment_cutover.capabilities import check_side
from payment_cutover.postgres_logical import PostgresLogicalReplication


@pytest.fixture
def controller_conn(pair):
    return pair.connection("onprem", "payment_controller")


def test_a_side_the_harness_built_passes_for_both_drivers(pair):
    for side in ("onprem", "aws"):
        conn = pair.connection(side, "payment_controller")
        assert check_side(conn, "test_decoding", apply_role="dms_target") == [], side
        assert check_side(conn, "pgoutput") == [], side
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'payment_check_%'")
            assert cur.fetchone()[0] == 0, "the trial slot outlived the check"


def test_an_apply_role_that_may_not_set_session_replication_role_is_named(controller_conn):
    (problem,) = check_side(controller_conn, "test_decoding", apply_role="payment_app")
    assert "payment_app may not SET session_replication_role" in problem and "GRANT SET ON PARAMETER" in problem
    (problem,) = check_side(controller_conn, "test_decoding", apply_role="no_such_apply_role")
    assert "no_such_apply_role" in problem and "does not exist" in problem


def test_a_role_without_replication_is_named_and_no_slot_is_tried(pair):
    conn = pair.connection("onprem", "payment_app")
    (problem,) = check_side(conn, "test_decoding")
    assert "role payment_app may not create replication slots" in problem


def test_a_plugin_the_server_lacks_is_named(controller_conn):
    (problem,) = check_side(controller_conn, "no_such_plugin")
    assert "plugin no_such_plugin could not be made" in problem


def test_no_free_slot_is_named(pair, controller_conn):
    admin = pair.admin_connection("onprem")
    with admin.cursor() as cur:
        cur.execute("SELECT current_setting('max_replication_slots')::int - count(*) FROM pg_replication_slots")
        (free,) = cur.fetchone()
        names = [f"payment_test_filler_{index}" for index in range(free)]
        try:
            for name in names:
                cur.execute("SELECT pg_create_physical_replication_slot(%s)", (name,))
            problems = check_side(controller_conn, "test_decoding")
        finally:
            for name in names:
                cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = %s", (name,))
    assert len(problems) == 1 and "replication slots are taken" in problems[0], problems


def test_a_transaction_in_progress_holding_up_a_new_slot_is_named(pair, controller_conn):
    writer = pair.connection("onprem", "payment_app", autocommit=False)
    with writer.cursor() as cur:
        cur.execute("SELECT txid_current()")  # holds a transaction id until it ends
    try:
        (problem,) = check_side(controller_conn, "test_decoding", trial_slot_seconds=0.5)
    finally:
        writer.rollback()
    assert "no slot within 0.5 s" in problem and "pg_prepared_xacts" in problem
    with controller_conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] != "500ms", "the check left its statement timeout on the connection"


def test_the_logical_stand_in_can_start_either_direction_and_names_what_stops_it(pair):
    driver = pair.driver()
    assert driver.check_can_start(FALLBACK) == []
    assert driver.check_can_start(FORWARD) == []

    broken = PostgresLogicalReplication(
        controller=driver.controller, admin=driver.admin, slot_names=driver.slot_names, publication="no_such_publication",
        publisher_conninfo={**driver.publisher_conninfo, "aws": pair.sides["aws"].conninfo("payment_app")})
    problems = broken.check_can_start(FALLBACK)
    assert any("no publication no_such_publication on aws" in problem for problem in problems), problems
    refused = [problem for problem in problems if "refuses the subscription's replication connection" in problem]
    assert len(refused) == 1 and "replication" in refused[0].split("connection:", 1)[1], problems


def test_a_non_superuser_may_not_subscribe_on_postgres_15(pair):
    driver = pair.driver()
    conn = pair.connection("onprem", "payment_controller")
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int")
        if cur.fetchone()[0] >= 160000:
            pytest.skip("from PostgreSQL 16, pg_create_subscription lets the controller subscribe")
    limited = PostgresLogicalReplication(controller=driver.controller, admin={**driver.admin, "onprem": conn},
                                         publisher_conninfo=driver.publisher_conninfo, slot_names=driver.slot_names,
                                         publication=driver.publication)
    (problem,) = limited.check_can_start(FALLBACK)
    assert "role payment_controller on onprem may not create a subscription" in problem
