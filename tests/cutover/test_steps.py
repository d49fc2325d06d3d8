"""The cutover's database steps on two real PostgreSQL servers joined by logical replication."""

from __future__ import annotations

import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from payment_common.sides import AWS, FALLBACK, FORWARD, ONPREM
from payment_common.writer import read_writer
from payment_cutover import control, fence, slots, steps
from payment_cutover.errors import (
    FenceIncomplete,
    ReplicationBehind,
    ReplicationNotRunning,
    WriterMismatch,
)
from payment_cutover.replication import ABSENT, RUNNING

AUDIT_INSERT = "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'created')"


def audit_rows(db) -> int:
    return db.scalar("SELECT count(*) FROM audit_log")


class Hammer:
    """A thread writing audit rows as payment_app on one side as fast as it can, reconnecting when its
    session is ended, and recording each attempt's outcome."""

    def __init__(self, pair, side: str, *, rogue: bool = False) -> None:
        self.pair, self.side = pair, side
        self.rogue = rogue  # turns read-only off in each new session, as no well-behaved client does
        self.outcomes: list[tuple[float, str]] = []  # (monotonic time, "ok" or error class name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def attempts_since(self, moment: float) -> list[str]:
        return [outcome for at, outcome in list(self.outcomes) if at >= moment]

    def wait_for_attempts(self, count: int, since: float) -> list[str]:
        return self.pair.wait_until(lambda: len(self.attempts_since(since)) >= count and self.attempts_since(since),
                                    f"{count} write attempts")

    def _run(self) -> None:
        conn, n = None, 0
        while not self._stop.is_set():
            n += 1
            try:
                if conn is None or conn.closed:
                    conn = self.pair.sides[self.side].connect("payment_app")
                    if self.rogue:
                        with conn.cursor() as cur:
                            cur.execute("SET default_transaction_read_only = off")
                with conn.cursor() as cur:
                    cur.execute(AUDIT_INSERT, (f"hammer-{n}",))
                self.outcomes.append((time.monotonic(), "ok"))
            except psycopg2.Error as error:
                self.outcomes.append((time.monotonic(), type(error).__name__))
                # a refused statement leaves the session usable (autocommit): keep it, as an application
                # would, until the fence ends it; reconnect after anything else
                if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) or conn.closed:
                    if conn is not None and not conn.closed:
                        conn.close()
                    conn = None
        if conn is not None:
            conn.close()


def test_during_a_fence_no_write_lands_on_the_old_writer(pair):
    controller_conn = pair.connection(ONPREM, "payment_controller")
    with Hammer(pair, ONPREM) as hammer:
        hammer.wait_for_attempts(20, since=0)
        assert set(hammer.attempts_since(0)) == {"ok"}, "writes failed before the fence"
        fence_started = time.monotonic()
        report = fence.fence(controller_conn, ["payment_app"])
        fenced = time.monotonic()
        rows_when_fenced = audit_rows(pair.onprem)
        after = hammer.wait_for_attempts(50, since=fenced)
        rows_later = audit_rows(pair.onprem)
        during = set(hammer.attempts_since(fence_started)) - {"ok"}
    print(f"\nfence: {report.to_dict()}, outcomes after it: {sorted(set(after))}")
    assert rows_later == rows_when_fenced, f"{rows_later - rows_when_fenced} rows landed on the fenced side"
    assert set(after) == {"ReadOnlySqlTransaction"}, f"writes after the fence ended with {sorted(set(after))}"
    # a session from before the fence may meet the revoked privilege before it is terminated
    assert during <= {"ReadOnlySqlTransaction", "InsufficientPrivilege", "AdminShutdown", "OperationalError",
                      "InterfaceError"}, during
    assert report.terminated_pids, "the hammering session was not terminated"
    reader = pair.connection(ONPREM, "payment_app")
    with reader.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments")  # what payment_app may read
        assert cur.fetchone()[0] == 0, "reads stopped working on the fenced side"


