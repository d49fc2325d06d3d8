"""The state machines the trials run are the ones the cutover stack synthesizes.

The world builds the cutover and writer-rollback definitions with lib/workflows/cutover.py's
builders (with the emulator's function ARNs) and compares them with those in the synthesized
`cutover-<env>` stack, ARNs aside: wherever the builder placed a function ARN, the synthesized
definition must hold a Terraform reference, the same reference wherever the builder placed the same
ARN; everything else must be equal. A difference stops the run before any trial.

The synthesized stack is looked for in cdktf.out (`make synth`) and in build/deploy-local/cdktf.out
(what `make deploy-local` and `make rehearse` synthesize), if it is newer than the code and config;
if neither holds a current one, the environment is synthesized into build/chaos/cdktf.out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lib.workflows.cutover import cutover_definition, rollback_definition

REPO_ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDERS = {"step_arn": "<step function>", "validation_arn": "<validation function>",
                "traffic_arn": "<traffic function>"}
# machine id in the cutover stack → builder
MACHINES = {"cutover": cutover_definition, "writer-rollback": rollback_definition}


class DefinitionMismatch(Exception):
    pass


def synthesized_stack(env: str, work: Path) -> Path:
    """The cutover stack's JSON as synthesized from the code and config as they are now: a synthesis
    older than any file it is made from is passed over (it would compare today's definitions with
    yesterday's), and when none is current the environment is synthesized into `work`."""
    sources = max(path.stat().st_mtime for pattern in ("lib/**/*.py", "config/*.toml", "main.py", "cdktf.json")
                  for path in REPO_ROOT.glob(pattern))
    for root in (REPO_ROOT / "cdktf.out", REPO_ROOT / "build" / "deploy-local" / "cdktf.out", work / "cdktf.out"):
        path = root / "stacks" / f"cutover-{env}" / "cdk.tf.json"
        if path.is_file() and path.stat().st_mtime >= sources:
            return path
    from lib.local.deploy import synthesize

    synthesize(env, work / "cdktf.out")
    return work / "cdktf.out" / "stacks" / f"cutover-{env}" / "cdk.tf.json"


def synthesized_definitions(path: Path) -> dict[str, dict[str, Any]]:
    """machine id ("cutover", "writer-rollback") → its definition as synthesized."""
    machines = json.loads(path.read_text())["resource"]["aws_sfn_state_machine"]
    found = {}
    for machine_id in MACHINES:
        matches = [body for address, body in machines.items() if address.startswith(f"{machine_id}_machine")]
        if len(matches) != 1:
            raise DefinitionMismatch(f"{path}: expected one state machine {machine_id!r}, found {len(matches)}")
        found[machine_id] = json.loads(matches[0]["definition"])
    return found


def compare(built: Any, synthesized: Any, where: str, references: dict[str, str]) -> list[str]:
    """Differences between a definition built with PLACEHOLDERS as ARNs and a synthesized one."""
    if isinstance(built, str) and built in PLACEHOLDERS.values():
        if not (isinstance(synthesized, str) and synthesized.startswith("${") and synthesized.endswith("}")):
            return [f"{where}: {built} expected, synthesized {synthesized!r}"]
        if references.setdefault(built, synthesized) != synthesized:
            return [f"{where}: {built} is {references[built]} elsewhere, {synthesized} here"]
        return []
    if isinstance(built, dict) and isinstance(synthesized, dict):
        problems = [f"{where}.{key}: only {'built' if key in built else 'synthesized'}"
                    for key in sorted(set(built) ^ set(synthesized))]
        for key in sorted(set(built) & set(synthesized)):
            problems += compare(built[key], synthesized[key], f"{where}.{key}", references)
        return problems
    if isinstance(built, list) and isinstance(synthesized, list) and len(built) == len(synthesized):
        problems = []
        for index, (left, right) in enumerate(zip(built, synthesized)):
            problems += compare(left, right, f"{where}[{index}]", references)
        return problems
    return [] if built == synthesized else [f"{where}: built {built!r}, synthesized {synthesized!r}"]


def check_synthesized(path: Path) -> None:
    """Raise DefinitionMismatch unless the builders' definitions equal the synthesized ones, ARNs aside."""
    synthesized = synthesized_definitions(path)
    references: dict[str, str] = {}
    problems = []
    for machine_id, builder in MACHINES.items():
        problems += compare(builder(**PLACEHOLDERS), synthesized[machine_id], machine_id, references)
    if problems:
        raise DefinitionMismatch(f"the definitions in {path} differ from lib/workflows/cutover.py's:\n  "
                                 + "\n  ".join(problems[:20]))


def task_states(definition: dict[str, Any]) -> list[str]:
    """The Task states of a definition, in the order it lists them."""
    return [name for name, state in definition["States"].items() if state["Type"] == "Task"]
