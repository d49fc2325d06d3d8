"""The weighted record pair (on-prem vs AWS) and the one way its weights change: both members in
one Route 53 ChangeBatch, so there is never a moment where both or neither side has weight.

Shared by the rollback (which sets on-prem 100 / AWS 0) and the controller's traffic steps (which
set any AWS weight and on-prem the rest)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError, MigrationError
from payment_common.sides import AWS, ONPREM
from payment_rollback import SERVICE_NAME
from payment_rollback.environment import required
from payment_rollback.errors import (
    RecordSetNotFoundError,
    RecordSetNotWeightedError,
    TrafficShiftError,
    describe_error,
)

logger = Logger(service=SERVICE_NAME, child=True)

# The project's weights are percentages (config validates 0-100): on-prem gets what AWS does not.
FULL_WEIGHT = 100

RECORD_ENVIRONMENT = (
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "RECORD_TYPE",
    "ONPREM_SET_IDENTIFIER",
    "AWS_SET_IDENTIFIER",
)
_COMMENT_LIMIT = 256  # Route 53 ChangeBatch.Comment


def split_weights(aws_weight: int) -> dict[str, int]:
    return {ONPREM: FULL_WEIGHT - aws_weight, AWS: aws_weight}


@dataclass(frozen=True)
class WeightedRecord:
    """Where the weighted pair lives, as the routing stack created it."""

    hosted_zone_id: str
    record_name: str
    record_type: str
    onprem_set_identifier: str
    aws_set_identifier: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> WeightedRecord:
        values = required(environ, RECORD_ENVIRONMENT)
        if values["ONPREM_SET_IDENTIFIER"] == values["AWS_SET_IDENTIFIER"]:
            raise ConfigurationError(
                "ONPREM_SET_IDENTIFIER and AWS_SET_IDENTIFIER are both "
                f"{values['ONPREM_SET_IDENTIFIER']!r}: they must name the two different members "
                "of the weighted record set"
            )
        return cls(
            # Route 53 hands out zone ids both bare and as "/hostedzone/<id>"; the API takes both,
            # but messages and comparisons read better with one form.
            hosted_zone_id=values["HOSTED_ZONE_ID"].removeprefix("/hostedzone/"),
            record_name=values["RECORD_NAME"],
            record_type=values["RECORD_TYPE"].upper(),
            onprem_set_identifier=values["ONPREM_SET_IDENTIFIER"],
            aws_set_identifier=values["AWS_SET_IDENTIFIER"],
        )

    def describe(self, weights: Mapping[str, int]) -> str:
        return (
            f"{self.onprem_set_identifier}={weights[ONPREM]}/"
            f"{self.aws_set_identifier}={weights[AWS]}"
        )

    @property
    def where(self) -> str:
        return f"{self.record_name} {self.record_type} in hosted zone {self.hosted_zone_id}"


@dataclass(frozen=True)
class WeightedPair:
    """The two members of the weighted record set, exactly as Route 53 returned them."""

    onprem: dict[str, Any]
    aws: dict[str, Any]

    @property
    def weights(self) -> dict[str, int]:
        return {ONPREM: self.onprem["Weight"], AWS: self.aws["Weight"]}


@dataclass
class WeightChange:
    """What `set_weights` found and did. `weights_after` is what Route 53 shows afterwards (for a
    dry run: what it would show); `change_id` is set when this call submitted a change."""

    weights_before: dict[str, int]
    weights_after: dict[str, int]
    changed: bool = False
    change_id: str | None = None
    planned_change: dict[str, Any] | None = None
    actions: list[str] = field(default_factory=list)


def set_weights(
    route53: Any,
    record: WeightedRecord,
    target: Mapping[str, int],
    comment: str,
    *,
    dry_run: bool = False,
) -> WeightChange:
    """Give both members their `target` weight in one ChangeBatch; nothing when they have it.

    Raises RecordSetNotFoundError / RecordSetNotWeightedError when the pair is not there,
    AwsUnavailable when it cannot be read, TrafficShiftError when the change was not applied.
    A change whose response was lost is read back: if the records show the target, it counts."""
    target = dict(target)
    pair = read_weighted_pair(route53, record)
    change = WeightChange(weights_before=pair.weights, weights_after=pair.weights)
    described, wanted = record.describe(pair.weights), record.describe(target)
    if pair.weights == target:
        _act(change, f"Route 53: {described} already; no change submitted")
        return change

    change_batch = build_change_batch(pair, target, comment)
    if dry_run:
        change.planned_change = change_batch
        change.weights_after = target
        _act(change, f"Route 53: would change {described} to {wanted} in one batch")
        return change

    try:
        response = route53.change_resource_record_sets(
            HostedZoneId=record.hosted_zone_id, ChangeBatch=change_batch
        )
    except (ClientError, BotoCoreError) as error:
        # A timed-out call may still have been applied: look before reporting a failure.
        change.weights_after = _read_back_weights(route53, record, error)
        if change.weights_after != target:
            raise TrafficShiftError(
                f"ChangeResourceRecordSets failed: {describe_error(error)}; the weights are still "
                f"{record.describe(change.weights_after)}"
            ) from error
        _act(
            change,
            f"Route 53: ChangeResourceRecordSets reported {describe_error(error)}, but the "
            f"records now show {wanted}: the change was applied",
        )
    else:
        info = response["ChangeInfo"]
        change.change_id = info["Id"].removeprefix("/change/")
        change.weights_after = target
        _act(
            change,
            f"Route 53: changed {described} to {wanted} in one batch "
            f"(change {change.change_id}, {info['Status']})",
        )
    change.changed = True
    return change


def read_weighted_pair(route53: Any, record: WeightedRecord) -> WeightedPair:
    """Both members of RECORD_NAME/RECORD_TYPE, found by their set identifiers."""
    roles = {record.onprem_set_identifier: ONPREM, record.aws_set_identifier: AWS}
    members: dict[str, dict[str, Any]] = {}
    other_identifiers: list[str] = []
    try:
        for member in _record_sets_named(route53, record):
            identifier = member.get("SetIdentifier")
            if identifier in roles:
                members[roles[identifier]] = member
            else:
                other_identifiers.append(
                    repr(identifier) if identifier else "a record without set identifier"
                )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchHostedZone":
            raise RecordSetNotFoundError(
                f"{describe_error(error)}; check HOSTED_ZONE_ID against the routing stack"
            ) from error
        raise AwsUnavailable(describe_error(error)) from error
    except BotoCoreError as error:
        raise AwsUnavailable(f"ListResourceRecordSets: {describe_error(error)}") from error

    missing = [identifier for identifier, role in roles.items() if role not in members]
    if missing:
        found = ", ".join(other_identifiers) if other_identifiers else "no record at all"
        raise RecordSetNotFoundError(
            f"weighted record {record.where} has no member with set identifier "
            f"{' or '.join(repr(m) for m in missing)} (found: {found}); check RECORD_NAME, "
            "RECORD_TYPE, ONPREM_SET_IDENTIFIER and AWS_SET_IDENTIFIER against the routing stack"
        )
    for member in members.values():
        if not isinstance(member.get("Weight"), int):
            raise RecordSetNotWeightedError(
                f"member {member['SetIdentifier']!r} of {record.where} has no Weight: it is not "
                "a weighted record, so there is no weight to shift"
            )
    return WeightedPair(onprem=members[ONPREM], aws=members[AWS])


def build_change_batch(
    pair: WeightedPair, target: Mapping[str, int], comment: str
) -> dict[str, Any]:
    """UPSERT both members in one batch. Each member is resubmitted as read (target, TTL, alias
    settings) with only its weight changed."""
    return {
        "Comment": comment[:_COMMENT_LIMIT],
        "Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {**pair.onprem, "Weight": target[ONPREM]}},
            {"Action": "UPSERT", "ResourceRecordSet": {**pair.aws, "Weight": target[AWS]}},
        ],
    }


def _read_back_weights(route53: Any, record: WeightedRecord, error: Exception) -> dict[str, int]:
    try:
        return read_weighted_pair(route53, record).weights
    except MigrationError as reread_error:
        raise TrafficShiftError(
            f"ChangeResourceRecordSets failed ({describe_error(error)}) and the records could "
            f"not be read back ({describe_error(reread_error)}); the weights are unknown: list "
            "the record set before trying again"
        ) from error


def _record_sets_named(route53: Any, record: WeightedRecord) -> Iterator[dict[str, Any]]:
    wanted = (_normalize_name(record.record_name), record.record_type)
    pages = route53.get_paginator("list_resource_record_sets").paginate(
        HostedZoneId=record.hosted_zone_id,
        StartRecordName=record.record_name,
        StartRecordType=record.record_type,
    )
    for page in pages:
        for member in page["ResourceRecordSets"]:
            # Listing starts at the name and type and runs on in DNS order: stop at the first
            # record past them instead of reading the rest of the zone.
            if (_normalize_name(member["Name"]), member["Type"]) != wanted:
                return
            yield member


def _normalize_name(name: str) -> str:
    # Route 53 returns names lower-cased, with a trailing dot, and with characters such as "*"
    # as octal escapes ("\052").
    unescaped = re.sub(r"\\(\d{3})", lambda match: chr(int(match.group(1), 8)), name)
    return unescaped.rstrip(".").lower()


def _act(change: WeightChange, action: str) -> None:
    logger.info(action)
    change.actions.append(action)
