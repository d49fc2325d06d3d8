"""parliament on every IAM identity policy of the local deploy's plans, with their ARNs resolved.

    python -m lib.policy_audit [build/deploy-local/plans] [--suppressions .parliament.yaml]

The policies are taken from `terraform show -json` of each stack's plan after the local apply
(lib/local/deploy.py writes them), where every reference is a real ARN. Runs in the scan
environment (`make scan`), which has parliament; it needs nothing of this project but the plans.

Each finding fails the audit unless .parliament.yaml suppresses it, like a checkov skip: the
finding's issue, the policies it applies to (fnmatch over "<stack>: <resource address>"), the
reason it is safe there and, optionally, `only`: the finding's items it accepts (for
PERMISSIONS_MANAGEMENT_ACTIONS the actions, e.g. "logs:putresourcepolicy"; for RESOURCE_MISMATCH
"<action> -> <required ARN format>"). With `only`, a finding that carries any other item stays open:
a new action in the same policy is not hidden by an old reason.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PLANS = Path("build/deploy-local/plans")
DEFAULT_SUPPRESSIONS = Path(".parliament.yaml")


@dataclass(frozen=True)
class Finding:
    policy: str  # "<stack>: <address>"
    issue: str
    severity: str
    detail: str
    items: tuple[str, ...] = ()  # what the finding is about, as a suppression's `only` names it


@dataclass(frozen=True)
class Suppression:
    issue: str
    policy: str
    reason: str
    only: tuple[str, ...] | None = None

    def covers(self, finding: Finding) -> bool:
        return (self.issue == finding.issue and fnmatch.fnmatchcase(finding.policy, self.policy)
                and (self.only is None or (bool(finding.items) and set(finding.items) <= set(self.only))))


def finding_items(detail: object, location: object) -> tuple[str, ...]:
    """RESOURCE_MISMATCH details are [{action, required_format}]; the community auditors (e.g.
    PERMISSIONS_MANAGEMENT_ACTIONS) name their actions in the location instead."""
    if isinstance(detail, list) and all(isinstance(item, dict) and "action" in item for item in detail):
        return tuple(sorted(f"{item['action']} -> {item.get('required_format', '')}" for item in detail))
    if isinstance(location, dict) and isinstance(location.get("actions"), list):
        return tuple(sorted(str(action) for action in location["actions"]))
    return ()


def identity_policies(plan: dict) -> Iterator[tuple[str, str]]:
    """(address, policy JSON) of every identity policy in the plan's planned values."""

    def resources(module: dict) -> Iterator[dict]:
        yield from module.get("resources", [])
        for child in module.get("child_modules", []):
            yield from resources(child)

    for resource in resources(plan.get("planned_values", {}).get("root_module", {})):
        values, address = resource.get("values") or {}, resource["address"]
        if resource["type"] in ("aws_iam_role_policy", "aws_iam_policy", "aws_iam_user_policy",
                                "aws_iam_group_policy") and values.get("policy"):
            yield address, values["policy"]
        for inline in values.get("inline_policy") or [] if resource["type"] == "aws_iam_role" else []:
            if inline.get("policy"):
                yield f"{address}.inline_policy[{inline.get('name')}]", inline["policy"]


def audit(plans_dir: Path) -> tuple[list[Finding], int]:
    import parliament
    from parliament import analyze_policy_string, enhance_finding

    # The community auditors' findings are described in their own config (as parliament's CLI loads it).
    parliament.override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")

    findings, count = [], 0
    for path in sorted(plans_dir.glob("*.json")):
        stack = path.stem
        for address, policy in identity_policies(json.loads(path.read_text())):
            count += 1
            analyzed = analyze_policy_string(policy, include_community_auditors=True)
            for finding in analyzed.findings:
                finding = enhance_finding(finding)
                items = finding_items(finding.detail, finding.location)
                findings.append(Finding(f"{stack}: {address}", finding.issue, finding.severity,
                                        json.dumps(finding.detail or list(items), default=str)[:300], items))
    return findings, count


def load_suppressions(path: Path) -> list[Suppression]:
    import yaml

    entries = yaml.safe_load(path.read_text()) if path.is_file() else None
    suppressions = []
    for index, entry in enumerate(entries or []):
        missing = {"issue", "policy", "reason"} - set(entry)
        if missing or not str(entry.get("reason", "")).strip():
            raise SystemExit(f"{path}: entry {index} needs issue, policy and a reason (missing: {sorted(missing)})")
        only = entry.get("only")
        if only is not None and (not isinstance(only, list) or not only):
            raise SystemExit(f"{path}: entry {index}: `only` must be a non-empty list of the items it accepts")
        suppressions.append(Suppression(entry["issue"], entry["policy"], entry["reason"],
                                        tuple(str(item) for item in only) if only is not None else None))
    return suppressions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.policy_audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("plans", nargs="?", type=Path, default=DEFAULT_PLANS)
    parser.add_argument("--suppressions", type=Path, default=DEFAULT_SUPPRESSIONS)
    args = parser.parse_args(argv)
    if not any(args.plans.glob("*.json")):
        print(f"error: no plans in {args.plans}: run `make deploy-local` first", file=sys.stderr)
        return 1
    suppressions = load_suppressions(args.suppressions)
    findings, count = audit(args.plans)
    open_findings = [f for f in findings if not any(s.covers(f) for s in suppressions)]
    unused = [s for s in suppressions if not any(s.covers(f) for f in findings)]
    print(f"==> parliament: {count} identity policies, {len(findings)} finding(s), "
          f"{len(findings) - len(open_findings)} suppressed with a reason")
    for finding in open_findings:
        print(f"    {finding.severity} {finding.issue} in {finding.policy}: {finding.detail}")
    for suppression in unused:
        print(f"    note: suppression {suppression.issue} for {suppression.policy!r} matched nothing; remove it")
    return 1 if open_findings else 0


if __name__ == "__main__":
    sys.exit(main())