def test_during_a_fence_a_client_that_turns_read_only_off_writes_nothing(pair):
    """The privilege part of the fence binds a client that ignores the read-only default."""
    controller_conn = pair.connection(ONPREM, "payment_controller")
    with Hammer(pair, ONPREM, rogue=True) as hammer:
        hammer.wait_for_attempts(20, since=0)
        assert set(hammer.attempts_since(0)) == {"ok"}
        fence.fence(controller_conn, ["payment_app"])
        fenced = time.monotonic()
        rows_when_fenced = audit_rows(pair.onprem)
        after = hammer.wait_for_attempts(50, since=fenced)
        rows_later = audit_rows(pair.onprem)
    assert rows_later == rows_when_fenced, f"{rows_later - rows_when_fenced} rows landed on the fenced side"
    assert set(after) == {"InsufficientPrivilege"}, f"writes after the fence ended with {sorted(set(after))}"
    assert fence.fence_state(controller_conn, ["payment_app"]) == {"payment_app": "fenced"}


def test_fence_and_open_are_idempotent_and_reported(pair):
    conn = pair.connection(ONPREM, "payment_controller")
    assert fence.fence_state(conn, ["payment_app"]) == {"payment_app": "open"}
    first, second = fence.fence(conn, ["payment_app"]), fence.fence(conn, ["payment_app"])
    assert first.roles == second.roles == {"payment_app": "fenced"}
    assert second.terminated_pids == []
    assert fence.open_side(conn, ["payment_app"]) == fence.open_side(conn, ["payment_app"]) == {"payment_app": "open"}
    # the fence is per database: the other side (another server here) is untouched, and so is another role
    assert fence.fence_state(pair.connection(AWS, "payment_controller"), ["payment_app"]) == {"payment_app": "open"}


def test_fence_names_a_missing_role_and_changes_nothing(pair):
    from payment_common.errors import ConfigurationError

    conn = pair.connection(ONPREM, "payment_controller")
    with pytest.raises(ConfigurationError, match="onprem_app"):
        fence.fence(conn, ["payment_app", "onprem_app"])
    assert fence.fence_state(conn, ["payment_app"]) == {"payment_app": "open"}


def test_the_marker_measures_the_lag_on_the_target(pair, controller):
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    result = steps.wait_replication(controller, ONPREM, AWS)
    print(f"\nmeasured replication lag: {result['lag_seconds']} s")
    assert result["skipped"] is False and result["lag_seconds"] >= 0
    assert pair.aws.scalar("SELECT count(*) FROM payment_control.cutover_marker WHERE marker_id = %s",
                           (result["marker_id"],)) == 1


def test_a_marker_stuck_behind_the_apply_raises_replication_behind_and_a_retry_succeeds(pair, controller):
    steps.fence(controller, ONPREM, AWS)
    controller.wait_seconds = 0.5
    blocker = pair.admin_connection(AWS)
    blocker.autocommit = False
    with blocker.cursor() as cur:  # the apply worker waits behind this lock
        cur.execute("LOCK TABLE payment_control.cutover_marker IN SHARE MODE")
    with pytest.raises(ReplicationBehind, match="has not reached aws"):
        steps.wait_replication(controller, ONPREM, AWS)
    blocker.rollback()
    controller.wait_seconds = 10
    assert steps.wait_replication(controller, ONPREM, AWS)["skipped"] is False


