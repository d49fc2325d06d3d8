"""Changing the writer: only the controller does (the record and how every function reads it:
payment_common.writer)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, describe_aws_error
from payment_common.writer import WriterRecord, read_writer
from payment_cutover.errors import WriterMismatch

MAX_REASON = 500


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
        raise AwsUnavailable(f"cannot write writer parameter {name}: {describe_aws_error(error)}") from error
    if version != current.version + 1:
        raise WriterMismatch(f"writer parameter {name} went from version {current.version} to {version} while "
                             "this step wrote it: another writer of the parameter is running; check who")
    return WriterRecord(version=version, **document), True
