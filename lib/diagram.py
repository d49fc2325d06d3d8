"""The architecture picture, drawn from the synthesized app and never by hand: one box per stack
with its main resources, left to right in deploy order, and an arrow for every stack that reads
another's outputs (cdktf's cross-stack references: the manifest's dependencies, resolved through
`terraform_remote_state`); in the SVG, an arrow's tooltip names what crosses.

    python -m lib.diagram [--out cdktf.out] [--to docs/architecture] [--dot-only]

draws `<to>.png` and `<to>.svg` (default docs/architecture.*) with Graphviz's `dot`, which
`make diagram` installs; `--dot-only` prints the DOT source and needs no Graphviz. The source is
built in plain Python (`render_dot`), so tests check it without the binary.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTH_DIR = REPO_ROOT / "cdktf.out"
DEFAULT_TARGET = REPO_ROOT / "docs" / "architecture"

# The order the README's runbook deploys in; a stack the app grows later (cutover, …) is placed by
# its dependencies after the ones it reads, so any manifest draws.
DEPLOY_ORDER = ("account", "network", "security", "database", "compute", "load-balancer", "migration",
                "routing", "monitoring", "validation", "cutover")
MAX_RESOURCE_NODES = 6  # per stack; the rest is summed up in one line so every box stays short

# AWS Architecture Icons' category colours, so the picture reads like the AWS diagrams users know.
CATEGORY_COLOURS = {
    "network": "#8C4FFF",
    "security": "#DD344C",
    "database": "#C925D1",
    "compute": "#ED7100",
    "integration": "#E7157B",
    "management": "#E7157B",
    "storage": "#7AA116",
    "migration": "#01A88D",
    "other": "#7D8998",
}
# One colour per producing stack for its arrows and its box's border, so an arrow can be followed
# back to its stack (Tableau 10, distinguishable in print and by most colour-blind readers).
ARROW_COLOURS = ("#4E79A7", "#F28E2B", "#E15759", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#9C755F",
                 "#FF9DA7", "#BAB0AC")

# Resource types worth a box, most important first, with the name the AWS console uses. A type not
# listed is drawn under a name made from its type unless it only supports another resource
# (policies, attachments, rules, aliases: see _is_supporting), which is counted instead.
MAIN_RESOURCES: dict[str, tuple[str, str]] = {
    "aws_vpc": ("VPC", "network"),
    "aws_subnet": ("subnet", "network"),
    "aws_nat_gateway": ("NAT gateway", "network"),
    "aws_internet_gateway": ("internet gateway", "network"),
    "aws_route53_zone": ("Route 53 hosted zone", "network"),
    "aws_flow_log": ("VPC flow log", "network"),
    "aws_vpn_gateway_attachment": ("VPN gateway attachment", "network"),
    "aws_ec2_transit_gateway_vpc_attachment": ("transit gateway attachment", "network"),
    "aws_route_table": ("route table", "network"),
    "aws_security_group": ("security group", "security"),
    "aws_wafv2_web_acl": ("WAF web ACL", "security"),
    "aws_rds_cluster": ("Aurora PostgreSQL cluster", "database"),
    "aws_rds_cluster_instance": ("Aurora instance", "database"),
    "aws_backup_plan": ("AWS Backup plan", "storage"),
    "aws_backup_vault": ("AWS Backup vault", "storage"),
    "aws_lambda_function": ("Lambda function", "compute"),
    "aws_lb": ("Application Load Balancer", "network"),
    "aws_lb_listener": ("ALB listener", "network"),
    "aws_lb_target_group": ("ALB target group", "network"),
    "aws_acm_certificate": ("ACM certificate", "security"),
    "aws_wafv2_web_acl_association": ("WAF association", "security"),
    "aws_s3_bucket": ("S3 bucket", "storage"),
    "aws_dms_replication_instance": ("DMS replication instance", "migration"),
    "aws_dms_replication_task": ("DMS replication task", "migration"),
    "aws_dms_endpoint": ("DMS endpoint", "migration"),
    "aws_route53_record": ("Route 53 record", "network"),
    "aws_route53_health_check": ("Route 53 health check", "network"),
    "aws_route53_query_log": ("Route 53 query log", "network"),
    "aws_sfn_state_machine": ("Step Functions state machine", "integration"),
    "aws_sns_topic": ("SNS topic", "integration"),
    "aws_sqs_queue": ("SQS queue", "integration"),
    "aws_cloudwatch_event_rule": ("EventBridge rule", "integration"),
    "aws_sns_topic_subscription": ("SNS subscription", "integration"),
    "aws_ssm_parameter": ("SSM parameter", "management"),
    "aws_cloudwatch_composite_alarm": ("CloudWatch composite alarm", "management"),
    "aws_cloudwatch_metric_alarm": ("CloudWatch alarm", "management"),
    "aws_cloudwatch_dashboard": ("CloudWatch dashboard", "management"),
    "aws_dms_event_subscription": ("DMS event subscription", "migration"),
    # What nearly every stack has comes last, so a box starts with what makes the stack itself.
    "aws_kms_key": ("KMS key", "security"),
    "aws_secretsmanager_secret": ("Secrets Manager secret", "security"),
    "aws_cloudwatch_log_group": ("CloudWatch log group", "management"),
    "aws_iam_role": ("IAM role", "security"),
}
_SUPPORTING_SUFFIXES = ("_policy", "_attachment", "_association", "_alias", "_rule", "_permission",
                        "_configuration", "_subnet_group", "_parameter_group", "_validation", "_selection",
                        "_dnssec", "_target", "_versioning", "_controls", "_block", "_resource_policy")
_SUPPORTING_TYPES = {"terraform_data", "null_resource", "time_sleep", "aws_route", "aws_eip",
                     "aws_default_security_group", "aws_route53_key_signing_key"}
_SERVICE_CATEGORIES = {"ec2": "network", "vpc": "network", "route53": "network", "lb": "network",
                       "iam": "security", "kms": "security", "wafv2": "security", "acm": "security",
                       "secretsmanager": "security", "rds": "database", "db": "database",
                       "dynamodb": "database", "lambda": "compute", "sfn": "integration",
                       "sns": "integration", "sqs": "integration", "s3": "storage", "backup": "storage",
                       "dms": "migration", "cloudwatch": "management", "ssm": "management"}
# cdktf names each cross-stack output `cross-stack-output-<resource type><construct path><attribute>`.
_REMOTE_OUTPUT = re.compile(r"data\.terraform_remote_state\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)")
_OUTPUT_PREFIX = "cross-stack-output-"


class DiagramError(Exception):
    """The synthesized app cannot be drawn (missing, or its stacks depend on each other in a cycle)."""


@dataclass(frozen=True)
class ResourceGroup:
    """All resources of one type in one stack: one box."""

    resource_type: str
    label: str
    category: str
    count: int


@dataclass(frozen=True)
class StackView:
    name: str  # the stack id, e.g. network-dev
    area: str  # network
    resources: tuple[ResourceGroup, ...]  # the boxes, most important first
    other_resources: int  # resources summed up rather than drawn


@dataclass(frozen=True)
class Reference:
    """`consumer` reads outputs of `producer`; `crossing` names the producer's resource types read."""

    producer: str
    consumer: str
    crossing: tuple[str, ...]
    values: int


