"""Lambda functions on the moto server whose invocations reach real handlers in this process
(lib/local/lambdas.py InProcessLambdas): the Invoke API, a Step Functions `lambda:invoke` Task, an
SNS delivery. Used where a state machine calls the rollback (tests/rollback) and by the operator
CLI's tests, which invoke the functions by name like the CLI does in AWS."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"


class Functions:
    """Creates function records (a placeholder zip: moto never runs it) and registers the handler
    each one runs in this process, with the environment given here."""

    def __init__(self, lambdas: Any) -> None:
        self.lambdas = lambdas  # lib.local.lambdas.InProcessLambdas
        self._role_arn: str | None = None

    def create(self, name: str, handler: Callable[[Any, Any], Any], environment: Mapping[str, str]) -> str:
        if self._role_arn is None:
            self._role_arn = boto3.client("iam").create_role(
                RoleName="payment-migration-test-functions",
                AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
            )["Role"]["Arn"]
        arn = boto3.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=self._role_arn, Handler="index.handler",
            Code={"ZipFile": _placeholder_zip()}, Timeout=900,
            Environment={"Variables": dict(environment)},
        )["FunctionArn"]
        self.lambdas.register(name, handler, environment=dict(environment))
        return arn


@contextmanager
def in_process_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[Functions]:
    """InProcessLambdas installed for the test; moto's invoke and os.environ put back after it."""
    from moto.awslambda import models

    from lib.local.lambdas import InProcessLambdas

    monkeypatch.setattr(os, "environ", os.environ)
    monkeypatch.setattr(models.LambdaFunction, "invoke", models.LambdaFunction.invoke)
    lambdas = InProcessLambdas(account_id=ACCOUNT_ID, region=REGION)
    lambdas.install()
    yield Functions(lambdas)


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    raise RuntimeError('runs in-process')\n")
    return buffer.getvalue()