def test_wait_replication_refuses_an_unfenced_source_and_a_stopped_direction(pair, controller):
    with pytest.raises(FenceIncomplete, match="onprem is not fenced"):
        steps.wait_replication(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    pair.aws.postgres.admin_execute(f'ALTER SUBSCRIPTION "{pair.slot_names["forward"]}" DISABLE',
                                    dbname=pair.aws.dbname)
    with pytest.raises(ReplicationNotRunning, match="disabled"):
        steps.wait_replication(controller, ONPREM, AWS)


def test_without_advancing_sequences_the_first_insert_collides_and_after_it_does_not(pair, controller):
    writer = pair.connection(ONPREM, "payment_app")
    with writer.cursor() as cur:
        for n in range(5):
            cur.execute(AUDIT_INSERT, (f"before-{n}",))
    pair.wait_until(lambda: audit_rows(pair.aws) == 5, "audit rows on aws")
    new_writer = pair.connection(AWS, "payment_app")
    with pytest.raises(psycopg2.errors.UniqueViolation, match="audit_log_pkey"):
        with new_writer.cursor() as cur:
            cur.execute(AUDIT_INSERT, ("first-on-aws",))
    steps.fence(controller, ONPREM, AWS)
    result = steps.advance_sequences(controller, ONPREM, AWS)
    print(f"\nsequences: {result}")
    (advanced,) = result["sequences"]
    assert (advanced["column"], advanced["set_to"]) == ("audit_log.audit_id", 5)
    with new_writer.cursor() as cur:
        cur.execute(AUDIT_INSERT, ("first-on-aws",))
    assert pair.aws.scalar("SELECT max(audit_id) FROM audit_log") == 6
    again = steps.advance_sequences(controller, ONPREM, AWS)
    assert again["changed"] == 0, f"a second run moved a sequence: {again}"


def test_advance_takes_the_old_writers_position_when_it_is_ahead_of_the_rows(pair, controller):
    # values drawn on the old writer whose rows never committed: the sequence is ahead of max(audit_id)
    pair.onprem.postgres.admin_execute("SELECT setval('audit_log_audit_id_seq', 500)", dbname=pair.onprem.dbname)
    steps.fence(controller, ONPREM, AWS)
    (advanced,) = steps.advance_sequences(controller, ONPREM, AWS)["sequences"]
    assert advanced["old_writer_last_used"] == 500 and advanced["set_to"] == 500


def test_the_switch_loses_nothing_and_replicates_back(pair, controller, customer):
    writer = pair.connection(ONPREM, "payment_app")
    with writer.cursor() as cur:
        for n in range(20):
            cur.execute(AUDIT_INSERT, (f"before-switch-{n}",))
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    # no waiting for replication first: the switch itself proves the old direction caught up
    result = steps.switch_replication(controller, ONPREM, AWS)
    print(f"\nswitch: {result['actions']}")
    assert audit_rows(pair.aws) == 20, "rows written before the switch are missing on the new writer"
    assert result["replication"]["forward"]["status"] == ABSENT
    assert result["replication"]["fallback"]["status"] == RUNNING
    assert pair.onprem.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                              (pair.slot_names["forward"],)) == 0, "the stopped direction's slot was not dropped"
    steps.advance_sequences(controller, ONPREM, AWS)
    steps.open_writer(controller, ONPREM, AWS)
    new_writer = pair.connection(AWS, "payment_app")
    with new_writer.cursor() as cur:
        cur.execute(AUDIT_INSERT, ("after-switch",))
    pair.wait_until(lambda: audit_rows(pair.onprem) == 21, "the new writer's row to reach onprem")
    again = steps.switch_replication(controller, ONPREM, AWS)
    assert "fallback (aws → onprem) already running" in again["actions"], again


