"""The writer record: which side accepts writes, in one SSM String parameter that only the cutover
controller changes (WRITER_PARAMETER):
{"writer": "onprem"|"aws", "epoch": <+1 per switch>, "changed_at": iso8601, "reason": str}.

Every function reads it with `read_writer` / `parse_writer`, so every reader refuses the same
malformed records (an unknown side, an epoch that is not a non-negative integer)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError, describe_aws_error
from payment_common.sides import SIDES


@dataclass(frozen=True)
class WriterRecord:
    writer: str
    epoch: int
    changed_at: str
    reason: str
    version: int = 0  # the parameter's SSM version

    def to_dict(self) -> dict[str, Any]:
        return {"writer": self.writer, "epoch": self.epoch, "changed_at": self.changed_at, "reason": self.reason}


def read_writer(ssm: Any, name: str) -> WriterRecord:
    """The record in parameter `name`: ConfigurationError when it does not exist or is malformed,
    AwsUnavailable when SSM cannot be read now."""
    try:
        parameter = ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise ConfigurationError(f"writer parameter {name} does not exist: check WRITER_PARAMETER") from error
        raise AwsUnavailable(f"cannot read writer parameter {name}: {describe_aws_error(error)}") from error
    except BotoCoreError as error:
        raise AwsUnavailable(f"cannot read writer parameter {name}: {describe_aws_error(error)}") from error
    return parse_writer(name, parameter["Value"], parameter.get("Version", 0))


def parse_writer(name: str, value: str, version: int = 0) -> WriterRecord:
    try:
        document = json.loads(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"writer parameter {name} is not JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"writer parameter {name} is not a JSON object")
    writer, epoch = document.get("writer"), document.get("epoch", 0)
    if writer not in SIDES:
        raise ConfigurationError(f"writer parameter {name}: key 'writer' must be one of {', '.join(SIDES)}, "
                                 f"got {writer!r}")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ConfigurationError(f"writer parameter {name}: key 'epoch' must be a non-negative integer, "
                                 f"got {epoch!r}")
    return WriterRecord(writer=writer, epoch=epoch, changed_at=str(document.get("changed_at", "")),
                        reason=str(document.get("reason", "")), version=int(version))
