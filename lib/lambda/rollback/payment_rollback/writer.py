"""Reading the writer: which side accepts writes, in one SSM String parameter that only the
controller changes (WRITER_PARAMETER):
{"writer": "onprem"|"aws", "epoch": <+1 per switch>, "changed_at": iso8601, "reason": str}.

The format is the cutover controller's (payment_cutover.writer, in another zip); this function only
reads it, with the same rules. A test holds the two readers to the same answers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_rollback.errors import AwsCallError, WriterParameterError, describe_error

ONPREM = "onprem"
AWS = "aws"
WRITERS = (ONPREM, AWS)


@dataclass(frozen=True)
class Writer:
    writer: str
    epoch: int
    changed_at: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_writer(ssm: Any, name: str) -> Writer:
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise WriterParameterError(
                f"writer parameter {name} does not exist: check WRITER_PARAMETER"
            ) from error
        raise AwsCallError(f"cannot read writer parameter {name}: {describe_error(error)}") from error
    except BotoCoreError as error:
        raise AwsCallError(f"cannot read writer parameter {name}: {describe_error(error)}") from error
    return parse_writer(name, value)


def parse_writer(name: str, value: str) -> Writer:
    try:
        document = json.loads(value)
    except ValueError:
        raise WriterParameterError(f"writer parameter {name} is not JSON") from None
    if not isinstance(document, dict):
        raise WriterParameterError(f"writer parameter {name} is not a JSON object")
    writer, epoch = document.get("writer"), document.get("epoch", 0)
    if writer not in WRITERS:
        raise WriterParameterError(
            f"writer parameter {name}: key 'writer' must be one of {', '.join(WRITERS)}, "
            f"got {writer!r}"
        )
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise WriterParameterError(
            f"writer parameter {name}: key 'epoch' must be a non-negative integer, got {epoch!r}"
        )
    return Writer(
        writer=writer,
        epoch=epoch,
        changed_at=str(document.get("changed_at", "")),
        reason=str(document.get("reason", "")),
    )