def test_open_refuses_while_the_other_side_is_open_or_replication_does_not_run_back(pair, controller):
    with pytest.raises(FenceIncomplete, match="onprem is not fenced"):
        steps.open_writer(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    with pytest.raises(ReplicationNotRunning, match="fallback"):
        steps.open_writer(controller, ONPREM, AWS)


def test_the_whole_sequence_then_the_rollback(pair, controller, ssm, writer_parameter):
    run_cutover(controller, ONPREM, AWS)
    assert read_writer(ssm, writer_parameter).writer == AWS
    assert steps.preflight(controller, ONPREM, AWS)["already_done"] is True
    with pytest.raises(WriterMismatch):
        steps.fence(controller, ONPREM, AWS)
    run_cutover(controller, AWS, ONPREM)
    record = read_writer(ssm, writer_parameter)
    assert (record.writer, record.epoch) == (ONPREM, 2)
    states = steps.status(controller)
    assert states["fence"] == {ONPREM: {"payment_app": "open"}, AWS: {"payment_app": "fenced"}}
    assert states["replication"]["forward"]["status"] == RUNNING
    assert states["replication"]["fallback"]["status"] == ABSENT
    assert states["slots"][AWS] is None, "the fallback slot was left behind on aws"


def test_abort_before_the_switch_reopens_the_old_writer(pair, controller):
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    result = steps.abort(controller, ONPREM, AWS)
    assert result["reopened"] == ONPREM
    assert result["fence"] == {ONPREM: {"payment_app": "open"}, AWS: {"payment_app": "fenced"}}


def test_reopening_ends_the_sessions_that_began_fenced(pair, controller, customer):
    """A session takes its read-only default when it starts: one that connected during the fence would
    refuse every write after the abort reopened the side, unless it is ended (and its client reconnects)."""
    insert = ("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, request_hash) "
              "VALUES (gen_random_uuid(), %s, 1.00, 'EUR', %s, 'h')")
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    during = pair.connection(ONPREM, "payment_app")
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), during.cursor() as cur:
        cur.execute(insert, (customer, "during-fence"))

    assert steps.abort(controller, ONPREM, AWS)["reopened"] == ONPREM

    with pytest.raises(psycopg2.OperationalError), during.cursor() as cur:
        cur.execute(insert, (customer, "same-session"))
    with pair.connection(ONPREM, "payment_app").cursor() as cur:
        cur.execute(insert, (customer, "new-session"))
    assert pair.onprem.scalar("SELECT count(*) FROM payments WHERE idempotency_key = 'new-session'") == 1


@pytest.mark.parametrize("stopped_at", ["disabled", "detached", "dropped"])
def test_abort_of_a_switch_that_died_stopping_the_old_direction_restarts_it(pair, controller, ssm, writer_parameter,
                                                                             customer, stopped_at):
    """The switch died inside drop_subscription, after DISABLE, after detaching the slot, or after the
    DROP, before it recorded or dropped the slot: the abort reopens on-prem and starts the old
    direction again from its slot, so on-prem's writes reach aws and the next run can switch."""
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    name = pair.slot_names["forward"]
    with controller.driver.admin[AWS].cursor() as cur:
        cur.execute(f'ALTER SUBSCRIPTION "{name}" DISABLE')
        if stopped_at in ("detached", "dropped"):
            cur.execute(f'ALTER SUBSCRIPTION "{name}" SET (slot_name = NONE)')
        if stopped_at == "dropped":
            cur.execute(f'DROP SUBSCRIPTION "{name}"')
    assert not controller.driver.state(FORWARD).active

    result = steps.abort(controller, ONPREM, AWS)

    assert result["reopened"] == ONPREM and result["restarted"], result
    assert controller.driver.state(FORWARD).running
    with pair.connection(ONPREM, "payment_app").cursor() as cur:  # autocommit
        cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, request_hash) "
                    "VALUES (gen_random_uuid(), %s, 1.00, 'EUR', 'after-abort', 'h')", (customer,))
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM payments WHERE idempotency_key = 'after-abort'") == 1,
                    "the payment written after the abort to reach aws")
    assert steps.preflight(controller, ONPREM, AWS)["already_done"] is False
    run_cutover(controller, ONPREM, AWS)
    assert read_writer(ssm, writer_parameter).writer == AWS


