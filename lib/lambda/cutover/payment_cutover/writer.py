"""The writer: which side accepts writes, recorded in one SSM String parameter that only the controller
changes: {"writer": "onprem"|"aws", "epoch": <+1 per switch>, "changed_at": iso8601, "reason": str}."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_cutover.errors import ConfigurationError, DatabaseUnavailable, WriterMismatch
from payment_cutover.sides import SIDES

MAX_REASON = 500


@dataclass(frozen=True)
class WriterRecord:
    writer: str
    epoch: int
    changed_at: str
    reason: str
    version: int  # the parameter's SSM version

    def to_dict(self) -> dict:
        return {"writer": self.writer, "epoch": self.epoch, "changed_at": self.changed_at, "reason": self.reason}


def read_writer(ssm: Any, name: str) -> WriterRecord:
    try:
        parameter = ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise ConfigurationError(f"writer parameter {name} does not exist: check WRITER_PARAMETER") from error
        raise DatabaseUnavailable(f"cannot read writer parameter {name}: {error}") from error
    except BotoCoreError as error:
        raise DatabaseUnavailable(f"cannot read writer parameter {name}: {error}") from error
    return parse_writer(name, parameter["Value"], parameter.get("Version", 0))


def parse_writer(name: str, value: str, version: int = 0) -> WriterRecord:
    try:
        document = json.loads(value)
    except ValueError:
        raise ConfigurationError(f"writer parameter {name} is not JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"writer parameter {name} is not a JSON object")
    writer, epoch = document.get("writer"), document.get("epoch", 0)
    if writer not in SIDES:
        raise ConfigurationError(f"writer parameter {name}: key 'writer' must be one of {', '.join(SIDES)}, "
                                 f"got {writer!r}")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ConfigurationError(f"writer parameter {name}: key 'epoch' must be a non-negative integer")
    return WriterRecord(writer=writer, epoch=epoch, changed_at=str(document.get("changed_at", "")),
                        reason=str(document.get("reason", "")), version=int(version))


def set_writer(ssm: Any, name: str, writer: str, reason: str, *, expected: str) -> tuple[WriterRecord, bool]:
    """Make `writer` the writer if the parameter still names `expected`. Idempotent: returns
    (record, False) when it already names `writer`."""
    current = read_writer(ssm, name)
    if current.writer == writer:
        return current, False
    if current.writer != expected:
        raise WriterMismatch(f"writer parameter {name} names {current.writer}, not {expected}")
    document = {"writer": writer, "epoch": current.epoch + 1,
                "changed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason[:MAX_REASON]}
    try:
        version = ssm.put_parameter(Name=name, Value=json.dumps(document), Type="String", Overwrite=True)["Version"]
    except (ClientError, BotoCoreError) as error:
        raise DatabaseUnavailable(f"cannot write writer parameter {name}: {error}") from error
    if version != current.version + 1:
        raise WriterMismatch(f"writer parameter {name} went from version {current.version} to {version} while "
                             "this step wrote it: another writer of the parameter is running; check who")
    return WriterRecord(version=version, **document), True
