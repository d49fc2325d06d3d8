"""The controller's state machines — cutover, rollback, advance, as lib/workflows/cutover.py defines
them — executed by moto's Step Functions interpreter, every Task state reaching the real handler
in this process (tests/workflows/conftest.py): the cutover steps on two real PostgreSQL servers
joined by logical replication, validation on the same two, the traffic and rollback functions on
Route 53, CloudWatch alarms, the writer parameter and SNS in the emulator.

Each test asserts what the execution left behind — the writer parameter, the weights, who may write
where, which replication direction runs, the alarms' actions — and the path it took (its history).
"""

from __future__ import annotations

import uuid

import pytest

from tests.rollback.world import FALLBACK_ALARM_NAMES, FORWARD_ALARM_NAMES, ROLLBACK_ALARM_NAMES
from tests.workflows.conftest import Controller, state_names, task_outcomes

# The state machines run end to end on the emulator, against the replicated pair.
pytestmark = pytest.mark.slow

READ_ONLY_SQL_TRANSACTION = "25006"  # what a fenced side answers a well-behaved session
SHORT_BAKE = {"bake_checks": 2, "bake_interval_seconds": 1}
# The step function here follows-writer (no ONPREM_APPLICATION): its legacy gate passes at the first check.
LEGACY_GATE_PASSED = ["OnpremApplication", "RoutingStatus", "LegacyGate", "LegacySettled?"]


def seed(controller: Controller, payments: int = 5) -> str:
    """A customer, payments and audit entries written on on-prem (the writer), replicated to aws.
    Returns the customer's id."""
    pair = controller.pair
    customer = str(uuid.uuid4())
    conn = pair.admin_connection("onprem")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, %s, 'Ada')",
                    (customer, f"ref-{customer}"))
        for number in range(payments):
            payment = str(uuid.uuid4())
            cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                        "request_hash) VALUES (%s, %s, %s, 'EUR', %s, 'hash')",
                        (payment, customer, 10 + number, f"key-{payment}"))
            cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'created')",
                        (payment,))
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM audit_log") == payments, "the seed to reach aws")
    return customer


def corrupt_on_aws(controller: Controller, customer: str) -> None:
    """A row that differs on aws: what validation exists to find."""
    conn = controller.pair.admin_connection("aws")
    with conn.cursor() as cur:
        cur.execute("UPDATE customers SET display_name = 'Corrupted' WHERE customer_id = %s", (customer,))


def assert_onprem_writer(controller: Controller, epoch: int) -> None:
    """On-prem writes and is the writer, aws is fenced and follows on-prem."""
    assert (controller.writer()["writer"], controller.writer()["epoch"]) == ("onprem", epoch)
    assert controller.fence() == {"onprem": "open", "aws": "fenced"}
    probe = f"probe-{uuid.uuid4()}"
    assert isinstance(controller.app_write("onprem", probe), int)
    assert controller.app_write("aws", probe) == READ_ONLY_SQL_TRANSACTION
    controller.pair.wait_until(lambda: controller.has_audit("aws", probe), "an on-prem write to reach aws")


# -- cutover -------------------------------------------------------------------------------------------


