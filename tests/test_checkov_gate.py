"""The checkov gate (lib/checkov_gate.py): a finding passes only when a suppression names its check
and its very resource, deletion protection is never excused where config asks for it, a report
that scanned nothing fails, and checkov's own config files skip nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.checkov_gate import SUPPRESSIONS, Finding, findings, judge, scannable, split_stack
from lib.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {env: load_config(env) for env in ("dev", "prod", "local")}


def _report(*failed: tuple[str, str, str], passed: int = 10, parsing_errors: int = 0, scan: str = "synth") -> dict:
    """A checkov JSON report: a synth scan's files are <stack>/cdk.tf.json, a plan scan's <stack>.json."""
    return {"check_type": "terraform_json",
            "summary": {"passed": passed, "failed": len(failed), "parsing_errors": parsing_errors},
            "results": {"failed_checks": [{"check_id": check, "file_path": f"/{stack}/cdk.tf.json" if scan == "synth"
                                           else f"/{stack}.json",
                                           "resource": resource, "check_name": "a check"}
                                          for check, stack, resource in failed]}}


def _judge(*failed: tuple[str, str, str], scan: str = "synth"):
    found, problems = findings(_report(*failed, scan=scan), scan)
    unjustified, _ = judge(found, scan, CONFIGS.__getitem__)
    return unjustified, problems


@pytest.mark.parametrize("config_file", [".checkov.yaml", ".checkov-plan.yaml"])
def test_checkov_configs_skip_no_check(config_file):
    settings = "\n".join(line.split("#")[0] for line in (ROOT / config_file).read_text().splitlines())
    assert "skip" not in settings.replace("skip-download", "") and "CKV" not in settings, \
        f"{config_file} skips checks globally"


def test_a_suppressed_finding_on_its_resource_passes():
    unjustified, problems = _judge(("CKV_AWS_272", "compute-prod", "resource.api_function_AF620FF3"))
    assert unjustified == [] and problems == []


def test_the_same_check_on_another_resource_fails():
    unjustified, _ = _judge(("CKV_AWS_272", "compute-prod", "resource.new_function_0123ABCD"),
                            ("CKV_AWS_116", "validation-prod", "resource.validator_function_0B08975D"))
    assert [f.resource for f in unjustified] == ["new_function_0123ABCD", "validator_function_0B08975D"]


@pytest.mark.parametrize("check,stack,resource", [
    ("CKV_AWS_139", "database-prod", "resource.cluster"),
    ("CKV_AWS_150", "load-balancer-prod", "resource.alb"),
])
def test_deletion_protection_is_never_excused_in_production(check, stack, resource):
    unjustified, _ = _judge((check, stack, resource))
    assert len(unjustified) == 1, f"{check} suppressed in prod"


def test_deletion_protection_off_is_excused_only_where_config_turns_it_off():
    unjustified, _ = _judge(("CKV_AWS_139", "database-dev", "resource.cluster"),
                            ("CKV_AWS_150", "load-balancer-dev", "resource.alb"))
    assert unjustified == []


def test_plan_only_suppressions_do_not_excuse_the_synthesized_stacks():
    assert _judge(("CKV2_AWS_8", "database-local", "aws_rds_cluster.cluster"), scan="plan")[0] == []
    assert len(_judge(("CKV2_AWS_8", "database-dev", "aws_rds_cluster.cluster"))[0]) == 1


def test_a_report_that_parsed_nothing_or_checked_nothing_fails():
    assert findings(_report(parsing_errors=11, passed=0), "synth")[1]
    assert findings(_report(passed=0), "synth")[1]


def test_plan_reports_name_the_stack_by_file():
    report = {"summary": {"passed": 1, "failed": 1},
              "results": {"failed_checks": [{"check_id": "CKV2_AWS_38", "file_path": "/network-local.json",
                                             "resource": "aws_route53_zone.zone"}]}}
    (finding,) = findings(report, "plan")[0]
    assert finding == Finding("CKV2_AWS_38", "network-local", "network", "local", "zone", "")


def test_every_suppression_names_one_resource_pattern_and_a_reason():
    for suppression in SUPPRESSIONS:
        assert suppression.reason and len(suppression.reason) > 20, suppression
        assert suppression.resource not in ("*", ""), f"{suppression.check} suppressed for every resource"
        split_stack(f"{suppression.area}-dev")


def test_stacks_are_made_parseable_for_checkov_without_changing_resources(tmp_path):
    source = tmp_path / "stacks" / "network-dev"
    source.mkdir(parents=True)
    document = {"terraform": {"required_version": ">= 1.10.0", "backend": {"s3": {"bucket": "b"}}},
                "resource": {"aws_vpc": {"vpc": {"cidr_block": "10.0.0.0/16"}}}}
    (source / "cdk.tf.json").write_text(json.dumps(document))
    (written,) = scannable(tmp_path / "stacks", tmp_path / "out")
    copied = json.loads(written.read_text())
    assert copied["terraform"] == {"backend": {"s3": {"bucket": "b"}}}
    assert copied["resource"] == document["resource"]
