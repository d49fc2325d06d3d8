"""The rollback itself: plain Python that takes its AWS clients as arguments.

Order matters and is fixed:
1. Traffic: on-prem 100 / AWS 0 in one Route 53 ChangeBatch.
2. The writer. On-prem (before the data cutover): nothing more, the rollback is DNS only and
   forward replication keeps Aurora a current replica. AWS (after it): the fenced writer rollback,
   an execution of the rollback state machine named after the writer epoch, waited for within a
   bound.
3. The notification.

Once traffic is on-prem nothing undoes it; a failure after that point makes the result PARTIAL and
the next invocation finishes the job (it sees ALREADY_ROLLED_BACK and joins or reports the same
writer rollback). When the traffic shift fails, the writer is left alone: the answer is FAILED and
the next invocation does both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from payment_rollback import SERVICE_NAME
from payment_rollback.clients import FOLLOW_UP_ATTEMPTS, AwsClients, worst_case_call_seconds
from payment_rollback.errors import RollbackError, describe_error
from payment_rollback.models import RollbackRequest, RollbackResult, Settings, Status
from payment_rollback.routing import split_weights, set_weights
from payment_rollback.writer import ONPREM, read_writer
from payment_rollback.writer_rollback import (
    FAILED_STATUSES,
    SUCCEEDED,
    execution_arn,
    execution_name,
    find_execution,
    start_or_join,
    wait_for,
)

logger = Logger(service=SERVICE_NAME, child=True)

ROLLED_BACK_WEIGHTS = split_weights(aws_weight=0)
# After the wait come, at worst, one more DescribeExecution, the writer re-read and the SNS publish,
# each with bounded retries: the wait ends early enough for them to fit in the function's timeout.
AFTER_WAIT_RESERVE_SECONDS = 3 * worst_case_call_seconds(FOLLOW_UP_ATTEMPTS)
_SUBJECT_LIMIT = 100  # SNS Publish Subject


def roll_back(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    *,
    seconds_left: Callable[[], float] | None = None,
) -> RollbackResult:
    """`seconds_left` tells how long the invocation may still run (the Lambda context's remaining
    time): the wait for the writer rollback (WRITER_ROLLBACK_WAIT_SECONDS) is shortened to leave
    room for what follows it. Without it, the configured wait is used as is."""
    result = RollbackResult(status=Status.FAILED, reason=request.reason, dry_run=request.dry_run)
    try:
        _shift_traffic(request, settings, clients.route53, result)
    except RollbackError as error:
        # Traffic stays where it was, and so does the writer.
        result.status = Status.FAILED
        _record_error(result, f"Route 53: {describe_error(error)}")
        if not request.dry_run:
            _follow_up(result, "SNS", lambda: _notify(clients.sns, settings, request, result))
        return result

    # From here on traffic is on-prem (or, for a dry run, nothing was changed), and the answer
    # must say so: a failing follow-up is recorded, never raised.
    _follow_up(
        result,
        "writer",
        lambda: _roll_back_writer(request, settings, clients, result, seconds_left),
    )
    if not request.dry_run:
        _follow_up(result, "SNS", lambda: _notify(clients.sns, settings, request, result))
    _settle_status(result)
    return result


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
) -> None:
    parameter = settings.writer_parameter
    writer = read_writer(clients.ssm, parameter)
    result.writer_before = writer.to_dict()
    if writer.writer == ONPREM:
        result.writer_after = writer.to_dict()
        _record_action(
            result,
            f"writer: onprem (epoch {writer.epoch}), Aurora is not the writer: the rollback is "
            "DNS only and forward replication keeps running",
        )
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
        execution = _start_and_wait(request, settings, clients, result, writer.epoch, seconds_left)
    except RollbackError as error:
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


def _start_and_wait(
    request: RollbackRequest,
    settings: Settings,
    clients: AwsClients,
    result: RollbackResult,
    epoch: int,
    seconds_left: Callable[[], float] | None,
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
        clients.stepfunctions, execution, _wait_seconds(settings, result, seconds_left)
    )
    result.writer_rollback["status"] = execution["status"]
    return execution


def _wait_seconds(
    settings: Settings, result: RollbackResult, seconds_left: Callable[[], float] | None
) -> float:
    wait = settings.writer_rollback_wait_seconds
    if seconds_left is not None:
        room = max(0.0, seconds_left() - AFTER_WAIT_RESERVE_SECONDS)
        if room < wait:
            _record_action(
                result,
                f"writer: waiting {room:.0f} s instead of WRITER_ROLLBACK_WAIT_SECONDS={wait:g}, "
                f"to keep {AFTER_WAIT_RESERVE_SECONDS} s of the function's timeout for reporting",
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
    except RollbackError as error:
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