def test_the_cutover_moves_the_writer_to_aws_and_the_rollback_brings_it_back(controller):
    seed(controller)
    onprem_max_audit_id = controller.pair.onprem.scalar("SELECT max(audit_id) FROM audit_log")

    cutover = controller.run("cutover")

    assert cutover.status == "SUCCEEDED", (cutover.error, cutover.cause, cutover.states_entered())
    assert cutover.states_entered() == [
        *LEGACY_GATE_PASSED, "Preflight", "AlreadySwitched?", "Checkpoint", "ValidateLive", "ValidateLivePassed?", "CatchUp", "Fence",
        "WaitReplication", "Validate", "ValidatePassed?", "AdvanceSequences", "ValidateSequences",
        "ValidateSequencesPassed?", "SwitchReplication", "ProveFence", "Open", "SetWriter", "ReplicationAlarms",
        "MoveTraffic", "Done"]
    # inside the fence only what changed since the checkpoint was compared; the sequences alone after
    fenced = cutover.result("Validate")
    assert fenced["scope"]["mode"] == "changes", fenced.get("scope")
    assert fenced["tables"]["public.payments"]["source_rows"] == fenced["tables"]["public.payments"]["target_rows"]
    assert cutover.result("ValidateSequences")["scope"] == {"mode": "sequences"}
    assert cutover.result("SetWriter")["checkpoint_dropped"] is True
    assert controller.pair.onprem.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE "
                                         "'%%checkpoint'") == 0, "the checkpoint slot must not outlive the switch"
    writer = controller.writer()
    assert (writer["writer"], writer["epoch"]) == ("aws", 1)
    assert controller.fence() == {"onprem": "fenced", "aws": "open"}
    assert controller.subscriptions() == {"onprem": [controller.pair.slot_names["fallback"]], "aws": []}
    assert controller.weights() == {"onprem": 0, "aws": 100}
    assert controller.actions_enabled() == {**{name: False for name in FORWARD_ALARM_NAMES},
                                            **{name: True for name in FALLBACK_ALARM_NAMES}}
    assert cutover.result("MoveTraffic")["reason"] == "payment-migration-cutover-test to aws"
    # The application: refused on on-prem, served by aws with identities past on-prem's, and what it
    # writes there flows back to on-prem.
    written_on_aws = f"after-cutover-{uuid.uuid4()}"
    assert controller.app_write("onprem", written_on_aws) == READ_ONLY_SQL_TRANSACTION
    audit_id = controller.app_write("aws", written_on_aws)
    assert isinstance(audit_id, int) and audit_id > onprem_max_audit_id
    controller.pair.wait_until(lambda: controller.has_audit("onprem", written_on_aws), "the aws write on on-prem")

    rollback = controller.run("rollback", {"reason": "test: back to on-prem"})

    assert rollback.status == "SUCCEEDED", (rollback.error, rollback.cause, rollback.states_entered())
    assert rollback.states_entered()[:3] == ["TrafficToOnprem", "Preflight", "AlreadySwitched?"]
    assert "Fence" in rollback.states_entered() and rollback.states_entered()[-1] == "Done"
    assert rollback.result("TrafficToOnprem")["weights_after"] == {"onprem": 100, "aws": 0}
    assert controller.weights() == {"onprem": 100, "aws": 0}
    assert controller.subscriptions() == {"onprem": [], "aws": [controller.pair.slot_names["forward"]]}
    assert controller.actions_enabled() == {**{name: True for name in FORWARD_ALARM_NAMES},
                                            **{name: False for name in FALLBACK_ALARM_NAMES}}
    assert_onprem_writer(controller, epoch=2)
    assert controller.has_audit("onprem", written_on_aws)


def test_a_cutover_run_again_after_it_completed_changes_nothing(controller):
    seed(controller, payments=1)
    assert controller.run("cutover").status == "SUCCEEDED"
    # a marker is written on the old writer behind its fence, by wait_replication and the switch
    markers = controller.pair.onprem.scalar("SELECT count(*) FROM payment_control.cutover_marker")

    again = controller.run("cutover")

    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert again.states_entered() == [*LEGACY_GATE_PASSED, "Preflight", "AlreadySwitched?", "ReplicationAlarms",
                                      "MoveTraffic", "Done"]
    preflight = again.result("Preflight")
    assert preflight["already_done"] is True and preflight["fenced_non_writer"] is False
    assert again.result("MoveTraffic")["changed"] is False
    writer = controller.writer()
    assert (writer["writer"], writer["epoch"]) == ("aws", 1)
    assert controller.fence() == {"onprem": "fenced", "aws": "open"}
    assert controller.pair.onprem.scalar("SELECT count(*) FROM payment_control.cutover_marker") == markers
    assert controller.weights() == {"onprem": 0, "aws": 100}