def test_a_direction_stopped_and_made_again_on_its_slot_resumes_after_what_the_target_applied(pair, controller,
                                                                                                customer):
    """The apply worker reports what it applied only once its commits are flushed, so the slot's
    confirmed position can be older than what the target holds. A subscription dropped and made again
    on that slot (the abort restarting a switch that crashed after the drop) would be sent those
    transactions again, and the first INSERT among them stops its apply for good (duplicate key).
    The WAL writer held back on aws keeps the applied payment unflushed there while the stop begins."""
    admin = controller.driver.admin[AWS]

    def set_wal_writer_delay(value: str) -> None:
        with admin.cursor() as cur:
            cur.execute(f"ALTER SYSTEM SET wal_writer_delay = '{value}'")
            cur.execute("SELECT pg_reload_conf()")

    def pay(key: str) -> None:
        with pair.connection(ONPREM, "payment_app").cursor() as cur:  # autocommit
            cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                        "request_hash) VALUES (gen_random_uuid(), %s, 1.00, 'EUR', %s, 'h')", (customer, key))
        pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM payments WHERE idempotency_key = %s",
                                                (key,)) == 1, f"payment {key} to reach aws")

    set_wal_writer_delay("2s")  # the apply worker, waiting for its flush, also wakes only this often
    try:
        time.sleep(0.3)  # the WAL writer takes the new delay on its next round
        pay("applied-before-the-stop")
        controller.driver.stop(FORWARD, timeout_seconds=10)
    finally:
        set_wal_writer_delay("200ms")
    controller.driver.start(FORWARD, start_lsn=None, timeout_seconds=10)

    pay("written-after-the-restart")
    assert pair.aws.scalar("SELECT count(*) FROM payments WHERE idempotency_key = 'applied-before-the-stop'") == 1


def test_a_switch_that_died_between_recording_and_dropping_the_old_slot_is_finished_by_a_rerun(
        pair, controller, ssm, writer_parameter):
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    controller.driver.stop(FORWARD, timeout_seconds=5)
    onprem = controller.databases[ONPREM]
    control.update_fence(onprem, control.current_fence(onprem, ONPREM), old_slot_dropped=True)
    # ... and died before slots.drop_slot: the old slot is still there
    assert steps.abort(controller, ONPREM, AWS)["reopened"] is None

    outcome = run_cutover(controller, ONPREM, AWS)

    assert outcome["preflight"]["switch_started"] is True
    assert read_writer(ssm, writer_parameter).writer == AWS
    assert controller.driver.state(FALLBACK).running
    assert steps.status(controller)["slots"][ONPREM] is None, "the old slot was left on on-prem"


def test_abort_after_the_switch_started_leaves_both_fenced_and_a_rerun_finishes(pair, controller, ssm,
                                                                                 writer_parameter):
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    # the switch dies after stopping the old direction and dropping its slot (as it does: recorded first)
    controller.driver.stop(FORWARD, timeout_seconds=5)
    onprem = controller.databases[ONPREM]
    control.update_fence(onprem, control.current_fence(onprem, ONPREM), old_slot_dropped=True)
    slots.drop_slot(onprem, pair.slot_names["forward"], timeout_seconds=5)
    result = steps.abort(controller, ONPREM, AWS)
    assert result["reopened"] is None
    assert result["fence"] == {ONPREM: {"payment_app": "fenced"}, AWS: {"payment_app": "fenced"}}
    # the operator runs the execution again: every step finds what was done and finishes the rest
    outcome = run_cutover(controller, ONPREM, AWS)
    assert outcome["preflight"]["switch_started"] is True
    assert outcome["wait_replication"]["skipped"] is True
    assert read_writer(ssm, writer_parameter).writer == AWS
    assert controller.driver.state(FALLBACK).running


def run_cutover(controller, source: str, target: str) -> dict:
    """The state machine's order, without validation and weights."""
    outcome = {"preflight": steps.preflight(controller, source, target)}
    if outcome["preflight"]["already_done"]:
        return outcome
    outcome["fence"] = steps.fence(controller, source, target)
    outcome["wait_replication"] = steps.wait_replication(controller, source, target)
    outcome["advance_sequences"] = steps.advance_sequences(controller, source, target)
    outcome["switch_replication"] = steps.switch_replication(controller, source, target)
    outcome["prove_fence"] = steps.prove_fence(controller, source, target)
    outcome["open"] = steps.open_writer(controller, source, target)
    outcome["set_writer"] = steps.set_writer(controller, source, target, f"test cutover to {target}")
    return outcome
