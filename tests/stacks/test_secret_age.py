"""The secret age check (lib/constructs/secret_age.py) run by moto's Step Functions interpreter
against moto's Secrets Manager and CloudWatch: a secret that got a new value during the wait
publishes 0, one that kept its value or never had one publishes 1. The wait is seconds here,
`security.secret_max_age_days` days in the stacks."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from lib.constructs.secret_age import DIMENSION, METRIC_NAME, NAMESPACE, WatchedSecret, secret_age_definition

WAIT_SECONDS = 5


@pytest.fixture(scope="module")
def emulator():
    """A moto server of its own that executes state machines; moto's switch and MOTO_PORT are
    put back afterwards (other modules run their own servers)."""
    from moto.core.config import default_user_config

    from lib.local.emulator import Emulator

    saved_switch = dict(default_user_config.get("stepfunctions", {}))
    saved_port = os.environ.get("MOTO_PORT")
    server = Emulator(0, execute_state_machines=True)
    yield server
    server.stop()
    default_user_config["stepfunctions"] = saved_switch
    if saved_port is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = saved_port


def _until(condition, failure: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


def _published(cloudwatch, name: str) -> list[float]:
    now = datetime.datetime.now(datetime.timezone.utc)
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=METRIC_NAME, Dimensions=[{"Name": DIMENSION, "Value": name}],
        StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1), Period=3600,
        Statistics=["Maximum"])
    return [point["Maximum"] for point in answer["Datapoints"]]


def test_only_secrets_without_a_new_value_during_the_wait_are_reported_over_age(emulator):
    secrets, states = emulator.client("secretsmanager"), emulator.client("stepfunctions")
    cloudwatch, iam = emulator.client("cloudwatch"), emulator.client("iam")
    kept = secrets.create_secret(Name="age/kept", SecretString='{"username": "a", "password": "p1"}')
    rotated = secrets.create_secret(Name="age/rotated", SecretString='{"username": "b", "password": "p1"}')
    empty = secrets.create_secret(Name="age/never-set")
    role = iam.create_role(RoleName="secret-age-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = secret_age_definition(
        secrets=[WatchedSecret(answer["Name"], answer["ARN"]) for answer in (kept, rotated, empty)],
        wait_seconds=WAIT_SECONDS)
    machine = states.create_state_machine(name="secret-age-test", definition=json.dumps(definition),
                                          roleArn=role)["stateMachineArn"]

    execution = states.start_execution(stateMachineArn=machine)["executionArn"]
    _until(lambda: any(event["type"] == "WaitStateEntered"
                       for event in states.get_execution_history(executionArn=execution)["events"]),
           "the check never noted the versions and began to wait")
    secrets.put_secret_value(SecretId="age/rotated", SecretString='{"username": "b", "password": "p2"}')
    _until(lambda: states.describe_execution(executionArn=execution)["status"] != "RUNNING", "the check did not finish")

    answer = states.describe_execution(executionArn=execution)
    assert answer["status"] == "SUCCEEDED", answer
    assert _published(cloudwatch, "age/kept") == [1.0], "an unchanged secret must be reported over age"
    assert _published(cloudwatch, "age/rotated") == [0.0], "a secret rotated during the wait is fresh"
    assert _published(cloudwatch, "age/never-set") == [1.0], "a secret never set is reported too"


def test_the_check_never_reads_a_secret_value():
    definition = json.dumps(secret_age_definition(secrets=[WatchedSecret("n", "arn")], wait_seconds=1))
    assert "getSecretValue" not in definition and "listSecretVersionIds" in definition