def test_a_validation_that_fails_aborts_the_cutover_and_reopens_onprem(controller):
    customer = seed(controller)
    corrupt_on_aws(controller, customer)

    cutover = controller.run("cutover")

    assert (cutover.status, cutover.error) == ("FAILED", "CutoverFailed")
    assert cutover.states_entered() == [*LEGACY_GATE_PASSED, "Preflight", "AlreadySwitched?", "Checkpoint",
                                        "ValidateLive",
                                        "ValidateLivePassed?", "ValidateLiveRefused", "Abort", "Failed"]
    report = cutover.result("ValidateLive")
    assert report["status"] == "FAILED" and report["tables"]["public.customers"]["mismatched_total"] == 1
    abort = cutover.result("Abort")
    assert abort["reopened"] == "onprem"
    assert controller.pair.onprem.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE "
                                         "'%%checkpoint'") == 0, "the abort must drop the checkpoint slot"
    assert_onprem_writer(controller, epoch=0)
    assert controller.subscriptions() == {"onprem": [], "aws": [controller.pair.slot_names["forward"]]}
    assert controller.weights() == {"onprem": 50, "aws": 50}


def test_a_step_that_fails_is_retried_until_it_succeeds(controller):
    """Replication held back (the apply of the marker table blocked on aws): wait_replication gives
    up after WAIT_SECONDS with ReplicationBehind; once the history shows that, replication resumes
    and the retry finds the marker."""
    seed(controller, payments=1)
    controller.register_step_function(WAIT_SECONDS="2")
    blocker = controller.pair.admin_connection("aws")
    blocker.autocommit = False
    with blocker.cursor() as cur:  # inserts wait for it; reads do not
        cur.execute("LOCK TABLE payment_control.cutover_marker IN SHARE MODE")

    arn = controller.start("cutover")
    watcher = controller.when(
        arn, lambda events: ("TaskFailed", "ReplicationBehind") in task_outcomes(events, "WaitReplication"),
        blocker.rollback, "wait_replication failing with ReplicationBehind")
    cutover = controller.wait(arn)
    watcher.join(timeout=5)

    assert cutover.status == "SUCCEEDED", (cutover.error, cutover.cause, cutover.states_entered())
    outcomes = cutover.task_outcomes("WaitReplication")
    assert [kind for kind, _ in outcomes][-1] == "TaskSucceeded"
    assert ("TaskFailed", "ReplicationBehind") in outcomes[:-1]
    assert all(outcome == ("TaskFailed", "ReplicationBehind") for outcome in outcomes[:-1])
    assert state_names(cutover.events).count("WaitReplication") == 1  # retried within the state
    assert controller.writer()["writer"] == "aws"


# -- advance -------------------------------------------------------------------------------------------


def test_advance_moves_the_weights_and_bakes(controller):
    controller.world.set_weights(onprem=100, aws=0)
    seed(controller, payments=2)

    advance = controller.run("advance", {"phase": "canary", **SHORT_BAKE})

    assert advance.status == "SUCCEEDED", (advance.error, advance.cause, advance.states_entered())
    assert controller.weights() == {"onprem": 90, "aws": 10}
    entered = advance.states_entered()
    assert entered.count("BakeWait") == 2 and entered.count("CheckAlarms") == 2 and entered[-1] == "Done"
    assert advance.result("Validate")["status"] == "PASSED"
    assert advance.result("ShiftWeights")["reason"] == "advance to canary"
    assert controller.writer()["writer"] == "onprem"


def test_an_alarm_while_baking_rolls_back(controller):
    controller.world.set_weights(onprem=100, aws=0)
    alarm = ROLLBACK_ALARM_NAMES[1]

    arn = controller.start("advance", {"phase": "split", "bake_checks": 60, "bake_interval_seconds": 1})
    controller.when(arn, lambda events: ("TaskSucceeded" in dict(task_outcomes(events, "CheckAlarms"))),
                    lambda: controller.world.set_alarm_state(alarm, "ALARM"), "the first check of the bake")
    advance = controller.wait(arn)

    assert (advance.status, advance.error) == ("FAILED", "RolledBack"), advance.task_outcomes("RollBack")
    assert "ShiftWeights" in advance.states_entered() and advance.states_entered()[-2:] == ["RolledBack?", "RolledBack"]
    rollback = advance.result("RollBack")
    assert rollback["status"] == "ROLLED_BACK" and rollback["weights_before"] == {"onprem": 50, "aws": 50}
    assert rollback["reason"] == f'alarm while baking split: ["{alarm}"]'
    # the rollback found its caller among the advance executions in flight and left it running
    assert rollback["controller"]["advance_left_running"] == [arn] and not rollback["controller"]["advance_stopped"]
    assert controller.weights() == {"onprem": 100, "aws": 0}
    (notification,) = controller.world.notifications()
    assert notification["Subject"].startswith("Payment rollback ROLLED_BACK")
    assert controller.writer()["writer"] == "onprem"


