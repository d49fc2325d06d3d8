"""The checkov gate of `make scan`: every finding is either fixed or suppressed for exactly the
resource that may fail it, with the reason, from one declared list (SUPPRESSIONS).

Why a gate around checkov and not checkov's own skips: checkov 3.3.30 honours no per-resource
suppression in Terraform JSON. Its `terraform_json` runner scans every resource with an empty skip
list (no `checkov:skip=` comment is read, in a `"//"` key or anywhere else), and a plan has no
comments at all; `skip-check` in its config file skips a check for every resource, present and
future. So checkov runs with no skips and writes its JSON report, and this module decides:

    python -m lib.checkov_gate prepare OUT SYNTH_DIR…   copies each stack's cdk.tf.json for checkov
    python -m lib.checkov_gate check synth|plan REPORT   fails on any finding not suppressed here

`check` also fails when checkov could not parse a file or checked nothing, so a scan can never
pass by scanning nothing (which `prepare` exists to prevent: see `scannable`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lib.config import Config, load_config

AREAS = ("account", "network", "security", "database", "compute", "load-balancer", "migration", "routing",
         "monitoring", "validation", "cutover")
SCANS = ("synth", "plan")
# The checks that deletion protection fails: never suppressed where config turns it on.
DELETION_PROTECTION_CHECKS = {"CKV_AWS_139": "database", "CKV_AWS_150": "load_balancer"}


@dataclass(frozen=True)
class Suppression:
    """`check` may fail on the resources of stack `area` whose logical id matches `resource` (an
    fnmatch pattern: cdktf suffixes nested constructs' ids with a hash), for `reason`; only in
    `scans`, and only in environments whose config satisfies `applies`."""

    check: str
    area: str
    resource: str
    reason: str
    scans: tuple[str, ...] = SCANS
    applies: Callable[[Config], bool] = lambda config: True

    def matches(self, finding: Finding, config: Config, scan: str) -> bool:
        return (finding.check == self.check and finding.area == self.area and scan in self.scans
                and fnmatch.fnmatchcase(finding.resource, self.resource) and self.applies(config))


FUNCTIONS = ("api_function_*", "validator_function_*", "rollback_function_*", "steps_function_*",
             "traffic_function_*")
ACCESS_LOGS_BUCKET = "access-logs"

SUPPRESSIONS: tuple[Suppression, ...] = (
    # --- checks that see one stack at a time and miss what another stack does ---
    *(Suppression("CKV2_AWS_5", "security", group,
                  "Security groups live in the security stack and are attached in the database, compute, "
                  "load-balancer, migration, validation and cutover stacks; checkov reads one stack at a time "
                  "and cannot see the attachment (the endpoints group, attached here, passes)")
      for group in ("alb", "lambda", "validation", "controller", "database", "dms")),
    Suppression("CKV2_AWS_76", "load-balancer", "alb",
                "The ALB is associated with the security stack's web ACL, whose rules include "
                "AWSManagedRulesKnownBadInputsRuleSet (the Log4j rules; CKV_AWS_192 passes there)"),
    Suppression("CKV2_AWS_39", "network", "zone",
                "Query logging of the zone is an aws_route53_query_log in the routing stack (which also "
                "covers an existing zone); the zone itself is created in the network stack"),
    # --- a deliberate design, one resource at a time ---
    *(Suppression("CKV_AWS_272", area, function,
                  "Code signing needs zips signed by an AWS Signer job from S3; the bundles are built "
                  "reproducibly by make synth and pinned by source_code_hash in the plan a reviewer approves")
      for area, function in (("compute", "api_function_*"), ("validation", "validator_function_*"),
                             ("cutover", "rollback_function_*"), ("cutover", "steps_function_*"),
                             ("cutover", "traffic_function_*"), ("cutover", "validation-scheduler_function_*"))),
    Suppression("CKV_AWS_116", "compute", "api_function_*",
                "The ALB invokes the payment API synchronously and returns its errors to the client: nothing "
                "could ever reach a dead-letter queue"),
    *(Suppression("CKV_AWS_116", "cutover", function,
                  "Step Functions invokes it synchronously and handles its errors (Retry/Catch in the state "
                  "machine); the metrics schedule's invocations are retried by the next minute's")
      for function in ("steps_function_*", "traffic_function_*")),
    Suppression("CKV_AWS_116", "cutover", "validation-scheduler_function_*",
                "Invoked by its schedule: a failed run is what the next scheduled run repeats, and it is "
                "alarmed already (its ValidationFailed metric and the function's errors), so a dead-letter "
                "queue would hold nothing anyone acts on"),
    *(Suppression("CKV_AWS_117", area, function,
                  "Outside the VPC on purpose: moving traffic back must work when the VPC, its routes or its "
                  "endpoints are what failed; it calls only Route 53, SSM, Step Functions, CloudWatch and SNS")
      for area, function in (("cutover", "rollback_function_*"), ("cutover", "traffic_function_*"))),
    *(Suppression("CKV2_AWS_57", "security", f"database-secrets_{side}-{role}_*",
                  "Rotated by the operator (README, 'Rotating a database credential'); the security stack's "
                  "daily check alarms when the value is older than security.secret_max_age_days")
      for side in ("onprem", "aws")
      for role in ("payment_app", "payment_validator", "payment_controller", "dms_source", "dms_target")),
    Suppression("CKV2_AWS_34", "security", "writer",
                "The writer parameter holds no secret (a side's name, an epoch, a time, a reason) and must "
                "stay a String for tests/test_no_secrets.py, which refuses any SecureString in state"),
    *(Suppression("CKV_AWS_319", "monitoring", f"dms-fallback-latency-{end}",
                  "The fallback direction's lag alarms are created with actions off (the task is not "
                  "running); the cutover controller turns them on when it starts that direction")
      for end in ("source", "target")),
    *(Suppression("CKV_AWS_260", "security", rule,
                  "Port 80 on the ALB only answers with a 301 to HTTPS (the listener has no other action)")
      for rule in ("alb-in-80", "alb")),
    Suppression("CKV_AWS_145", "load-balancer", ACCESS_LOGS_BUCKET,
                "ELB writes access logs only to buckets encrypted with S3-managed keys (SSE-S3)"),
    Suppression("CKV_AWS_18", "load-balancer", ACCESS_LOGS_BUCKET,
                "The access-log bucket is itself the log destination; logging it would need a bucket for "
                "logs of logs"),
    Suppression("CKV_AWS_144", "load-balancer", ACCESS_LOGS_BUCKET,
                "Access logs expire after load_balancer.access_log_expiration_days; diagnostics, not records "
                "that need a second region"),
    Suppression("CKV2_AWS_62", "load-balancer", ACCESS_LOGS_BUCKET,
                "Nothing consumes access-log object events"),
    Suppression("CKV2_AWS_23", "routing", "weighted-onprem",
                "The on-prem member of the weighted record points at the on-prem application's own "
                "addresses, which are not AWS resources",
                applies=lambda config: bool(config.onprem.app_ip_addresses)),
    # --- deletion protection: only where config turns it off (never production) ---
    Suppression("CKV_AWS_139", "database", "cluster",
                "database.deletion_protection = false in this environment's config (dev, local)",
                applies=lambda config: not config.database.deletion_protection),
    Suppression("CKV_AWS_150", "load-balancer", "alb",
                "load_balancer.deletion_protection = false in this environment's config (dev, local)",
                applies=lambda config: not config.load_balancer.deletion_protection),
    # --- the local deploy's plans: what moto cannot create is left out (lib/local/limits.py) ---
    Suppression("CKV2_AWS_8", "database", "cluster",
                "The AWS Backup selection of the cluster is left out locally: moto has no CreateBackupSelection "
                "(the synthesized stacks keep it, which the synth scan checks)", scans=("plan",)),
    Suppression("CKV2_AWS_38", "network", "zone",
                "DNSSEC signing of the created zone is left out locally: moto has no CreateKeySigningKey "
                "(the synthesized stacks keep it, which the synth scan checks)", scans=("plan",)),
)


@dataclass(frozen=True)
class Finding:
    check: str
    stack: str  # <area>-<env>
    area: str
    env: str
    resource: str  # the logical id within the stack
    name: str

    def __str__(self) -> str:
        return f"{self.check} {self.stack} {self.resource}: {self.name}"


def split_stack(stack: str) -> tuple[str, str]:
    """`load-balancer-prod` → ("load-balancer", "prod")."""
    for area in sorted(AREAS, key=len, reverse=True):
        if stack.startswith(area + "-"):
            return area, stack[len(area) + 1:]
    raise ValueError(f"{stack!r} is not a stack of this app (<area>-<env>)")


def findings(report: dict | list, scan: str) -> tuple[list[Finding], list[str]]:
    """The failed checks of a checkov JSON report, and its problems (parse errors, nothing checked)."""
    reports = report if isinstance(report, list) else [report]
    found, problems = [], []
    checked = 0
    for part in reports:
        summary = part.get("summary", {})
        checked += summary.get("passed", 0) + summary.get("failed", 0)
        if summary.get("parsing_errors"):
            problems.append(f"checkov could not parse {summary['parsing_errors']} file(s) "
                            f"({part.get('check_type')}): {part.get('results', {}).get('parsing_errors')}")
        for record in part.get("results", {}).get("failed_checks", []):
            path = Path(record["file_path"].lstrip("/"))
            stack = path.parts[0] if scan == "synth" else path.stem
            area, env = split_stack(stack)
            # Resource checks name `resource.<id>` in Terraform JSON, `<type>.<id>` elsewhere.
            resource = record["resource"].split(".", 1)[1]
            found.append(Finding(record["check_id"], stack, area, env, resource, record.get("check_name", "")))
    if not checked:
        problems.append("checkov checked nothing: no resource was scanned")
    return found, problems


def judge(found: Iterable[Finding], scan: str, configs: Callable[[str], Config],
          suppressions: Iterable[Suppression] = SUPPRESSIONS) -> tuple[list[Finding], dict[Suppression, list[Finding]]]:
    """The findings no suppression covers, and what each suppression covered."""
    suppressions = list(suppressions)
    unjustified, used = [], {s: [] for s in suppressions}
    for finding in found:
        config = configs(finding.env)
        covering = [s for s in suppressions if s.matches(finding, config, scan)]
        if finding.check in DELETION_PROTECTION_CHECKS and not _protection_off(config, finding.check):
            covering = []  # never justified where config asks for deletion protection
        if covering:
            used[covering[0]].append(finding)
        else:
            unjustified.append(finding)
    return unjustified, used


def _protection_off(config: Config, check: str) -> bool:
    return not getattr(config, DELETION_PROTECTION_CHECKS[check]).deletion_protection


def scannable(source: Path, out: Path) -> list[Path]:
    """Copies every stack's cdk.tf.json under `source` (a cdktf.out/stacks) to `out/<stack>/`,
    without `terraform.required_version`: checkov 3.3.30's Terraform JSON parser fails on any
    plain value in the `terraform` block ("this method receives only dicts") and then checks
    nothing in the file. No check reads that setting; everything else is copied as synthesized."""
    written = []
    for stack_file in sorted(source.glob("*/cdk.tf.json")):
        document = json.loads(stack_file.read_text())
        document.get("terraform", {}).pop("required_version", None)
        target = out / stack_file.parent.name / "cdk.tf.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=2) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.checkov_gate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="copy synthesized stacks where checkov can parse them")
    prepare.add_argument("out", type=Path)
    prepare.add_argument("sources", type=Path, nargs="+", help="cdktf.out/stacks folders")
    check = commands.add_parser("check", help="fail on any finding not suppressed in SUPPRESSIONS")
    check.add_argument("scan", choices=SCANS)
    check.add_argument("report", type=Path, help="checkov's JSON report (-o json)")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        shutil.rmtree(args.out, ignore_errors=True)
        written = [path for source in args.sources for path in scannable(source, args.out)]
        if not written:
            print(f"error: no stacks under {', '.join(map(str, args.sources))}", file=sys.stderr)
            return 1
        print(f"==> {len(written)} stacks ready for checkov in {args.out}")
        return 0

    found, problems = findings(json.loads(args.report.read_text()), args.scan)
    cache: dict[str, Config] = {}
    unjustified, used = judge(found, args.scan, lambda env: cache.setdefault(env, load_config(env)))
    for suppression, covered in used.items():
        for finding in covered:
            print(f"suppressed {finding.check} {finding.stack} {finding.resource}: {suppression.reason}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    for finding in unjustified:
        print(f"FAILED {finding} — fix it, or add a Suppression for exactly this resource with its reason "
              "(lib/checkov_gate.py)", file=sys.stderr)
    if problems or unjustified:
        return 1
    print(f"==> checkov {args.scan} scan: {len(found)} findings, each suppressed for its resource with a reason")
    return 0


if __name__ == "__main__":
    sys.exit(main())
