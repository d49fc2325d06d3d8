"""The local environment (config/local.toml) reaches only the emulator on this machine, with every
endpoint a stack can call covered; no other environment carries any of it."""

from __future__ import annotations

import json

import pytest

from lib.config import CONFIG_DIR
from lib.local.limits import EXCLUDED_TYPES
from lib.local.wiring import EMULATED_SERVICES, EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY_VALUE

ENDPOINT = "http://127.0.0.1:4566"
# The provider's endpoint key of the API each resource or data source type calls; None for
# types that call no AWS API (computed locally, or Terraform's own).
SERVICE_BY_PREFIX = (
    ("aws_iam_policy_document", None), ("aws_partition", None), ("aws_elb_service_account", None),
    ("terraform_data", None), ("terraform_remote_state", None),
    ("aws_caller_identity", "sts"), ("aws_acm_", "acm"), ("aws_backup_", "backup"),
    ("aws_cloudwatch_log_", "logs"), ("aws_cloudwatch_event_", "events"), ("aws_cloudwatch_", "cloudwatch"),
    ("aws_dms_", "dms"), ("aws_db_", "rds"), ("aws_rds_", "rds"), ("aws_iam_", "iam"), ("aws_kms_", "kms"),
    ("aws_lambda_", "lambda"), ("aws_lb", "elbv2"), ("aws_route53_", "route53"), ("aws_s3_", "s3"),
    ("aws_secretsmanager_", "secretsmanager"), ("aws_sfn_", "sfn"), ("aws_sns_", "sns"), ("aws_sqs_", "sqs"),
    ("aws_ssm_", "ssm"), ("aws_wafv2_", "wafv2"),
    ("aws_vpc", "ec2"), ("aws_subnet", "ec2"), ("aws_route", "ec2"), ("aws_internet_gateway", "ec2"),
    ("aws_nat_gateway", "ec2"), ("aws_eip", "ec2"), ("aws_flow_log", "ec2"), ("aws_default_security_group", "ec2"),
    ("aws_security_group", "ec2"), ("aws_vpn_gateway", "ec2"), ("aws_ec2_", "ec2"),
)


def service_of(resource_type: str) -> str | None:
    for prefix, service in SERVICE_BY_PREFIX:
        if resource_type.startswith(prefix):
            return service
    raise AssertionError(f"{resource_type}: no known AWS API; add it to SERVICE_BY_PREFIX and EMULATED_SERVICES")


@pytest.fixture(scope="session")
def local(synthesize):
    return synthesize((CONFIG_DIR / "local.toml").read_text())


def _stacks(app, env):
    return {name: stack for name, stack in app.stacks.items() if name.endswith(f"-{env}")}


def test_every_provider_talks_only_to_the_emulator_with_test_credentials(local):
    for name, stack in _stacks(local, "local").items():
        for provider in stack["provider"]["aws"]:
            where = f"{name} provider {provider.get('alias', 'default')}"
            assert (provider["access_key"], provider["secret_key"]) == (EMULATOR_ACCESS_KEY_ID,
                                                                        EMULATOR_SECRET_ACCESS_KEY_VALUE), where
            (endpoints,) = provider["endpoints"]
            assert endpoints == {service: ENDPOINT for service in EMULATED_SERVICES}, where
            assert provider["s3_use_path_style"] is True and provider["max_retries"] <= 3, where


def test_every_resource_type_calls_an_api_the_emulator_endpoints_cover(local):
    for name, stack in _stacks(local, "local").items():
        for block in ("resource", "data"):
            for resource_type in stack.get(block, {}):
                service = service_of(resource_type)
                assert service is None or service in EMULATED_SERVICES, \
                    f"{name}: {resource_type} calls {service}, which has no emulator endpoint: it would reach AWS"


def test_backend_and_every_remote_state_read_use_the_emulator(local):
    for name, stack in _stacks(local, "local").items():
        configs = [stack["terraform"]["backend"]["s3"]]
        configs += [remote["config"] for remote in stack.get("data", {}).get("terraform_remote_state", {}).values()]
        for config in configs:
            assert config["endpoints"] == {"s3": ENDPOINT, "sts": ENDPOINT, "iam": ENDPOINT}, name
            assert config["use_path_style"] is True and config["access_key"] == EMULATOR_ACCESS_KEY_ID, name
            assert config["bucket"] == "payment-migration-tfstate-local", name


def test_local_stacks_accept_the_mirrors_provider_and_pin_terraform(local):
    for name, stack in _stacks(local, "local").items():
        assert stack["terraform"]["required_providers"]["aws"]["version"] == ">= 5.100.0", name
        assert stack["terraform"]["required_version"] == ">= 1.10.0", name


def test_what_moto_cannot_create_is_left_out_locally_and_only_locally(local, synthesized):
    local_types = {t for stack in _stacks(local, "local").values() for t in stack.get("resource", {})}
    dev_types = {t for stack in synthesized.stacks.values() for t in stack.get("resource", {})}
    assert not local_types & EXCLUDED_TYPES
    assert EXCLUDED_TYPES <= dev_types, "an exclusion names a type the stacks do not create"


@pytest.mark.parametrize("environment", ["synthesized", "prod"], ids=["dev", "prod"])
def test_no_other_environment_carries_an_endpoint_or_a_test_credential(request, environment):
    app = request.getfixturevalue(environment)
    assert app.stacks
    for name, stack in app.stacks.items():
        assert not name.endswith("-local"), name
        text = json.dumps(stack)
        assert "127.0.0.1" not in text and "localhost" not in text, f"{name} points at a local endpoint"
        for provider in stack["provider"]["aws"]:
            assert not {"endpoints", "access_key", "secret_key", "skip_credentials_validation"} & set(provider), name
        backend = stack["terraform"]["backend"]["s3"]
        assert not {"endpoints", "access_key", "secret_key", "use_path_style"} & set(backend), name
        assert stack["terraform"]["required_providers"]["aws"]["version"] == "6.25.0", name