@dataclass(frozen=True)
class Architecture:
    environment: str
    stacks: tuple[StackView, ...]  # in deploy order
    references: tuple[Reference, ...]


def load(synth_dir: Path = SYNTH_DIR) -> tuple[dict, dict[str, dict]]:
    """The manifest and each stack's Terraform JSON, keyed by stack name."""
    manifest_path = synth_dir / "manifest.json"
    if not manifest_path.is_file():
        raise DiagramError(f"{manifest_path} is missing: run `make synth` first")
    manifest = json.loads(manifest_path.read_text())
    stacks = {}
    for name, entry in manifest["stacks"].items():
        path = synth_dir / entry["synthesizedStackPath"]
        if not path.is_file():
            raise DiagramError(f"{path} is missing though the manifest lists {name}: run `make synth` again")
        stacks[name] = json.loads(path.read_text())
    return manifest, stacks


def architecture(manifest: Mapping, stacks: Mapping[str, Mapping]) -> Architecture:
    """What the picture shows, read from a synthesized app."""
    names = sorted(manifest["stacks"])
    environment = _environment_suffix(names)
    areas = {name: name[: len(name) - len(environment) - 1] if environment else name for name in names}
    references = _references(manifest, stacks)
    order = _deploy_order(names, areas, references)
    views = tuple(_stack_view(name, areas[name], stacks.get(name, {})) for name in order)
    position = {name: index for index, name in enumerate(order)}
    references.sort(key=lambda ref: (position[ref.producer], position[ref.consumer]))
    return Architecture(environment=environment, stacks=views, references=tuple(references))


def _environment_suffix(names: Sequence[str]) -> str:
    """The `<env>` every stack id `<area>-<env>` ends with ('' when the ids share none)."""
    if len(names) < 2:
        return names[0].rpartition("-")[2] if names and "-" in names[0] else ""
    reversed_names = [name[::-1] for name in names]
    common = []
    for letters in zip(*reversed_names):
        if len(set(letters)) != 1:
            break
        common.append(letters[0])
    suffix = "".join(common)[::-1]
    return suffix[suffix.index("-") + 1:] if "-" in suffix else ""


