"""lib/policy_audit.py's suppressions: a suppression with `only` accepts exactly the items it
names, so a new action in a suppressed policy still fails make scan. (The audit itself runs
parliament in the scan environment, on the local deploy's plans: `make scan`.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.policy_audit import Finding, finding_items, load_suppressions

ROOT = Path(__file__).resolve().parents[1]
STATE_MACHINE_POLICY = "cutover-dev: aws_iam_role_policy.cutover_policy_F21FB918"


def test_items_come_from_a_mismatch_detail_or_a_community_auditor_location():
    detail = [{"action": "states:ListExecutions", "required_format": "arn:*:states:*:*:mapRun:*/*:*"}]
    assert finding_items(detail, {}) == ("states:ListExecutions -> arn:*:states:*:*:mapRun:*/*:*",)
    assert finding_items("", {"actions": ["logs:putresourcepolicy"]}) == ("logs:putresourcepolicy",)
    assert finding_items("", {"line": 3}) == ()


@pytest.mark.parametrize("items, suppressed", [
    (("logs:putresourcepolicy",), True),
    (("logs:putresourcepolicy", "iam:putrolepolicy"), False),  # a new action in the same policy
    ((), False),  # nothing to compare with `only`
])
def test_the_projects_suppressions_accept_only_the_items_they_name(items, suppressed):
    suppressions = load_suppressions(ROOT / ".parliament.yaml")
    finding = Finding(STATE_MACHINE_POLICY, "PERMISSIONS_MANAGEMENT_ACTIONS", "MEDIUM", "", items)
    assert any(suppression.covers(finding) for suppression in suppressions) is suppressed


def test_a_suppression_without_a_reason_or_with_an_empty_only_is_refused(tmp_path):
    for entry in ('- {issue: RESOURCE_MISMATCH, policy: "*", reason: ""}',
                  '- {issue: RESOURCE_MISMATCH, policy: "*", reason: "why", only: []}'):
        path = tmp_path / "suppressions.yaml"
        path.write_text(entry + "\n")
        with pytest.raises(SystemExit, match="entry 0"):
            load_suppressions(path)
