"""lib/names.py: the names tools look resources up by are the names the stacks give, and reading
them loads no provider bindings."""

from __future__ import annotations

import subprocess
import sys

from lib.names import SIDES, Names, replication_slot_name

NAMES = Names("dev")


def _named(synthesized, resource_type: str, attribute: str) -> set[str]:
    return {resource[attribute] for stack in synthesized.stacks.values()
            for resource in stack.get("resource", {}).get(resource_type, {}).values()}


def test_the_functions_and_state_machines_tools_look_up_are_the_stacks(synthesized):
    functions = _named(synthesized, "aws_lambda_function", "function_name")
    machines = _named(synthesized, "aws_sfn_state_machine", "name")

    assert set(NAMES.functions) | {NAMES.validation_scheduler} <= functions
    assert set(NAMES.machines.values()) | {NAMES.validation} <= machines


def test_alarms_topic_parameter_and_secrets_are_named_here(synthesized):
    assert NAMES.composite_alarm in _named(synthesized, "aws_cloudwatch_composite_alarm", "alarm_name")
    assert NAMES.child_alarm in _named(synthesized, "aws_cloudwatch_metric_alarm", "alarm_name")
    assert NAMES.rollback_topic in _named(synthesized, "aws_sns_topic", "name")
    assert {NAMES.writer_parameter} == _named(synthesized, "aws_ssm_parameter", "name")
    secrets = _named(synthesized, "aws_secretsmanager_secret", "name")
    assert {NAMES.secret(side, "payment_controller") for side in SIDES} <= secrets


def test_replication_slots_carry_the_environment_without_hyphens():
    assert replication_slot_name("pre-prod", "forward") == "payment_pre_prod_forward"


def test_reading_a_name_loads_no_provider_bindings():
    """The CLI and the rehearsal import this module; the bindings take seconds to load."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, lib.names; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    heavy = [name for name in loaded if name.split(".")[0] in ("cdktf", "constructs", "jsii", "cdktf_cdktf_provider_aws")]
    assert not heavy, f"lib.names loads {heavy}"