def _references(manifest: Mapping, stacks: Mapping[str, Mapping]) -> list[Reference]:
    """One reference per (producer, consumer): the manifest's dependencies, each matched to the
    consumer's terraform_remote_state data source (by backend bucket and key) to name what crosses."""
    by_state = {}
    for name, stack in stacks.items():
        backend = stack.get("terraform", {}).get("backend", {})
        for kind, settings in backend.items():
            by_state[(kind, settings.get("bucket"), settings.get("key"), settings.get("path"))] = name
    references = []
    for consumer, entry in manifest["stacks"].items():
        stack = stacks.get(consumer, {})
        producers = {producer: set() for producer in entry.get("dependencies", [])}
        source_of = {}
        for source, settings in stack.get("data", {}).get("terraform_remote_state", {}).items():
            config = settings.get("config", {})
            key = (settings.get("backend"), config.get("bucket"), config.get("key"), config.get("path"))
            producer = by_state.get(key) or _named_producer(source, manifest["stacks"])
            if producer:
                source_of[source] = producer
                producers.setdefault(producer, set())
        for source, output in _REMOTE_OUTPUT.findall(json.dumps(stack)):
            if source in source_of:
                producers[source_of[source]].add(output)
        for producer, outputs in producers.items():
            if producer == consumer or producer not in manifest["stacks"]:
                continue
            types = _producing_types(outputs, stacks.get(producer, {}))
            crossing = tuple(sorted({_label(resource_type)[0] for resource_type in types}))
            references.append(Reference(producer=producer, consumer=consumer, crossing=crossing,
                                        values=len(outputs)))
    return references


def _named_producer(source: str, stack_names: Iterable[str]) -> str | None:
    """cdktf names the data source `cross-stack-reference-input-<producer>`."""
    for name in stack_names:
        if source == f"cross-stack-reference-input-{name}":
            return name
    return None


def _producing_types(outputs: Iterable[str], producer: Mapping) -> set[str]:
    resource_types = sorted(producer.get("resource", {}), key=len, reverse=True)  # aws_lb_target_group before aws_lb
    found = set()
    for output in outputs:
        name = output.removeprefix(_OUTPUT_PREFIX)
        match = next((resource_type for resource_type in resource_types if name.startswith(resource_type)), None)
        if match:
            found.add(match)
    return found


def _deploy_order(names: Sequence[str], areas: Mapping[str, str], references: Sequence[Reference]) -> list[str]:
    """Every producer before its consumers; among the stacks free to go next, the runbook's order."""
    rank = {area: index for index, area in enumerate(DEPLOY_ORDER)}
    waiting_on = {name: {ref.producer for ref in references if ref.consumer == name} for name in names}
    order: list[str] = []
    while waiting_on:
        ready = [name for name, producers in waiting_on.items() if not producers]
        if not ready:
            raise DiagramError(f"the stacks depend on each other in a cycle: {', '.join(sorted(waiting_on))}")
        chosen = min(ready, key=lambda name: (rank.get(areas[name], len(rank)), name))
        order.append(chosen)
        del waiting_on[chosen]
        for producers in waiting_on.values():
            producers.discard(chosen)
    return order


def _label(resource_type: str) -> tuple[str, str]:
    if resource_type in MAIN_RESOURCES:
        return MAIN_RESOURCES[resource_type]
    parts = resource_type.split("_")
    service = parts[1] if parts[0] == "aws" and len(parts) > 1 else parts[0]
    words = parts[1:] if parts[0] == "aws" else parts
    return " ".join(words), _SERVICE_CATEGORIES.get(service, "other")


def _is_supporting(resource_type: str) -> bool:
    if resource_type in MAIN_RESOURCES:
        return False
    return resource_type in _SUPPORTING_TYPES or resource_type.endswith(_SUPPORTING_SUFFIXES) \
        or resource_type.startswith("aws_s3_bucket_")


def _stack_view(name: str, area: str, stack: Mapping) -> StackView:
    counts = {resource_type: len(resources) for resource_type, resources in stack.get("resource", {}).items()}
    importance = {resource_type: index for index, resource_type in enumerate(MAIN_RESOURCES)}
    main = sorted((t for t in counts if not _is_supporting(t)),
                  key=lambda t: (importance.get(t, len(importance)), t))
    if not main:  # a stack of supporting resources only (the account stack's roles) still shows them
        main = sorted(counts, key=lambda t: (-counts[t], t))
    shown = main[:MAX_RESOURCE_NODES]
    groups = tuple(ResourceGroup(resource_type=t, label=_label(t)[0], category=_label(t)[1], count=counts[t])
                   for t in shown)
    return StackView(name=name, area=area, resources=groups,
                     other_resources=sum(counts.values()) - sum(group.count for group in groups))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cluster_id(stack: str) -> str:
    return f"cluster_{stack}"


def _anchor(view: StackView) -> str:
    """The node arrows are attached to (clipped at the box's border by lhead/ltail)."""
    return f"{view.name}/{view.resources[0].resource_type}" if view.resources else f"{view.name}/empty"


