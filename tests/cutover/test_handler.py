"""The step Lambda end to end: events through lambda_handler, secrets and the writer parameter in moto,
two real PostgreSQL servers with the logical replication driver."""

from __future__ import annotations

import json

import pytest

from payment_common.errors import ConfigurationError
from payment_cutover.errors import InvalidEvent, WriterMismatch
from tests.cutover.conftest import invoke
from tests.support.handlers import LambdaContext

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")




@pytest.mark.parametrize(("event", "named"), [
    ({}, "'step'"),
    ({"step": "jump", "from": "onprem", "to": "aws"}, "'step'"),
    ({"step": "fence", "from": "onprem"}, "'to'"),
    ({"step": "fence", "from": "onprem", "to": "onprem"}, "'from' and 'to'"),
    ({"step": "fence", "from": "on-prem", "to": "aws"}, "'from'"),
    ({"step": "fence", "from": "onprem", "to": "aws", "force": True}, "force"),
    ({"step": "wait_replication", "from": "onprem", "to": "aws", "timeout_seconds": "5"}, "'timeout_seconds'"),
    ({"step": "wait_replication", "from": "onprem", "to": "aws", "timeout_seconds": 0}, "'timeout_seconds'"),
    ({"step": "set_writer", "from": "onprem", "to": "aws", "reason": 1}, "'reason'"),
    ({"step": "status", "from": "onprem"}, "from"),
    ({"step": "publish_metrics", "to": "aws"}, "to"),
])
def test_a_bad_event_is_refused_naming_the_key(handler, event, named):
    with pytest.raises(InvalidEvent, match=named):
        handler.lambda_handler(event, LambdaContext())


@pytest.mark.parametrize("setting", ["WRITER_PARAMETER", "REPLICATION_DRIVER", "TABLES", "ONPREM_DB_HOST",
                                     "AURORA_DB_SECRET_ARN", "FORWARD_SLOT_NAME", "AURORA_DB_REPLICATION_SECRET_ARN"])
def test_a_missing_setting_is_named_and_nothing_changes(handler, step_env, monkeypatch, pair, setting):
    monkeypatch.delenv(setting)
    with pytest.raises(ConfigurationError, match=setting):
        invoke(handler, step="fence", **{"from": "onprem", "to": "aws"})
    assert pair.onprem.scalar("SELECT count(*) FROM pg_db_role_setting") == 1  # payment_validator's only


def test_the_dms_driver_needs_its_three_task_arns(handler, step_env, monkeypatch):
    monkeypatch.setenv("REPLICATION_DRIVER", "dms")
    monkeypatch.setenv("DMS_FORWARD_TASK_ARN", "arn:aws:dms:eu-west-1:123456789012:task:forward")
    with pytest.raises(ConfigurationError, match="DMS_FALLBACK_TASK_ARN"):
        invoke(handler, step="status")
    monkeypatch.setenv("DMS_FALLBACK_TASK_ARN", "arn:aws:dms:eu-west-1:123456789012:task:fallback")
    with pytest.raises(ConfigurationError, match="DMS_FORWARD_CDC_TASK_ARN"):
        invoke(handler, step="status")


def test_cutover_and_rollback_through_the_handler(handler, step_env, pair, customer, capsys):
    results = {}
    for source, target in (("onprem", "aws"), ("aws", "onprem")):
        sides = {"from": source, "to": target}
        for step in ("preflight", "checkpoint", "catch_up", "fence", "wait_replication", "validate_changes",
                     "advance_sequences",
                     "switch_replication", "prove_fence", "open", "set_writer"):
            options = {"live_validation": "PASSED"} if step == "validate_changes" else {}
            results[(source, step)] = invoke(handler, step=step, execution="test", **sides, **options)
        fenced = results[(source, "validate_changes")]
        assert (fenced["status"], fenced["scope"]["mode"]) == ("PASSED", "changes"), fenced["message"]
    # Captured: pytest shows it with a failure (or with -s), never inside its progress line.
    for key in (("onprem", "preflight"), ("onprem", "fence"), ("onprem", "wait_replication"),
                ("onprem", "advance_sequences"), ("onprem", "switch_replication"), ("onprem", "open"),
                ("onprem", "set_writer")):
        print(f"\n{key[1]} → {json.dumps(results[key], default=str)[:600]}")
    assert results[("onprem", "set_writer")]["writer"]["writer"] == "aws"
    assert results[("aws", "set_writer")]["writer"] == {**results[("aws", "set_writer")]["writer"],
                                                         "writer": "onprem", "epoch": 2}
    status = invoke(handler, step="status")
    assert status["fence"] == {"onprem": {"payment_app": "open"}, "aws": {"payment_app": "fenced"}}
    assert status["replication"]["forward"]["status"] == "running"
    with pytest.raises(WriterMismatch):
        invoke(handler, step="fence", **{"from": "aws", "to": "onprem"})
    again = invoke(handler, step="preflight", **{"from": "aws", "to": "onprem"})
    assert again["already_done"] is True


def test_the_scheduled_validation_reports_as_the_validation_lambda_does(handler, step_env, pair, customer, capsys):
    capsys.readouterr()
    result = invoke(handler, step="scheduled_validation")

    assert (result["status"], result["scope"]["mode"], result["writer"]) == ("PASSED", "full", "onprem"), result
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    failed = [record for record in emitted if "ValidationFailed" in record]
    assert len(failed) == 1, emitted
    assert failed[0]["ValidationFailed"] in (0, 0.0, [0], [0.0]), failed
    assert failed[0]["service"] == "validation", "the validation-failed alarm's dimension"