def test_an_alarm_while_baking_after_the_cutover_rolls_the_writer_back(controller):
    """The emergency path: the rollback function moves traffic and starts the rollback state
    machine, whose fenced writer rollback it waits for."""
    seed(controller, payments=1)
    assert controller.run("cutover").status == "SUCCEEDED"
    alarm = ROLLBACK_ALARM_NAMES[0]

    arn = controller.start("advance", {"phase": "aws-primary", "bake_checks": 60, "bake_interval_seconds": 1})
    controller.when(arn, lambda events: ("TaskSucceeded" in dict(task_outcomes(events, "CheckAlarms"))),
                    lambda: controller.world.set_alarm_state(alarm, "ALARM"), "the first check of the bake")
    advance = controller.wait(arn)

    assert (advance.status, advance.error) == ("FAILED", "RolledBack"), (advance.cause, advance.states_entered())
    rollback = advance.result("RollBack")
    assert rollback["status"] == "ROLLED_BACK", rollback
    assert rollback["writer_rollback"]["status"] == "SUCCEEDED"
    assert rollback["controller"]["advance_left_running"] == [arn] and rollback["controller"]["cutover"] is None
    (writer_rollback,) = controller.world.executions()
    assert writer_rollback["name"] == "rollback-epoch-1" and writer_rollback["status"] == "SUCCEEDED"
    assert controller.weights() == {"onprem": 100, "aws": 0}
    assert_onprem_writer(controller, epoch=2)


def test_advance_to_aws_primary_needs_the_cutover_first(controller):
    advance = controller.run("advance", {"phase": "aws-primary", **SHORT_BAKE})

    assert (advance.status, advance.error) == ("FAILED", "CutoverFirst")
    assert advance.states_entered()[-2:] == ["PhaseFitsWriter?", "CutoverFirst"]
    assert controller.weights() == {"onprem": 50, "aws": 50}


def test_advance_with_a_failed_validation_leaves_the_weights(controller):
    customer = seed(controller, payments=1)
    corrupt_on_aws(controller, customer)

    advance = controller.run("advance", {"phase": "split", **SHORT_BAKE})

    assert (advance.status, advance.error) == ("FAILED", "ValidationFailed")
    assert advance.result("Validate")["status"] == "FAILED"
    assert "ShiftWeights" not in advance.states_entered()
    assert controller.weights() == {"onprem": 50, "aws": 50}


def test_advance_refuses_while_an_alarm_is_active(controller):
    controller.world.set_alarm_state(ROLLBACK_ALARM_NAMES[0], "ALARM")

    advance = controller.run("advance", {"phase": "split", **SHORT_BAKE})

    assert (advance.status, advance.error) == ("FAILED", "AlarmActive")
    assert advance.result("AlarmsQuiet")["in_alarm"] == [ROLLBACK_ALARM_NAMES[0]]
    assert controller.weights() == {"onprem": 50, "aws": 50}


def test_advance_refuses_an_unknown_phase(controller):
    advance = controller.run("advance", {"phase": "everything"})

    assert (advance.status, advance.error) == ("FAILED", "UnknownPhase")
    assert advance.states_entered() == ["HasPhase?", "KnownPhase?", "UnknownPhase"]
    missing = controller.run("advance", {})
    assert (missing.status, missing.error) == ("FAILED", "UnknownPhase")
    assert missing.states_entered() == ["HasPhase?", "UnknownPhase"]