def render_dot(arch: Architecture, *, title: str = "payment-migration") -> str:
    """The Graphviz DOT source of the picture."""
    environment = f" ({arch.environment})" if arch.environment else ""
    caption = (f"<<b>{_html(title)}</b>: the stacks of one environment{_html(environment)} and their main resources"
               "<br/><font point-size='11'>an arrow runs from a stack to a stack that reads its outputs "
               "(terraform_remote_state), in the producer's colour; in the SVG, hover an arrow to see what crosses"
               "<br/>generated from cdktf.out by make diagram</font>>")
    producers = [view.name for view in arch.stacks if any(ref.producer == view.name for ref in arch.references)]
    colour_of = {name: ARROW_COLOURS[index % len(ARROW_COLOURS)] for index, name in enumerate(producers)}
    lines = [
        "digraph architecture {",
        "  graph [rankdir=LR, compound=true, newrank=true, fontname=Helvetica, fontsize=16, labelloc=t,",
        f"         nodesep=0.18, ranksep=0.9, pad=0.3, label={caption}];",
        "  node [shape=box, style=\"rounded,filled\", fontname=Helvetica, fontsize=11, height=0.38, penwidth=1.4];",
        "  edge [penwidth=1.6, arrowsize=0.9];",
    ]
    for view in arch.stacks:
        border = colour_of.get(view.name, "#232F3E")
        lines.append(f"  subgraph {_quote(cluster_id(view.name))} {{")
        lines.append(f"    graph [label=<<b>{_html(view.area)}</b><br/><font point-size='10'>{_html(view.name)}</font>>,")
        lines.append(f"           style=\"rounded,filled\", fillcolor=\"#F7F7F7\", color={_quote(border)}, penwidth=2.5,")
        lines.append("           fontsize=14];")
        members = []
        for group in view.resources:
            node = f"{view.name}/{group.resource_type}"
            colour = CATEGORY_COLOURS.get(group.category, CATEGORY_COLOURS["other"])
            count = f" ×{group.count}" if group.count > 1 else ""
            lines.append(f"    {_quote(node)} [label={_quote(group.label + count)}, color={_quote(colour)}, "
                         f"fillcolor={_quote(colour + '22')}, tooltip={_quote(group.resource_type)}];")
            members.append(node)
        if not view.resources:
            lines.append(f"    {_quote(_anchor(view))} [label=\"no resources\", style=dashed];")
            members.append(_anchor(view))
        if view.other_resources:
            node = f"{view.name}/other"
            lines.append(f"    {_quote(node)} [label={_quote(f'+ {view.other_resources} supporting resources')}, "
                         "shape=plaintext, style=\"\", fontsize=9, fontcolor=\"#545B64\"];")
            members.append(node)
        # One column per stack: its boxes share a rank, stacked top to bottom.
        lines.append(f"    {{ rank=same; {'; '.join(_quote(member) for member in members)}; }}")
        lines.append("  }")
    views = {view.name: view for view in arch.stacks}
    for ref in arch.references:
        what = ", ".join(ref.crossing) or "values not tied to a resource"
        tooltip = f"{ref.consumer} reads {ref.values} output(s) of {ref.producer}: {what}"
        lines.append(f"  {_quote(_anchor(views[ref.producer]))} -> {_quote(_anchor(views[ref.consumer]))} "
                     f"[ltail={_quote(cluster_id(ref.producer))}, lhead={_quote(cluster_id(ref.consumer))}, "
                     f"color={_quote(colour_of[ref.producer])}, tooltip={_quote(tooltip)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(dot_source: str, target: Path) -> list[Path]:
    """Renders the DOT source into <target>.png and <target>.svg with Graphviz."""
    dot = shutil.which("dot")
    if not dot:
        raise DiagramError("Graphviz's dot is not on the PATH: `make diagram` installs it (Debian package graphviz)")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt, extra in (("png", ["-Gdpi=96"]), ("svg", [])):
        path = target.with_suffix(f".{fmt}")
        subprocess.run([dot, f"-T{fmt}", *extra, "-o", str(path)], input=dot_source, text=True, check=True)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.diagram", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SYNTH_DIR, help="the synthesized app (default cdktf.out)")
    parser.add_argument("--to", type=Path, default=DEFAULT_TARGET,
                        help="path without extension for the .png and .svg (default docs/architecture)")
    parser.add_argument("--dot-only", action="store_true", help="print the DOT source, draw nothing")
    args = parser.parse_args(argv)
    try:
        dot_source = render_dot(architecture(*load(args.out)))
        if args.dot_only:
            sys.stdout.write(dot_source)
            return 0
        for path in draw(dot_source, args.to):
            print(f"==> wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    except DiagramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
