"""The checkpoint before the live validation and the fenced comparison of what changed since, on two
real servers joined by logical replication: the slot is read exactly, the comparison finds what
differs on a changed key, falls back to every row when it must, and no path leaves the slot behind."""

from __future__ import annotations

import uuid

from payment_common.sides import AWS, ONPREM
from lib.local.postgres.replication import add_customer
from payment_cutover import steps
from payment_validation import ValidationOptions, validate
from payment_validation.changes import read_changes

INSERT_PAYMENT = """INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, request_hash)
                    VALUES (%s, %s, %s, 'EUR', %s, 'h')"""


def add_payments(pair, customer: str, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    conn = pair.admin_connection(ONPREM)
    conn.autocommit = True
    with conn.cursor() as cur:
        for payment in ids:
            cur.execute(INSERT_PAYMENT, (payment, customer, 10, f"idem-{payment}"))
    return ids


def replicated(pair, payment: str) -> None:
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM payments WHERE payment_id = %s", (payment,)),
                    "a payment to reach aws")


def checkpoint_slots(pair, side: str) -> list[str]:
    return [name for (name,) in pair.sides[side].query(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '%checkpoint'")]


def live_validation(pair) -> str:
    source, target = pair.admin_connection(ONPREM), pair.admin_connection(AWS)
    return validate(source, target, ValidationOptions(recheck_rounds=3, recheck_seconds=0.2)).status.value


def prepare(pair, controller, *, before: int = 3, after: int = 2) -> tuple[str, list[str], list[str]]:
    """Payments before the checkpoint, the checkpoint, payments after it (and an update and a delete),
    the live validation PASSED, then the fence and the marker."""
    customer = add_customer(pair.onprem)
    earlier = add_payments(pair, customer, before)
    checkpoint = steps.checkpoint(controller, ONPREM, AWS)
    later = add_payments(pair, customer, after)
    pair.onprem.query("UPDATE payments SET status = 'captured' WHERE payment_id = %s RETURNING 1", (earlier[0],))
    replicated(pair, later[-1])
    assert live_validation(pair) == "PASSED"
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    return checkpoint["slot"], earlier, later


def test_the_slot_names_exactly_the_rows_written_since_the_checkpoint(pair, controller):
    slot, earlier, later = prepare(pair, controller)

    changes = read_changes(controller.databases[ONPREM], slot, max_rows=100)
    applied = read_changes(controller.databases[AWS], slot, max_rows=100)

    payments = changes.tables["public.payments"]
    assert sorted(row["payment_id"] for row in payments.rows) == sorted([*later, earlier[0]])
    assert "public.customers" not in changes.tables, "the customer was written before the checkpoint"
    assert not payments.truncated and not changes.overflow
    assert sorted(row["payment_id"] for row in applied.tables["public.payments"].rows) == sorted(
        [*later, earlier[0]]), "the target's slot sees what replication applied since the checkpoint"


def test_inside_the_fence_a_difference_on_a_changed_key_fails_and_the_rest_is_not_read(pair, controller):
    slot, earlier, later = prepare(pair, controller)
    pair.aws.query("UPDATE payments SET amount = 99 WHERE payment_id = %s RETURNING 1", (later[0],))

    report = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert report["status"] == "FAILED"
    assert report["scope"]["mode"] == "changes" and report["scope"]["keys_compared"] == 3, report["scope"]
    assert report["tables"]["public.payments"]["mismatched"] == [{"payment_id": later[0]}]
    assert report["checkpoint_slot"] == slot
    # the controller's connections came back as they were lent: the proof still reads its witness
    assert steps.prove_fence(controller, ONPREM, AWS)["other_changes"] == 0


def test_the_fenced_comparison_passes_on_replicated_data_and_counts_rows_on_request(pair, controller):
    prepare(pair, controller)

    report = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")
    controller.count_rows = True
    counted = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert report["status"] == "PASSED", report["message"]
    assert report["scope"]["row_counts"] is False
    assert counted["status"] == "PASSED", counted["message"]
    payments = counted["tables"]["public.payments"]
    assert (payments["source_rows"], payments["target_rows"]) == (5, 5), "exact row counts on both sides"


def test_a_write_on_the_target_outside_replication_since_the_checkpoint_is_found(pair, controller):
    """A key the source left alone since the checkpoint, changed on the target by someone else: the
    target's checkpoint slot names it."""
    slot, earlier, later = prepare(pair, controller)
    pair.aws.query("UPDATE payments SET amount = 77 WHERE payment_id = %s RETURNING 1", (earlier[1],))

    report = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert report["status"] == "FAILED"
    assert report["tables"]["public.payments"]["mismatched"] == [{"payment_id": earlier[1]}]


def test_catching_up_before_the_fence_leaves_only_the_last_writes_to_the_fenced_comparison(pair, controller):
    controller.recheck_rounds, controller.recheck_seconds = 3, 0.2
    customer = add_customer(pair.onprem)
    # on aws before its checkpoint slot is made, or that slot names the customer too
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM customers WHERE customer_id = %s", (customer,)),
                    "the customer to reach aws")
    steps.checkpoint(controller, ONPREM, AWS)
    during_live_validation = add_payments(pair, customer, 4)
    replicated(pair, during_live_validation[-1])

    caught_up = steps.catch_up(controller, ONPREM, AWS)
    after = add_payments(pair, customer, 1)
    replicated(pair, after[-1])
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    fenced = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert caught_up["advanced"] is True and caught_up["keys_compared"] == 4, caught_up
    assert fenced["status"] == "PASSED", fenced["message"]
    assert fenced["scope"]["keys_compared"] == 1, "only what was written after the catch-up"


def test_a_catch_up_that_finds_a_difference_keeps_the_checkpoint(pair, controller):
    controller.recheck_rounds, controller.recheck_seconds = 1, 0.1
    customer = add_customer(pair.onprem)
    steps.checkpoint(controller, ONPREM, AWS)
    written = add_payments(pair, customer, 2)
    replicated(pair, written[-1])
    pair.aws.query("UPDATE payments SET amount = 66 WHERE payment_id = %s RETURNING 1", (written[0],))

    caught_up = steps.catch_up(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    fenced = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert caught_up["advanced"] is False and "did not settle" in caught_up["reason"]
    assert fenced["status"] == "FAILED", "the fenced comparison still reads every change since the checkpoint"
    assert fenced["tables"]["public.payments"]["mismatched"] == [{"payment_id": written[0]}]


def test_too_many_changes_or_no_passed_live_validation_compare_every_row(pair, controller):
    prepare(pair, controller)
    controller.max_changed_rows = 1

    too_many = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")
    not_passed = steps.validate_changes(controller, ONPREM, AWS, live_validation="FAILED")

    assert too_many["status"] == "PASSED"
    assert too_many["scope"]["mode"] == "full" and "more than 1 rows changed" in too_many["scope"]["fallback"]
    assert not_passed["scope"]["mode"] == "full" and "FAILED" in not_passed["scope"]["fallback"]


def test_a_missing_checkpoint_compares_every_row(pair, controller):
    prepare(pair, controller)
    pair.onprem.postgres.admin_execute("SELECT pg_drop_replication_slot(%s)", (controller.checkpoint_slot(ONPREM),))

    report = steps.validate_changes(controller, ONPREM, AWS, live_validation="PASSED")

    assert report["scope"]["mode"] == "full" and "does not exist" in report["scope"]["fallback"]


def test_abort_drops_the_checkpoint_and_status_shows_one_left_behind(pair, controller):
    steps.checkpoint(controller, ONPREM, AWS)
    again = steps.checkpoint(controller, ONPREM, AWS)

    assert again["replaced"] is True, "a later run replaces the checkpoint an earlier one left"
    assert set(again["lsn"]) == {ONPREM, AWS}, "a checkpoint on each side"
    shown = steps.status(controller)["checkpoint_slots"]
    assert [info["slot_name"] for info in shown[ONPREM]] == [controller.checkpoint_slot(ONPREM)]
    assert [info["slot_name"] for info in shown[AWS]] == [controller.checkpoint_slot(ONPREM)]
    steps.abort(controller, ONPREM, AWS)
    assert checkpoint_slots(pair, ONPREM) == [] and checkpoint_slots(pair, AWS) == []
    assert steps.status(controller)["checkpoint_slots"] == {ONPREM: [], AWS: []}


# -- the scheduled validation ----------------------------------------------------------------------

DAY = 86_400


def scheduled_slots(pair, side: str) -> list[str]:
    return [name for (name,) in pair.sides[side].query(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '%\\_validat%' ORDER BY 1")]


def settle(pair, payment: str) -> None:
    pair.wait_until(lambda: pair.aws.scalar("SELECT status FROM payments WHERE payment_id = %s", (payment,))
                    == pair.onprem.scalar("SELECT status FROM payments WHERE payment_id = %s", (payment,)),
                    "an update to reach aws")


def test_the_scheduled_validation_compares_every_row_then_only_what_changed(pair, controller):
    controller.recheck_rounds, controller.recheck_seconds = 3, 0.2
    customer = add_customer(pair.onprem)
    first = add_payments(pair, customer, 3)
    replicated(pair, first[-1])

    full = steps.scheduled_validation(controller, now=1_000_000)

    assert full["status"] == "PASSED", full["message"]
    assert full["scope"]["mode"] == "full" and full["scope"]["reason"] == "no PASSED checkpoint"
    assert scheduled_slots(pair, ONPREM) == [full["scope"]["checkpoint"]]
    assert full["scope"]["checkpoint"].endswith("_validated_1000000")

    later = add_payments(pair, customer, 2)
    pair.onprem.query("UPDATE payments SET status = 'failed' WHERE payment_id = %s RETURNING 1", (first[0],))
    replicated(pair, later[-1])
    settle(pair, first[0])
    incremental = steps.scheduled_validation(controller, now=1_000_000 + 3600)

    assert incremental["status"] == "PASSED", incremental["message"]
    assert incremental["scope"]["mode"] == "changes" and incremental["scope"]["keys_compared"] == 3
    assert incremental["scope"]["checkpoint"]["advanced_to"], "a PASSED run moves the checkpoint on"

    quiet = steps.scheduled_validation(controller, now=1_000_000 + 7200)
    assert quiet["scope"]["mode"] == "changes" and quiet["scope"]["keys_compared"] == 0, "nothing changed since"

    due = steps.scheduled_validation(controller, now=1_000_000 + DAY)
    assert due["scope"]["mode"] == "full" and "old" in due["scope"]["reason"]
    assert scheduled_slots(pair, ONPREM) == [due["scope"]["checkpoint"]], "one checkpoint: the newest full pass"


def test_a_scheduled_run_that_fails_keeps_the_last_passed_checkpoint(pair, controller):
    controller.recheck_rounds, controller.recheck_seconds = 1, 0.1
    customer = add_customer(pair.onprem)
    payments = add_payments(pair, customer, 2)
    replicated(pair, payments[-1])
    passed = steps.scheduled_validation(controller, now=2_000_000)["scope"]["checkpoint"]
    pair.onprem.query("UPDATE payments SET status = 'failed' WHERE payment_id = %s RETURNING 1", (payments[0],))
    settle(pair, payments[0])
    pair.aws.query("UPDATE payments SET amount = 55 WHERE payment_id = %s RETURNING 1", (payments[0],))

    failed = steps.scheduled_validation(controller, now=2_000_000 + 60)
    again = steps.scheduled_validation(controller, now=2_000_000 + 120)

    assert failed["status"] == "FAILED" and failed["scope"]["checkpoint"]["advanced_to"] is None
    assert again["status"] == "FAILED", "the key is compared again from the same checkpoint"
    assert failed["tables"]["public.payments"]["mismatched"] == [{"payment_id": payments[0]}]
    assert scheduled_slots(pair, ONPREM) == [passed]
