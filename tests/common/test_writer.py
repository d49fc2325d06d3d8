"""The writer record as every function reads it (payment_common.writer)."""

from __future__ import annotations

import boto3
import pytest

from payment_common.aws import client_config
from payment_common.errors import AwsUnavailable, ConfigurationError
from payment_common.writer import WriterRecord, parse_writer, read_writer

ACCEPTED = {
    '{"writer": "aws", "epoch": 7, "changed_at": "2026-01-01T03:00:00+00:00", "reason": "x"}':
        WriterRecord("aws", 7, "2026-01-01T03:00:00+00:00", "x"),
    '{"writer": "onprem"}': WriterRecord("onprem", 0, "", ""),
    '{"writer": "onprem", "epoch": 0, "extra": true}': WriterRecord("onprem", 0, "", ""),
}
REFUSED = {
    '{"writer": "aws", "epoch": true}': "key 'epoch' must be a non-negative integer, got True",
    '{"writer": "aws", "epoch": -1}': "key 'epoch' must be a non-negative integer, got -1",
    '{"writer": "aws", "epoch": 1.5}': "key 'epoch' must be a non-negative integer, got 1.5",
    '{"writer": "aws", "epoch": "3"}': "key 'epoch' must be a non-negative integer, got '3'",
    '{"writer": "AWS", "epoch": 1}': "key 'writer' must be one of onprem, aws, got 'AWS'",
    '{"epoch": 1}': "key 'writer' must be one of onprem, aws, got None",
    '["aws", 1]': "is not a JSON object",
    "aws": "is not JSON",
}


@pytest.mark.parametrize("document", ACCEPTED)
def test_a_writer_record_is_read_with_its_epoch(document):
    assert parse_writer("/writer", document, version=3) == \
        WriterRecord(**{**ACCEPTED[document].__dict__, "version": 3})


@pytest.mark.parametrize("document", REFUSED)
def test_a_malformed_writer_record_is_a_configuration_error_naming_the_key(document):
    with pytest.raises(ConfigurationError, match=f"writer parameter /writer.*{REFUSED[document]}"):
        parse_writer("/writer", document)
    assert not ConfigurationError.retryable, "a malformed record is fixed by a human, not by a retry"


def test_read_writer_tells_a_missing_parameter_from_one_that_cannot_be_read_now(aws, monkeypatch):
    ssm = boto3.client("ssm")
    with pytest.raises(ConfigurationError, match="writer parameter /nowhere does not exist"):
        read_writer(ssm, "/nowhere")
    ssm.put_parameter(Name="/writer", Type="String", Value='{"writer": "aws", "epoch": 2}')
    ssm.put_parameter(Name="/writer", Type="String", Value='{"writer": "onprem", "epoch": 3}', Overwrite=True)
    assert read_writer(ssm, "/writer") == WriterRecord("onprem", 3, "", "", version=2)

    # Nothing listens on the discard port: the connection is refused at once.
    unreachable = boto3.client("ssm", endpoint_url="http://127.0.0.1:9",
                               config=client_config(1, connect_timeout=1, read_timeout=1))
    with pytest.raises(AwsUnavailable, match="cannot read writer parameter /writer") as raised:
        read_writer(unreachable, "/writer")
    assert raised.value.retryable
