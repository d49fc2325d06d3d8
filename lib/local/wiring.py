"""How a stack of the local environment reaches the emulator: endpoint, test credentials,
path-style S3 and few retries, for every provider, the S3 backend and (through the backend's
settings, which cdktf copies) every `terraform_remote_state` that reads it."""

from __future__ import annotations

from typing import Any

from lib.config import EmulatorConfig

# moto accepts any credentials; these are its documented test values, not a secret anywhere.
EMULATOR_ACCESS_KEY_ID = "test"
EMULATOR_SECRET_ACCESS_KEY_VALUE = "test"
# The provider retries a 500 for over ten minutes by default; against an emulator a 500 is a
# missing feature, not a transient fault.
EMULATOR_MAX_RETRIES = 2
# The provider's endpoint keys (canonical names) of every AWS API the stacks use. A test checks
# that each resource and data source type of the local stacks maps to one of them.
EMULATED_SERVICES = (
    "acm", "backup", "cloudwatch", "dms", "ec2", "elbv2", "events", "iam", "kms", "lambda", "logs", "rds",
    "route53", "s3", "secretsmanager", "sfn", "sns", "sqs", "ssm", "sts", "wafv2",
)
# The mirror's provider release is older than the one users deploy with; the local stacks accept it.
EMULATOR_PROVIDER_CONSTRAINT = ">= 5.100.0"


def provider_settings(emulator: EmulatorConfig) -> dict[str, Any]:
    """Keyword arguments for every AwsProvider of a local stack."""
    from lib.cdk.aws.provider import AwsProviderEndpoints

    endpoint = emulator.endpoint
    return dict(
        access_key=EMULATOR_ACCESS_KEY_ID,
        secret_key=EMULATOR_SECRET_ACCESS_KEY_VALUE,
        skip_credentials_validation=True,
        skip_metadata_api_check="true",
        skip_region_validation=True,
        s3_use_path_style=True,
        max_retries=EMULATOR_MAX_RETRIES,
        endpoints=[AwsProviderEndpoints(**{_binding_name(service): endpoint for service in EMULATED_SERVICES})],
    )


def backend_settings(emulator: EmulatorConfig) -> dict[str, Any]:
    """Keyword arguments for the S3 backend (and so for every remote-state read of it)."""
    endpoint = emulator.endpoint
    return dict(
        access_key=EMULATOR_ACCESS_KEY_ID,
        secret_key=EMULATOR_SECRET_ACCESS_KEY_VALUE,
        endpoints={"s3": endpoint, "sts": endpoint, "iam": endpoint},
        use_path_style=True,
        skip_credentials_validation=True,
        skip_metadata_api_check=True,
        skip_region_validation=True,
        skip_requesting_account_id=True,
        max_retries=EMULATOR_MAX_RETRIES,
    )


def _binding_name(service: str) -> str:
    return "lambda_" if service == "lambda" else service
