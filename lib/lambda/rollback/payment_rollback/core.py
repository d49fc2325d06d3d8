"""The rollback itself: plain Python that takes its AWS clients as arguments.

Order matters and is fixed:
0. The controller's executions in flight (payment_rollback.preemption): every running `advance`
   is stopped, so none moves weights after the rollback; a running `cutover` is waited for (never
   stopped mid-way), so the rollback works on the writer it leaves instead of being undone by it.
1. Traffic: on-prem 100 / AWS 0 in one Route 53 ChangeBatch.
2. The writer. On-prem (before the data cutover): the rollback is DNS only and forward replication
   keeps Aurora a current replica — once on-prem is seen to accept writes (payment_rollback.writes:
   the controller's fence measurements and the DMS tasks). On-prem fenced means a cutover stopped
   past its fence and nothing accepts writes: NO_WRITER, never ROLLED_BACK; no recent measurement
   is PARTIAL. AWS (after it): the fenced writer rollback, an execution of the rollback state
   machine named after the writer epoch, waited for within a bound. A cutover still running at the
   bound: the writer is left alone (PARTIAL).
3. The weights once more: a weight change an advance step had sent before it was stopped may land
   after step 1; if the weights moved, they are set again.
4. The notification.

All the waiting (for a cutover, then for the writer rollback) shares one bound,
WRITER_ROLLBACK_WAIT_SECONDS, itself shortened to fit the function's remaining time.

Once traffic is on-prem nothing undoes it; a failure after that point makes the result PARTIAL and
the next invocation finishes the job (it sees ALREADY_ROLLED_BACK and joins or reports the same
writer rollback). When the traffic shift fails, the writer is left alone: the answer is FAILED and
the next invocation does both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from payment_common.aws import worst_case_call_seconds
from payment_common.errors import AwsUnavailable, MigrationError
from payment_common.sides import ONPREM
from payment_common.stepfunctions import find as find_execution
from payment_common.writer import WriterRecord, read_writer
from payment_rollback import SERVICE_NAME
from payment_rollback.clients import (
    CHECK_ATTEMPTS,
    FOLLOW_UP_ATTEMPTS,
    ROUTE53_ATTEMPTS,
    AwsClients,
)
from payment_rollback.errors import describe_error
from payment_rollback.models import RollbackRequest, RollbackResult, Settings, Status
from payment_rollback.preemption import Preemption, running_executions, stop, task_in_flight
from payment_rollback.routing import split_weights, set_weights
from payment_rollback.writer_rollback import (
    FAILED_STATUSES,
    RUNNING_STATUSES,
    SUCCEEDED,
    execution_arn,
    execution_name,
    start_or_join,
    wait_for,
)
from payment_rollback.writes import FENCED, OPEN, check_writer, how_far, read_fences, read_replication

logger = Logger(service=SERVICE_NAME, child=True)

ROLLED_BACK_WEIGHTS = split_weights(aws_weight=0)
# After the wait come, at worst, one more DescribeExecution, the writer re-read and the SNS publish,
# each with bounded retries: the wait ends early enough for them to fit in the function's timeout.
AFTER_WAIT_RESERVE_SECONDS = 3 * worst_case_call_seconds(FOLLOW_UP_ATTEMPTS)
# Seeing whether the on-prem writer accepts writes: GetMetricData and DescribeReplicationTasks, and
# for NO_WRITER the newest cutover execution (ListExecutions).
WRITES_CHECK_SECONDS = 2 * worst_case_call_seconds(CHECK_ATTEMPTS) + worst_case_call_seconds(FOLLOW_UP_ATTEMPTS)
# What must still fit after that check: the weights again and the notification.
AFTER_WRITES_CHECK_SECONDS = worst_case_call_seconds(ROUTE53_ATTEMPTS) + worst_case_call_seconds(FOLLOW_UP_ATTEMPTS)
# After the wait for a cutover come the traffic shift and everything after the writer rollback's wait,
# or the check of the on-prem writer.
AFTER_CUTOVER_WAIT_RESERVE_SECONDS = (AFTER_WAIT_RESERVE_SECONDS + worst_case_call_seconds(ROUTE53_ATTEMPTS)
                                      + WRITES_CHECK_SECONDS)
STATUS_COMMAND = "python -m lib.cutover status"
_SUBJECT_LIMIT = 100  # SNS Publish Subject


def roll_back(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    *,
    seconds_left: Callable[[], float] | None = None,
    function_name: str | None = None,
) -> RollbackResult:
    """`seconds_left` tells how long the invocation may still run (the Lambda context's remaining
    time): the waits (WRITER_ROLLBACK_WAIT_SECONDS) are shortened to leave room for what follows
    them. Without it, the configured wait is used as is. `function_name` is this function's name
    (the Lambda context's): an advance execution waiting on it is the caller, and is not stopped."""
    result = RollbackResult(status=Status.FAILED, reason=request.reason, dry_run=request.dry_run)
    preemption = Preemption()
    waited = [0.0]  # seconds of WRITER_ROLLBACK_WAIT_SECONDS spent so far
    cutover_running: list[str] = []
    # Errors here are recorded, never raised: nothing may keep traffic from moving.
    _follow_up(result, "advance",
               lambda: _stop_advance(request, settings, clients, result, preemption, function_name))
    _follow_up(result, "cutover",
               lambda: cutover_running.extend(
                   _wait_for_cutover(request, settings, clients, result, preemption, waited, seconds_left)))
    result.controller = preemption.to_dict()
    try:
        _shift_traffic(request, settings, clients.route53, result)
    except MigrationError as error:
        # Traffic stays where it was, and so does the writer.
        result.status = Status.FAILED
        _record_error(result, f"Route 53: {describe_error(error)}")
        if not request.dry_run:
            _follow_up(result, "SNS", lambda: _notify(clients.sns, settings, request, result))
        return result

    # From here on traffic is on-prem (or, for a dry run, nothing was changed), and the answer
    # must say so: a failing follow-up is recorded, never raised.
    if cutover_running:
        _follow_up(result, "writer", lambda: _leave_writer(settings, clients, result, cutover_running, waited[0]))
    else:
        _follow_up(
            result,
            "writer",
            lambda: _roll_back_writer(request, settings, clients, result, seconds_left, waited[0]),
        )
    if not request.dry_run:
        _follow_up(result, "traffic", lambda: _traffic_again(request, settings, clients.route53, result))
        _follow_up(result, "SNS", lambda: _notify(clients.sns, settings, request, result))
    _settle_status(result)
    return result


def _stop_advance(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    preemption: Preemption,
    function_name: str | None,
) -> None:
    """Stop every running advance execution but one waiting on this function (its caller)."""
    arn = settings.advance_state_machine_arn
    running = running_executions(clients.stepfunctions, arn)
    if running is None:
        _record_action(result, f"advance: state machine {arn} does not exist: no execution to stop")
        return
    for execution in running:
        execution_arn = execution["executionArn"]
        try:
            task = task_in_flight(clients.stepfunctions, execution_arn)
        except AwsUnavailable as error:
            task = None
            _record_action(result, f"advance: cannot tell what {execution_arn} is doing "
                                   f"({describe_error(error)}): it is stopped")
        if task is not None and function_name and task["function_name"] == function_name:
            preemption.advance_left_running.append(execution_arn)
            _record_action(result, f"advance: {execution_arn} is waiting on this rollback (its "
                                   f"{task['state'] or 'current'} state): left to finish and report")
            continue
        preemption.advance_stopped.append(execution_arn)
        in_flight = ""
        if task is not None:
            in_flight = (f"; its {task['state'] or 'current'} step ({task['function_name']}) was in flight "
                         "and may still complete: the weights are checked again at the end")
        if request.dry_run:
            _record_action(result, f"advance: would stop {execution_arn}{in_flight}")
            continue
        stop(clients.stepfunctions, execution_arn, request.reason)
        _record_action(result, f"advance: stopped {execution_arn}{in_flight}")


def _wait_for_cutover(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    preemption: Preemption,
    waited: list[float],
    seconds_left: Callable[[], float] | None,
) -> list[str]:
    """Wait for a running cutover execution to end; returns the ARNs still running at the bound.

    Never stopped: stopped between two of its steps, a cutover could leave both databases fenced
    (or the writer switched with replication half turned), which takes a human to repair. Its
    steps are short and it ends on its own, well within the wait, on the writer it leaves."""
    arn = settings.cutover_state_machine_arn
    running = running_executions(clients.stepfunctions, arn)
    if running is None:
        _record_action(result, f"cutover: state machine {arn} does not exist: no execution to wait for")
        return []
    still_running: list[str] = []
    for execution in running:
        execution_arn = execution["executionArn"]
        preemption.cutover = {"execution_arn": execution_arn, "status": execution["status"], "waited_seconds": 0}
        if request.dry_run:
            _record_action(result, f"cutover: {execution_arn} is running: would wait for it to end "
                                   "(never stopped mid-way), then roll back from the writer it leaves")
            continue
        wait = _bounded_wait(settings, result, seconds_left, waited[0], AFTER_CUTOVER_WAIT_RESERVE_SECONDS,
                             "cutover")
        _record_action(result, f"cutover: {execution_arn} is running: waiting up to {wait:.0f} s for it to end "
                               "(a cutover is never stopped mid-way)")
        started = time.monotonic()
        execution = wait_for(clients.stepfunctions, execution, wait)
        spent = time.monotonic() - started
        waited[0] += spent
        preemption.cutover.update(status=execution["status"], waited_seconds=round(spent, 1))
        if execution["status"] in RUNNING_STATUSES:
            still_running.append(execution_arn)
        else:
            _record_action(result, f"cutover: {execution_arn} ended {execution['status']} after {spent:.1f} s")
    return still_running


def _leave_writer(
    settings: Settings, clients: AwsClients, result: RollbackResult, cutover_running: list[str], waited: float
) -> None:
    """A cutover still runs: the writer is not this invocation's to move."""
    writer = read_writer(clients.ssm, settings.writer_parameter)
    result.writer_before = result.writer_after = writer.to_dict()
    _record_error(
        result,
        f"cutover {', '.join(cutover_running)} still running after {waited:.0f} s of waiting: the writer "
        f"({writer.writer}, epoch {writer.epoch}) was left alone, since a cutover is never stopped mid-way; "
        "when it completes it moves all traffic to AWS: invoke the rollback again once it has ended",
    )


def _traffic_again(request: RollbackRequest, settings: Settings, route53: Any, result: RollbackResult) -> None:
    """On-prem 100 / AWS 0 once more, if a step in flight moved the weights since the shift."""
    change = set_weights(
        route53, settings.record, ROLLED_BACK_WEIGHTS, f"rollback to on-prem, again: {request.reason}"
    )
    if not change.changed:
        return
    result.weights_after = change.weights_after
    result.change_id = change.change_id
    _record_action(result, f"traffic: the weights had moved to {change.weights_before} during the rollback "
                           "(a controller step in flight): set again")
    result.actions.extend(change.actions)
    if result.status == Status.ALREADY_ROLLED_BACK:
        result.status = Status.ROLLED_BACK


def _shift_traffic(
    request: RollbackRequest, settings: Settings, route53: Any, result: RollbackResult
) -> None:
    change = set_weights(
        route53,
        settings.record,
        ROLLED_BACK_WEIGHTS,
        f"rollback to on-prem: {request.reason}",
        dry_run=request.dry_run,
    )
    result.weights_before = change.weights_before
    result.weights_after = change.weights_after
    result.change_id = change.change_id
    result.planned_change = change.planned_change
    result.actions.extend(change.actions)
    if request.dry_run:
        # A dry run always answers DRY_RUN, so it can never be mistaken for a real invocation.
        result.status = Status.DRY_RUN
    else:
        result.status = Status.ROLLED_BACK if change.changed else Status.ALREADY_ROLLED_BACK


def _roll_back_writer(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    seconds_left: Callable[[], float] | None,
    waited: float,
) -> None:
    parameter = settings.writer_parameter
    writer = read_writer(clients.ssm, parameter)
    result.writer_before = writer.to_dict()
    if writer.writer == ONPREM:
        result.writer_after = writer.to_dict()
        _check_onprem_writer(request, settings, clients, result, writer, seconds_left)
        return

    name = execution_name(writer.epoch)
    arn = execution_arn(settings.rollback_state_machine_arn, name)
    result.writer_rollback = {"execution_arn": arn, "status": None}
    if request.dry_run:
        existing = find_execution(clients.stepfunctions, arn)
        result.writer_after = writer.to_dict()
        if existing is None:
            _record_action(result, f"writer: aws (epoch {writer.epoch}); would start the fenced "
                                   f"writer rollback {arn}")
        else:
            result.writer_rollback["status"] = existing["status"]
            _record_action(result, f"writer: aws (epoch {writer.epoch}); the writer rollback "
                                   f"{arn} exists already ({existing['status']})")
        return

    try:
        execution = _start_and_wait(request, settings, clients, result, writer.epoch, seconds_left, waited)
    except MigrationError as error:
        _record_error(result, f"writer: {describe_error(error)}")
        execution = None
    # Read again, whatever the outcome: the answer shows the writer as it is now.
    after = read_writer(clients.ssm, parameter)
    result.writer_after = after.to_dict()
    if execution is None:
        return
    status = execution["status"]
    if status == SUCCEEDED and after.writer == ONPREM:
        _record_action(result, f"writer: rollback {arn} SUCCEEDED; the writer is onprem "
                               f"(epoch {after.epoch})")
        # The writer moved back: whatever DNS needed, this invocation rolled something back.
        result.status = Status.ROLLED_BACK
    elif status == SUCCEEDED:
        _record_error(result, f"writer: rollback {arn} SUCCEEDED but {parameter} still names "
                              f"{after.writer} (epoch {after.epoch}): check the state machine")
    elif status in FAILED_STATUSES:
        details = ": ".join(part for part in (execution.get("error"), execution.get("cause")) if part)
        _record_error(result, f"writer rollback {status}: {details or 'no error given'} ({arn}); "
                              f"the writer is still {after.writer}")
    else:
        _record_error(result, f"writer rollback still running: {arn}")


def _check_onprem_writer(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    writer: WriterRecord,
    seconds_left: Callable[[], float] | None,
) -> None:
    """DNS only — once on-prem is seen to accept writes. The writer parameter alone does not say so:
    a cutover that failed past its fence leaves it naming on-prem while on-prem is fenced."""
    head = f"writer: onprem (epoch {writer.epoch}), Aurora is not the writer"
    if seconds_left is not None and seconds_left() < WRITES_CHECK_SECONDS + AFTER_WRITES_CHECK_SECONDS:
        _record_error(result, f"{head}; whether on-prem accepts writes was not checked: {seconds_left():.0f} s "
                              f"left of the function's timeout; see `{STATUS_COMMAND}`")
        return
    check = check_writer(ONPREM, read_fences(clients.metrics, settings.metrics_namespace),
                         read_replication(clients.dms, settings.task_arns))
    result.writes = check.to_dict()
    if check.verdict == OPEN:
        if check.replication.forward_running:
            tail = "the rollback is DNS only and forward replication keeps running"
        elif check.replication.known:
            tail = ("the rollback is DNS only; forward replication is NOT running, so Aurora is not kept "
                    f"current: start it before moving traffic again ({STATUS_COMMAND})")
        else:
            tail = "the rollback is DNS only; whether forward replication runs is unknown"
        _record_action(result, f"{head} and accepts writes; {tail} ({check.seen()})")
        return
    if check.verdict == FENCED:
        cutover = _newest_cutover(clients, settings)
        message = (
            f"no writer: traffic is on-prem, but the writer parameter names onprem (epoch {writer.epoch}) and "
            f"on-prem is fenced, so every payment write is refused; {how_far(check)} ({check.seen()}). Finish "
            f"the cutover: see `{STATUS_COMMAND}`, then run it again (`python -m lib.cutover cutover`, whose "
            f"steps resume where {cutover} stopped)"
        )
        if request.dry_run:
            _record_action(result, f"would answer {Status.NO_WRITER.value}: {message}")
            return
        result.status = Status.NO_WRITER
        _record_error(result, message)
        return
    message = (f"{head}, but whether on-prem accepts writes cannot be told: {check.why} ({check.seen()}); "
               f"the cutover controller's publish_metrics step measures each side every minute: invoke the "
               f"rollback again in a minute, or see `{STATUS_COMMAND}`")
    if request.dry_run:
        _record_action(result, message)
        return
    _record_error(result, message)


def _newest_cutover(clients: AwsClients, settings: Settings) -> str:
    """The newest execution of the cutover state machine, for the operator to name; its state
    machine ARN when it cannot be listed."""
    arn = settings.cutover_state_machine_arn
    try:
        executions = clients.stepfunctions.list_executions(stateMachineArn=arn, maxResults=1)["executions"]
    except (ClientError, BotoCoreError) as error:
        logger.warning(f"cannot list the cutover executions: {describe_error(error)}")
        return f"the last execution of {arn}"
    if not executions:
        return f"the last execution of {arn}"
    newest = executions[0]
    return f"the cutover execution {newest['executionArn']} ({newest['status']})"


def _start_and_wait(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    epoch: int,
    seconds_left: Callable[[], float] | None,
    waited: float,
) -> dict[str, Any]:
    """The execution for this epoch, started or joined, after waiting for it within the bound."""
    execution, started = start_or_join(
        clients.stepfunctions,
        settings.rollback_state_machine_arn,
        execution_name(epoch),
        {"reason": request.reason, "trigger": request.trigger},
    )
    arn = execution["executionArn"]
    result.writer_rollback = {"execution_arn": arn, "status": execution["status"]}
    _record_action(
        result,
        f"writer: aws (epoch {epoch}); "
        + (f"started the fenced writer rollback {arn}" if started else
           f"the writer rollback {arn} exists already ({execution['status']}, started "
           f"{execution['startDate']})"),
    )
    execution = wait_for(
        clients.stepfunctions,
        execution,
        _bounded_wait(settings, result, seconds_left, waited, AFTER_WAIT_RESERVE_SECONDS, "writer"),
    )
    result.writer_rollback["status"] = execution["status"]
    return execution


def _bounded_wait(
    settings: Settings,
    result: RollbackResult,
    seconds_left: Callable[[], float] | None,
    waited: float,
    reserve: float,
    step: str,
) -> float:
    """What is left of WRITER_ROLLBACK_WAIT_SECONDS after `waited`, and no more than the function's
    remaining time less `reserve` (for the calls after the wait)."""
    configured = settings.writer_rollback_wait_seconds
    wait = max(0.0, configured - waited)
    if wait < configured:
        _record_action(result, f"{step}: waiting at most {wait:.0f} s: {waited:.0f} s of "
                               f"WRITER_ROLLBACK_WAIT_SECONDS={configured:g} went to the cutover")
    if seconds_left is not None:
        room = max(0.0, seconds_left() - reserve)
        if room < wait:
            _record_action(
                result,
                f"{step}: waiting {room:.0f} s instead of WRITER_ROLLBACK_WAIT_SECONDS={configured:g}, "
                f"to keep {reserve} s of the function's timeout for reporting",
            )
            wait = room
    return wait


def _notify(sns: Any, settings: Settings, request: RollbackRequest, result: RollbackResult) -> None:
    # Publishing is the last step, so the status in the message is final (unless publishing
    # itself fails, and then there is no message).
    _settle_status(result)
    record = settings.record
    message = {
        **result.to_dict(),
        "trigger": request.trigger,
        "hosted_zone_id": record.hosted_zone_id,
        "record_name": record.record_name,
        "record_type": record.record_type,
    }
    subject = f"Payment rollback {result.status.value}: {record.record_name}"
    try:
        response = sns.publish(
            TopicArn=settings.sns_topic_arn,
            Subject=_ascii_line(subject)[:_SUBJECT_LIMIT],
            Message=json.dumps(message, indent=2, default=str),
        )
    except (ClientError, BotoCoreError) as error:
        _record_error(
            result, f"SNS: could not notify {settings.sns_topic_arn}: {describe_error(error)}"
        )
        return
    _record_action(result, f"SNS: notified {settings.sns_topic_arn} (message {response['MessageId']})")


def _follow_up(result: RollbackResult, step: str, run: Callable[[], None]) -> None:
    """Run a step that comes after the traffic decision. Any error, expected or not, is recorded
    in the answer: an exception escaping here would turn an answer of "traffic is on-prem" into
    a bare Lambda error."""
    try:
        run()
    except MigrationError as error:
        _record_error(result, f"{step}: {describe_error(error)}")
    except Exception as error:  # noqa: BLE001 - see docstring
        logger.exception(f"{step} step failed unexpectedly")
        _record_error(result, f"{step}: unexpected {describe_error(error)}")


def _settle_status(result: RollbackResult) -> None:
    if result.errors and result.status in (Status.ROLLED_BACK, Status.ALREADY_ROLLED_BACK):
        result.status = Status.PARTIAL


def _record_action(result: RollbackResult, action: str) -> None:
    logger.info(action)
    result.actions.append(action)


def _record_error(result: RollbackResult, error: str) -> None:
    logger.error(error)
    result.errors.append(error)


def _ascii_line(text: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
