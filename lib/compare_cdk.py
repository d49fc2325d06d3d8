"""cdktf against CDK Terrain (cdktn): the same app synthesized by each, and the outputs compared.

    python -m lib.compare_cdk [--cdktn-python .venv-cdktn/bin/python] [--out build/compare-cdk]

synthesizes $PAYMENT_MIGRATION_ENV's app (default dev) with cdktf (this Python), then with cdktn (the
Python of the environment `make compare-cdk` installs from requirements-cdktn.txt), timing each, into
<out>/cdktf and <out>/cdktn. It fails when the two differ in what Terraform would manage: the stacks,
the addresses in each stack (every resource, data source, output and provider) or the stacks'
dependencies. Every other difference is listed, not failed: the terraform block of each stack (the
provider version it pins), attribute values, and, for each AWS resource type the app uses, the
arguments the newer bindings add or drop. Everything is written to <out>/report.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "compare-cdk"
DEFAULT_CDKTN_PYTHON = REPO_ROOT / ".venv-cdktn" / "bin" / "python"
PINNED_NODE = REPO_ROOT / "node_modules" / ".bin" / "node"
VARIABLE = "PAYMENT_MIGRATION_CDK"  # lib/cdk reads it; importing lib/cdk here would load the bindings
METADATA_KEY = "//"  # the CDK's own notes in the synthesized JSON (construct paths, its version)
ABSENT = "<absent>"  # a path one output has and the other has not
# Every resource class takes them; they are the CDK's, not the provider's.
META_ARGUMENTS = {"connection", "count", "depends_on", "for_each", "lifecycle", "provider", "provisioners"}
# Where the selected bindings live, asked of each environment's Python without loading them.
BINDINGS_PROBE = ("import importlib.util, lib.cdk as cdk; "
                  "print(importlib.util.find_spec(cdk.SELECTED.aws).submodule_search_locations[0])")


class CompareError(Exception):
    """A synthesis failed or the outputs differ in what Terraform would manage."""


@dataclass(frozen=True)
class Synthesis:
    implementation: str
    stacks: dict[str, dict]  # stack name -> its cdk.tf.json
    manifest: dict
    seconds: float
    bindings_dir: Path | None = None  # the AWS provider bindings' package, when known

    @property
    def version(self) -> str:
        return self.manifest.get("version", "?")


def synthesize(implementation: str, python: Path | str, out_dir: Path) -> Synthesis:
    """`main.py` run by `python` with `implementation` selected, into `out_dir`; its wall time."""
    environment = {**os.environ, VARIABLE: implementation, "CDKTF_OUTDIR": str(out_dir)}
    if PINNED_NODE.exists():
        environment.setdefault("JSII_NODE", str(PINNED_NODE))
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.monotonic()
    process = subprocess.run([str(python), "main.py"], cwd=REPO_ROOT, env=environment, text=True,
                             capture_output=True, check=False)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise CompareError(f"synthesis with {implementation} ({python}) failed:\n{process.stderr}{process.stdout}")
    probe = subprocess.run([str(python), "-c", BINDINGS_PROBE], cwd=REPO_ROOT, env=environment, text=True,
                           capture_output=True, check=False)
    bindings_dir = Path(probe.stdout.strip()) if probe.returncode == 0 and probe.stdout.strip() else None
    stacks, manifest = read_output(out_dir)
    return Synthesis(implementation, stacks, manifest, seconds, bindings_dir)


def read_output(out_dir: Path) -> tuple[dict[str, dict], dict]:
    manifest = json.loads((out_dir / "manifest.json").read_text())
    stacks = {path.parent.name: json.loads(path.read_text()) for path in (out_dir / "stacks").glob("*/cdk.tf.json")}
    return stacks, manifest


# --- what Terraform would manage: must be the same ---

def addresses(stack: Mapping) -> set[str]:
    """Terraform's addresses in one stack: `type.name`, `data.type.name`, `output.name`, and
    `provider.<name>[.<alias>]` for each provider configuration."""
    found = {f"{kind}.{name}" for kind, items in stack.get("resource", {}).items() for name in items}
    found |= {f"data.{kind}.{name}" for kind, items in stack.get("data", {}).items() for name in items}
    found |= {f"output.{name}" for name in stack.get("output", {})}
    for name, configurations in stack.get("provider", {}).items():
        for configuration in configurations if isinstance(configurations, list) else [configurations]:
            alias = configuration.get("alias")
            found.add(f"provider.{name}.{alias}" if alias else f"provider.{name}")
    return found


def dependencies(manifest: Mapping) -> dict[str, list[str]]:
    return {name: sorted(stack.get("dependencies", [])) for name, stack in manifest.get("stacks", {}).items()}


def structural_differences(left: Synthesis, right: Synthesis) -> list[str]:
    """What Terraform would manage differently, one line each (empty when the outputs agree)."""
    found = []
    for name in sorted(left.stacks.keys() - right.stacks.keys()):
        found.append(f"stack {name} only with {left.implementation}")
    for name in sorted(right.stacks.keys() - left.stacks.keys()):
        found.append(f"stack {name} only with {right.implementation}")
    for name in sorted(left.stacks.keys() & right.stacks.keys()):
        ours, theirs = addresses(left.stacks[name]), addresses(right.stacks[name])
        found += [f"{name}: {address} only with {left.implementation}" for address in sorted(ours - theirs)]
        found += [f"{name}: {address} only with {right.implementation}" for address in sorted(theirs - ours)]
    left_dependencies, right_dependencies = dependencies(left.manifest), dependencies(right.manifest)
    for name in sorted(left_dependencies.keys() & right_dependencies.keys()):
        if left_dependencies[name] != right_dependencies[name]:
            found.append(f"{name}: depends on {left_dependencies[name]} with {left.implementation}, "
                         f"on {right_dependencies[name]} with {right.implementation}")
    return found


# --- everything else: listed ---

def flatten(value, path: str = "") -> Iterable[tuple[str, object]]:
    """(dotted path, leaf value) of a synthesized document, without the CDK's metadata."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key != METADATA_KEY:
                yield from flatten(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    else:
        yield path, value



def value_differences(left: Synthesis, right: Synthesis) -> list[dict]:
    """Every path whose value differs, once with the stacks it differs in: the terraform block
    (`terraform.required_providers.aws.version`), a provider's settings, a resource's attribute."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for name in sorted(left.stacks.keys() & right.stacks.keys()):
        ours, theirs = dict(flatten(left.stacks[name])), dict(flatten(right.stacks[name]))
        for path in sorted(ours.keys() | theirs.keys()):
            before, after = ours.get(path, ABSENT), theirs.get(path, ABSENT)
            if before != after:
                grouped.setdefault((path, json.dumps(before), json.dumps(after)), []).append(name)
    return [{"path": path, left.implementation: json.loads(before), right.implementation: json.loads(after),
             "stacks": stacks}
            for (path, before, after), stacks in grouped.items()]



def binding_arguments(module_file: Path) -> dict[str, set[str]]:
    """The keyword arguments of each class in one module of the provider bindings (its resource,
    data source or provider class, and one struct per nested block), read from the source: loading
    the module would load the whole jsii assembly. `<Class>Config` repeats `<Class>` and is left out."""
    classes = {}
    for node in ast.parse(module_file.read_text()).body:
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__" and item.args.kwonlyargs:
                classes[node.name] = {argument.arg for argument in item.args.kwonlyargs} - META_ARGUMENTS
    return {name: arguments for name, arguments in classes.items()
            if not (name.endswith("Config") and name.removesuffix("Config") in classes)}


def binding_module(terraform_type: str, kind: str) -> str | None:
    """The bindings' module for an AWS type: aws_vpc -> vpc, data aws_iam_role -> data_aws_iam_role."""
    if kind == "provider":
        return "provider" if terraform_type == "aws" else None
    if not terraform_type.startswith("aws_"):
        return None
    return f"data_{terraform_type}" if kind == "data" else terraform_type.removeprefix("aws_")


def used_types(stacks: Mapping[str, Mapping]) -> dict[str, str]:
    """Every AWS resource, data source and provider type the app uses -> its bindings' module."""
    used = {}
    for stack in stacks.values():
        for kind, label in (("resource", "resource"), ("data", "data"), ("provider", "provider")):
            for terraform_type in stack.get(kind, {}):
                module = binding_module(terraform_type, label)
                if module:
                    used[terraform_type if label != "data" else f"data.{terraform_type}"] = module
    return dict(sorted(used.items()))


def binding_differences(left: Synthesis, right: Synthesis) -> dict[str, dict[str, list[str]]]:
    """For each AWS type the app uses, the arguments (`Class.argument`) only the left or only the
    right bindings accept; types whose arguments agree are left out."""
    if left.bindings_dir is None or right.bindings_dir is None:
        return {}
    found = {}
    for terraform_type, module in used_types(left.stacks).items():
        files = (left.bindings_dir / module / "__init__.py", right.bindings_dir / module / "__init__.py")
        if not all(path.is_file() for path in files):
            found[terraform_type] = {synthesis.implementation: [f"no module {module}"]
                                     for synthesis, path in zip((left, right), files) if not path.is_file()}
            continue
        ours, theirs = binding_arguments(files[0]), binding_arguments(files[1])
        only = {left.implementation: [], right.implementation: []}
        for name in sorted(ours.keys() | theirs.keys()):
            mine, other = ours.get(name), theirs.get(name)
            if mine is None or other is None:
                side = left.implementation if other is None else right.implementation
                only[side].append(name)
                continue
            only[left.implementation] += [f"{name}.{argument}" for argument in sorted(mine - other)]
            only[right.implementation] += [f"{name}.{argument}" for argument in sorted(other - mine)]
        if any(only.values()):
            found[terraform_type] = only
    return found


def compare(left: Synthesis, right: Synthesis) -> dict:
    return {
        "environment": os.environ.get("PAYMENT_MIGRATION_ENV") or "dev",
        "synthesis": {synthesis.implementation: {"version": synthesis.version, "seconds": round(synthesis.seconds, 1)}
                      for synthesis in (left, right)},
        "stacks": sorted(left.stacks),
        "addresses": sum(len(addresses(stack)) for stack in left.stacks.values()),
        "structural_differences": structural_differences(left, right),
        "value_differences": value_differences(left, right),
        "binding_differences": binding_differences(left, right),
    }


def summary(report: Mapping, left: str, right: str) -> list[str]:
    synthesis = report["synthesis"]
    lines = [f"==> environment {report['environment']}: {left} {synthesis[left]['version']} synthesized in "
             f"{synthesis[left]['seconds']} s, {right} {synthesis[right]['version']} in {synthesis[right]['seconds']} s"]
    if report["structural_differences"]:
        lines.append(f"    {len(report['structural_differences'])} differences in what Terraform would manage:")
        lines += [f"      {line}" for line in report["structural_differences"]]
    else:
        lines.append(f"    same {len(report['stacks'])} stacks, same {report['addresses']} addresses, "
                     "same dependencies between stacks")
    every = len(report["stacks"])
    for difference in report["value_differences"]:
        where = "every stack" if len(difference["stacks"]) == every else ", ".join(difference["stacks"])
        lines.append(f"    {difference['path']}: {json.dumps(difference[left])} -> "
                     f"{json.dumps(difference[right])} ({where})")
    if not report["value_differences"]:
        lines.append("    no attribute or terraform block differs")
    bindings = report["binding_differences"]
    if bindings:
        lines.append(f"    bindings: {len(bindings)} of the AWS types the app uses take other arguments "
                     f"(report.json lists them):")
        for terraform_type, only in bindings.items():
            counts = ", ".join(f"{len(items)} only with {side}" for side, items in only.items() if items)
            lines.append(f"      {terraform_type}: {counts}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.compare_cdk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdktn-python", type=Path, default=DEFAULT_CDKTN_PYTHON,
                        help="the Python of the cdktn environment (default .venv-cdktn/bin/python)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where both syntheses go (default build/compare-cdk)")
    args = parser.parse_args(argv)
    try:
        left = synthesize("cdktf", sys.executable, args.out / "cdktf")
        right = synthesize("cdktn", args.cdktn_python, args.out / "cdktn")
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = compare(left, right)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary(report, left.implementation, right.implementation)))
    print(f"    report: {args.out / 'report.json'}")
    return 1 if report["structural_differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
