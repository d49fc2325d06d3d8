"""The rollback itself: plain Python that takes its AWS clients as arguments.

Order matters and is fixed: traffic first (one Route 53 ChangeBatch), then the forward DMS task,
then the notification. Once traffic is on-prem nothing undoes it; a failure after that point makes
the result PARTIAL and the next invocation finishes the job (it sees ALREADY_ROLLED_BACK and still
stops a running forward task).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from payment_rollback import SERVICE_NAME
from payment_rollback.errors import (
    RecordSetNotFoundError,
    RecordSetNotWeightedError,
    RollbackError,
    TrafficShiftError,
)
from payment_rollback.models import RollbackRequest, RollbackResult, Settings, Status

logger = Logger(service=SERVICE_NAME, child=True)

ONPREM = "onprem"
AWS = "aws"
# The project's weights are percentages (config validates 0-100). With AWS at 0, on-prem at any
# positive weight gets every answer; 100 states that plainly and matches the cutover phases.
FULL_WEIGHT = 100
ROLLED_BACK_WEIGHTS = {ONPREM: FULL_WEIGHT, AWS: 0}

# DMS states in which StopReplicationTask is accepted and the task may still move data.
STOPPABLE_TASK_STATES = frozenset({"running", "starting"})

_ROUTE53_ERRORS = (RollbackError, ClientError, BotoCoreError)
_COMMENT_LIMIT = 256  # Route 53 ChangeBatch.Comment
_SUBJECT_LIMIT = 100  # SNS Publish Subject


@dataclass(frozen=True)
class WeightedPair:
    """The two members of the weighted record set, exactly as Route 53 returned them."""

    onprem: dict[str, Any]
    aws: dict[str, Any]

    @property
    def weights(self) -> dict[str, int]:
        return {ONPREM: self.onprem["Weight"], AWS: self.aws["Weight"]}


def roll_back(
    request: RollbackRequest, settings: Settings, *, route53: Any, dms: Any, sns: Any
) -> RollbackResult:
    result = RollbackResult(status=Status.FAILED, reason=request.reason, dry_run=request.dry_run)
    try:
        _shift_traffic(request, settings, route53, result)
    except _ROUTE53_ERRORS as error:
        # Traffic stays where it was, so replication is left exactly as it is.
        result.status = Status.FAILED
        _record_error(result, f"Route 53: {_describe(error)}")
        if not request.dry_run:
            _follow_up(result, "SNS", lambda: _notify(sns, settings, request, result))
        return result

    # From here on traffic is on-prem (or, for a dry run, nothing was changed), and the answer
    # must say so: a failing follow-up is recorded, never raised.
    _follow_up(result, "DMS", lambda: _handle_replication(request, settings, dms, result))
    if not request.dry_run:
        _follow_up(result, "SNS", lambda: _notify(sns, settings, request, result))
    _settle_status(result)
    return result


def read_weighted_pair(route53: Any, settings: Settings) -> WeightedPair:
    """Both members of RECORD_NAME/RECORD_TYPE, found by their set identifiers."""
    roles = {settings.onprem_set_identifier: ONPREM, settings.aws_set_identifier: AWS}
    members: dict[str, dict[str, Any]] = {}
    other_identifiers: list[str] = []
    for record in _record_sets_named(route53, settings):
        identifier = record.get("SetIdentifier")
        if identifier in roles:
            members[roles[identifier]] = record
        else:
            other_identifiers.append(
                repr(identifier) if identifier else "a record without set identifier"
            )

    where = (
        f"{settings.record_name} {settings.record_type} in hosted zone {settings.hosted_zone_id}"
    )
    missing = [identifier for identifier, role in roles.items() if role not in members]
    if missing:
        found = ", ".join(other_identifiers) if other_identifiers else "no record at all"
        raise RecordSetNotFoundError(
            f"weighted record {where} has no member with set identifier "
            f"{' or '.join(repr(m) for m in missing)} (found: {found}); check RECORD_NAME, "
            "RECORD_TYPE, ONPREM_SET_IDENTIFIER and AWS_SET_IDENTIFIER against the routing stack"
        )
    for record in members.values():
        if not isinstance(record.get("Weight"), int):
            raise RecordSetNotWeightedError(
                f"member {record['SetIdentifier']!r} of {where} has no Weight: it is not a "
                "weighted record, so there is no weight to shift"
            )
    return WeightedPair(onprem=members[ONPREM], aws=members[AWS])


def build_change_batch(pair: WeightedPair, reason: str) -> dict[str, Any]:
    """UPSERT both members in one batch, so there is no moment where both or neither side has
    weight. Each member is resubmitted as read (target, TTL, health check, alias settings) with
    only its weight changed."""
    return {
        "Comment": f"rollback to on-prem: {reason}"[:_COMMENT_LIMIT],
        "Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {**pair.onprem, "Weight": FULL_WEIGHT}},
            {"Action": "UPSERT", "ResourceRecordSet": {**pair.aws, "Weight": 0}},
        ],
    }


def _shift_traffic(
    request: RollbackRequest, settings: Settings, route53: Any, result: RollbackResult
) -> None:
    pair = read_weighted_pair(route53, settings)
    result.weights_before = pair.weights
    result.weights_after = pair.weights
    described = _describe_weights(settings, pair.weights)
    if pair.weights == ROLLED_BACK_WEIGHTS:
        # A dry run always answers DRY_RUN, so it can never be mistaken for a real invocation.
        result.status = Status.DRY_RUN if request.dry_run else Status.ALREADY_ROLLED_BACK
        _record_action(result, f"Route 53: {described} already; no change submitted")
        return

    change_batch = build_change_batch(pair, request.reason)
    target = _describe_weights(settings, ROLLED_BACK_WEIGHTS)
    if request.dry_run:
        result.status = Status.DRY_RUN
        result.planned_change = change_batch
        result.weights_after = dict(ROLLED_BACK_WEIGHTS)
        _record_action(result, f"Route 53: would change {described} to {target} in one batch")
        return

    result.weights_after = {}  # unknown until Route 53 answers
    try:
        response = route53.change_resource_record_sets(
            HostedZoneId=settings.hosted_zone_id, ChangeBatch=change_batch
        )
    except (ClientError, BotoCoreError) as error:
        # A timed-out call may still have been applied: look before reporting FAILED.
        result.weights_after = _read_back_weights(route53, settings, error)
        if result.weights_after != ROLLED_BACK_WEIGHTS:
            raise TrafficShiftError(
                f"ChangeResourceRecordSets failed: {_describe(error)}; the weights are still "
                f"{_describe_weights(settings, result.weights_after)}"
            ) from error
        _record_action(
            result,
            f"Route 53: ChangeResourceRecordSets reported {_describe(error)}, but the records "
            f"now show {target}: the change was applied",
        )
    else:
        info = response["ChangeInfo"]
        result.change_id = info["Id"].removeprefix("/change/")
        result.weights_after = dict(ROLLED_BACK_WEIGHTS)
        _record_action(
            result,
            f"Route 53: changed {described} to {target} in one batch "
            f"(change {result.change_id}, {info['Status']})",
        )
    result.status = Status.ROLLED_BACK


def _read_back_weights(route53: Any, settings: Settings, error: Exception) -> dict[str, int]:
    try:
        return read_weighted_pair(route53, settings).weights
    except _ROUTE53_ERRORS as reread_error:
        raise TrafficShiftError(
            f"ChangeResourceRecordSets failed ({_describe(error)}) and the records could not be "
            f"read back ({_describe(reread_error)}); the weights are unknown: list the record set "
            "before invoking again"
        ) from error


def _handle_replication(
    request: RollbackRequest, settings: Settings, dms: Any, result: RollbackResult
) -> None:
    arns = [settings.dms_task_arn]
    if settings.fallback_task_arn:
        arns.append(settings.fallback_task_arn)
    try:
        statuses = _task_statuses(dms, arns)
    except (ClientError, BotoCoreError) as error:
        _record_error(result, f"DMS: could not read replication task status: {_describe(error)}")
        return

    forward = statuses.get(settings.dms_task_arn)
    forward_report: dict[str, str | None] = {
        "arn": settings.dms_task_arn,
        "status_before": forward,
        "status_after": forward,
    }
    result.replication["forward_task"] = forward_report
    if forward is None:
        _record_error(
            result,
            f"DMS: forward task {settings.dms_task_arn} not found; check DMS_TASK_ARN",
        )
    elif forward not in STOPPABLE_TASK_STATES:
        _record_action(result, f"DMS: forward task is {forward}; nothing to stop")
    elif not request.stop_replication:
        _record_action(result, f"DMS: forward task left {forward} (stop_replication is false)")
    elif request.dry_run:
        _record_action(result, f"DMS: would stop forward task ({forward})")
    else:
        try:
            task = dms.stop_replication_task(ReplicationTaskArn=settings.dms_task_arn)
        except (ClientError, BotoCoreError) as error:
            _record_error(result, f"DMS: could not stop forward task: {_describe(error)}")
        else:
            forward_report["status_after"] = task["ReplicationTask"]["Status"]
            _record_action(
                result,
                f"DMS: stopped forward task (was {forward}, now {forward_report['status_after']})",
            )

    if settings.fallback_task_arn:
        fallback = statuses.get(settings.fallback_task_arn)
        result.replication["fallback_task"] = {
            "arn": settings.fallback_task_arn,
            "status": fallback,
        }
        if fallback is None:
            _record_error(
                result,
                f"DMS: fallback task {settings.fallback_task_arn} not found; "
                "check FALLBACK_TASK_ARN",
            )
        else:
            _record_action(result, f"DMS: fallback task is {fallback}")


def _task_statuses(dms: Any, arns: list[str]) -> dict[str, str]:
    try:
        response = dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": arns}], WithoutSettings=True
        )
    except ClientError as error:
        # DMS answers "no task matches the filter" with a fault rather than an empty list.
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundFault":
            return {}
        raise
    return {task["ReplicationTaskArn"]: task["Status"] for task in response["ReplicationTasks"]}


def _notify(sns: Any, settings: Settings, request: RollbackRequest, result: RollbackResult) -> None:
    # Publishing is the last step, so the status in the message is final (unless publishing
    # itself fails, and then there is no message).
    _settle_status(result)
    message = {
        **result.to_dict(),
        "trigger": request.trigger,
        "hosted_zone_id": settings.hosted_zone_id,
        "record_name": settings.record_name,
        "record_type": settings.record_type,
    }
    subject = f"Payment rollback {result.status.value}: {settings.record_name}"
    try:
        response = sns.publish(
            TopicArn=settings.sns_topic_arn,
            Subject=_ascii_line(subject)[:_SUBJECT_LIMIT],
            Message=json.dumps(message, indent=2, default=str),
        )
    except (ClientError, BotoCoreError) as error:
        _record_error(
            result,
            f"SNS: could not notify {settings.sns_topic_arn}: {_describe(error)}",
        )
    else:
        _record_action(
            result,
            f"SNS: notified {settings.sns_topic_arn} (message {response['MessageId']})",
        )


def _follow_up(result: RollbackResult, step: str, run: Callable[[], None]) -> None:
    """Run a step that comes after the traffic decision. Expected AWS errors are handled inside
    each step; this catches the unexpected too, because an exception escaping here would turn an
    answer of "traffic is on-prem" into a bare Lambda error."""
    try:
        run()
    except Exception as error:  # noqa: BLE001 - see docstring
        logger.exception(f"{step} step failed unexpectedly")
        _record_error(result, f"{step}: unexpected {_describe(error)}")


def _settle_status(result: RollbackResult) -> None:
    if result.errors and result.status in (Status.ROLLED_BACK, Status.ALREADY_ROLLED_BACK):
        result.status = Status.PARTIAL


def _record_action(result: RollbackResult, action: str) -> None:
    logger.info(action)
    result.actions.append(action)


def _record_error(result: RollbackResult, error: str) -> None:
    logger.error(error)
    result.errors.append(error)


def _record_sets_named(route53: Any, settings: Settings) -> Iterator[dict[str, Any]]:
    wanted = (_normalize_name(settings.record_name), settings.record_type)
    pages = route53.get_paginator("list_resource_record_sets").paginate(
        HostedZoneId=settings.hosted_zone_id,
        StartRecordName=settings.record_name,
        StartRecordType=settings.record_type,
    )
    for page in pages:
        for record in page["ResourceRecordSets"]:
            # Listing starts at the name and type and runs on in DNS order: stop at the first
            # record past them instead of reading the rest of the zone.
            if (_normalize_name(record["Name"]), record["Type"]) != wanted:
                return
            yield record


def _normalize_name(name: str) -> str:
    # Route 53 returns names lower-cased, with a trailing dot, and with characters such as "*"
    # as octal escapes ("\052").
    unescaped = re.sub(r"\\(\d{3})", lambda match: chr(int(match.group(1), 8)), name)
    return unescaped.rstrip(".").lower()


def _describe_weights(settings: Settings, weights: dict[str, int]) -> str:
    return (
        f"{settings.onprem_set_identifier}={weights[ONPREM]}/"
        f"{settings.aws_set_identifier}={weights[AWS]}"
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        operation = error.operation_name
        return f"{operation} {details.get('Code', 'error')}: {details.get('Message', error)}"
    if isinstance(error, RollbackError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _ascii_line(text: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
