"""The legacy gate before a data cutover: all traffic on AWS, read from the routing the execution
passes in, and the on-prem application's role quiet on on-prem for the window, read from the
database itself (pg_stat_activity, as the controller role)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from payment_cutover import steps
from payment_cutover.errors import RoutingNotSettled
from payment_common.sides import AWS, ONPREM

ALL_AWS = {"onprem": 0, "aws": 100}
AN_HOUR_AGO = "2000-01-01T00:00:00+00:00"  # long before anything here ran


def legacy(controller, *, role: str | None, window: float):
    return replace(controller, onprem_application=steps.LEGACY, onprem_application_role=role,
                   legacy_window_seconds=window)


def test_an_application_that_follows_the_writer_passes_at_once(controller):
    result = steps.legacy_gate(controller, ONPREM, AWS, weights={"onprem": 50, "aws": 50}, since=None)

    assert result["settled"] is True and result["onprem_application"] == "follows-writer", result


@pytest.mark.parametrize("weights", [{"onprem": 50, "aws": 50}, {"onprem": 1, "aws": 99}, {}])
def test_a_legacy_gate_refuses_routing_that_still_sends_clients_to_onprem(controller, weights):
    gate = legacy(controller, role="payment_app", window=0)

    with pytest.raises(RoutingNotSettled, match="advance to aws-primary first"):
        steps.legacy_gate(gate, ONPREM, AWS, weights=weights, since=None)


def test_the_first_check_starts_the_window_and_says_when_to_look_again(controller):
    gate = legacy(controller, role="payment_onprem_app", window=3600)

    result = steps.legacy_gate(gate, ONPREM, AWS, weights=ALL_AWS, since=None)

    assert result["settled"] is False and result["database_checked"] is True, result
    assert 1 <= result["wait_seconds"] <= steps.LEGACY_CHECK_SECONDS, result
    assert result["role_sessions"] == 0 and result["role_last_active"] is None, result


def test_a_role_with_no_session_since_the_window_began_settles(controller):
    gate = legacy(controller, role="payment_onprem_app", window=60)

    result = steps.legacy_gate(gate, ONPREM, AWS, weights=ALL_AWS, since=AN_HOUR_AGO)

    assert result["settled"] is True and result["wait_seconds"] == 0, result


def test_the_application_roles_activity_moves_the_window_past_it(pair, controller):
    gate = legacy(controller, role="payment_app", window=600)
    app = pair.connection(ONPREM, "payment_app")
    try:
        with app.cursor() as cur:
            cur.execute("SELECT count(*) FROM payments")

        result = steps.legacy_gate(gate, ONPREM, AWS, weights=ALL_AWS, since=AN_HOUR_AGO)

        assert result["settled"] is False, f"a session of the role just ran a statement: {result}"
        assert result["role_sessions"] >= 1 and result["role_last_active"] is not None, result
        assert result["since"] == result["role_last_active"], "the window must restart at the role's activity"
    finally:
        app.close()


def test_a_transaction_left_open_by_the_application_keeps_the_gate_closed(pair, controller):
    gate = legacy(controller, role="payment_app", window=1)
    app = pair.connection(ONPREM, "payment_app", autocommit=False)
    try:
        with app.cursor() as cur:
            cur.execute("SELECT 1")  # idle in transaction from here on

        result = steps.legacy_gate(gate, ONPREM, AWS, weights=ALL_AWS, since=AN_HOUR_AGO)

        assert result["settled"] is False and result["quiet_seconds"] == 0, result
    finally:
        app.rollback()
        app.close()


def test_without_a_role_of_its_own_only_the_routing_decides(controller):
    gate = legacy(controller, role=None, window=60)

    result = steps.legacy_gate(gate, ONPREM, AWS, weights=ALL_AWS, since=AN_HOUR_AGO)

    assert result["settled"] is True and result["database_checked"] is False, result
