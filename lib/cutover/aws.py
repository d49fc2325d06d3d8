"""The AWS calls of the CLI: boto3 clients in the environment's region — default ones for AWS
(AWS_ENDPOINT_URL redirects them), the emulator's endpoint and test credentials for an environment
whose config has an [emulator] section — and the domain errors a command reports instead of a
traceback."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lib.config import Config as AppConfig
from lib.config import EmulatorConfig
from lib.local.wiring import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY_VALUE

# A Lambda invocation is never sent twice: a read timeout retried by botocore would run a rollback
# (idempotent, but not free) a second time. The rollback Lambda runs for at most 240 s.
INVOKE_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5,
                       read_timeout=300)
READ_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30)


class CliError(Exception):
    """Something the operator must see and act on: the message says what and where."""


class FunctionFailed(CliError):
    """The function ran and raised: Lambda's errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str) -> None:
        super().__init__(f"{function} failed: {error_type}: {message}")
        self.error_type = error_type
        self.message = message


class Unreachable(CliError):
    """AWS (or the emulator) could not be reached, or refused who is calling."""


class Aws:
    def __init__(self, region: str, *, emulator: EmulatorConfig | None = None) -> None:
        self.region = region
        self.emulator = emulator

    @classmethod
    def of(cls, config: AppConfig) -> Aws:
        """The AWS of an environment: its region, and its emulator when it is a local one."""
        return cls(config.region, emulator=config.emulator)

    @property
    def where(self) -> str:
        return f"the emulator at {self.emulator.endpoint}" if self.emulator else f"AWS ({self.region})"

    @cached_property
    def _session(self) -> boto3.session.Session:
        # Its own session: credentials are looked up for this command, never reused from another.
        return boto3.session.Session()

    def _client(self, service: str, config: Config) -> Any:
        if self.emulator is None:
            return self._session.client(service, region_name=self.region, config=config)
        return self._session.client(service, region_name=self.region, config=config,
                                    endpoint_url=self.emulator.endpoint, aws_access_key_id=EMULATOR_ACCESS_KEY_ID,
                                    aws_secret_access_key=EMULATOR_SECRET_ACCESS_KEY_VALUE)

    @cached_property
    def awslambda(self) -> Any:
        return self._client("lambda", INVOKE_CONFIG)

    @cached_property
    def stepfunctions(self) -> Any:
        return self._client("stepfunctions", READ_CONFIG)

    @cached_property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch", READ_CONFIG)

    @cached_property
    def _identity(self) -> dict[str, str]:
        try:
            return self._client("sts", READ_CONFIG).get_caller_identity()
        except (ClientError, BotoCoreError) as error:
            raise Unreachable(f"cannot tell which AWS account this is (STS GetCallerIdentity at {self.where}): "
                              f"{error}") from error

    def check_reachable(self) -> None:
        """Unreachable unless the credentials work at the endpoint (one STS call, remembered)."""
        self._identity

    def state_machine_arn(self, name: str) -> str:
        partition = self._identity["Arn"].split(":", 2)[1]
        return f"arn:{partition}:states:{self.region}:{self._identity['Account']}:stateMachine:{name}"

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The function's answer; FunctionFailed when it raised, CliError when it could not be called."""
        try:
            response = self.awslambda.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        except (ClientError, BotoCoreError) as error:
            raise CliError(f"cannot invoke {function}: {error}") from error
        body = response["Payload"].read()
        answer = json.loads(body) if body else None
        if response.get("FunctionError"):
            answer = answer if isinstance(answer, dict) else {}
            raise FunctionFailed(function, str(answer.get("errorType", response["FunctionError"])),
                                 str(answer.get("errorMessage", body.decode(errors="replace"))))
        if not isinstance(answer, dict):
            raise CliError(f"{function} answered {body[:200]!r}, not a JSON object")
        return answer

    def function_environment(self, function: str) -> dict[str, str]:
        try:
            configuration = self.awslambda.get_function_configuration(FunctionName=function)
        except (ClientError, BotoCoreError) as error:
            raise CliError(f"cannot read the configuration of {function}: {error}") from error
        return dict((configuration.get("Environment") or {}).get("Variables") or {})
