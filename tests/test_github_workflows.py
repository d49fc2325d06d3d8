"""The GitHub workflows users copy: valid against the workflow schema check-jsonschema ships, doing
what .ci/run does, with pinned actions; the plan workflow off by default and never applying."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from lib.terraform import MIRROR_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, PLAN = WORKFLOWS / "ci.yml", WORKFLOWS / "plan.yml"
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def _load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda path: path.name)
def test_workflow_is_valid_against_the_github_workflow_schema(path):
    result = _check_jsonschema(path)
    assert result.returncode == 0, f"{path.name} is not a valid workflow:\n{result.stdout}{result.stderr}"


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    steps: run make test\n")
    result = _check_jsonschema(broken)
    assert result.returncode != 0, "check-jsonschema accepted a workflow whose steps are a string"


def test_both_workflows_exist():
    assert sorted(path.name for path in WORKFLOWS.glob("*.yml")) == ["ci.yml", "plan.yml"]


def _ci_run_commands() -> list[tuple[dict[str, str], str]]:
    """(environment, make target) for each `make` line of .ci/run, in order."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if "make" not in words:
            continue
        at = words.index("make")
        environment = dict(word.split("=", 1) for word in words[:at])
        commands.append((environment, " ".join(words[at + 1:])))
    return commands


def test_ci_runs_what_ci_run_runs_in_the_same_order():
    expected = _ci_run_commands()
    assert [target for _, target in expected] == ["test", "compare-cdk", "rehearse", "chaos", "scan"], \
        f".ci/run changed ({expected}): update .github/workflows/ci.yml to match, then this test"
    ran = []
    for step in _steps(_load(CI)):
        for line in step.get("run", "").splitlines():
            if not line.strip().startswith("make "):
                continue
            words = shlex.split(line, comments=True)
            if words[:1] == ["make"]:
                ran.append(({k: str(v) for k, v in step.get("env", {}).items()}, " ".join(words[1:])))
    assert ran == expected, f"ci.yml runs {ran}, .ci/run runs {expected}"


def test_every_action_is_pinned_by_full_commit_sha_with_its_tag_beside_it():
    for path in WORKFLOWS.glob("*.yml"):
        uses_lines = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s*-?\s*uses:", line)]
        assert uses_lines, f"{path.name} uses no action"
        for line in uses_lines:
            match = re.fullmatch(r"-?\s*uses:\s*([\w.-]+/[\w.-]+)@(\S+)\s+#\s*(v\d+(?:\.\d+)*)", line)
            assert match, f"{path.name}: `{line}` is not `owner/action@<sha> # vX.Y.Z`"
            assert FULL_SHA.match(match.group(2)), f"{path.name}: {match.group(1)} is pinned to {match.group(2)}, not a commit SHA"


def test_ci_uses_terraform_1_11_4_and_a_provider_mirror_lib_terraform_finds():
    workflow = _load(CI)
    assert workflow["env"]["TERRAFORM_VERSION"] == "1.11.4"
    steps = _steps(workflow)
    (setup,) = [step for step in steps if step.get("uses", "").startswith("hashicorp/setup-terraform@")]
    assert setup["with"]["terraform_version"] == "${{ env.TERRAFORM_VERSION }}"
    assert setup["with"]["terraform_wrapper"] is False, "the wrapper adds output lib/terraform.py would have to parse"
    mirror_steps = [step for step in steps if "providers mirror" in step.get("run", "")]
    assert mirror_steps, "no step fills a provider mirror"
    assert f"{MIRROR_VARIABLE}=" in mirror_steps[0]["run"] and "GITHUB_ENV" in mirror_steps[0]["run"], \
        f"the mirror step does not export {MIRROR_VARIABLE}, the variable lib/terraform.py reads"
    test_step = next(index for index, step in enumerate(steps) if step.get("run", "").strip() == "make test")
    assert steps.index(mirror_steps[0]) < test_step, "the mirror must exist before make test runs make validate"


@pytest.mark.parametrize("path", [CI, PLAN], ids=lambda path: path.name)
def test_venv_and_node_modules_are_cached_on_their_lock_files(path):
    caches = {step["with"]["path"]: step["with"]["key"] for step in _steps(_load(path))
              if step.get("uses", "").startswith("actions/cache@")}
    assert "hashFiles('Pipfile.lock')" in caches.get(".venv", ""), f"{path.name}: .venv not keyed on Pipfile.lock"
    assert "package-lock.json" in caches.get("node_modules", ""), \
        f"{path.name}: node_modules not keyed on package-lock.json"


@pytest.mark.parametrize("path", [CI, PLAN], ids=lambda path: path.name)
def test_python_is_the_version_the_pipfile_requires(path):
    required = tomllib.loads((ROOT / "Pipfile").read_text())["requires"]["python_version"]
    assert _load(path)["env"]["PYTHON_VERSION"] == required


def test_plan_runs_on_pull_requests_only_when_the_repository_variable_enables_it():
    workflow = _load(PLAN)
    assert list(workflow["on"]) == ["pull_request"]
    (job,) = workflow["jobs"].values()
    assert "vars.PAYMENT_MIGRATION_PLAN == 'true'" in job["if"], "the plan job is not off by default"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"], \
        "pull requests from forks would run with the role"
    assert workflow["permissions"] == {"contents": "read", "id-token": "write"}


def test_plan_assumes_the_role_from_a_variable_through_oidc():
    steps = _steps(_load(PLAN))
    (credentials,) = [step for step in steps if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert credentials["with"]["role-to-assume"] == "${{ vars.PAYMENT_MIGRATION_PLAN_ROLE_ARN }}"
    assert not any(key.startswith("aws-access-key") or key.startswith("aws-secret") for key in credentials["with"]), \
        "long-lived keys instead of OIDC"


def test_plan_never_applies_and_takes_no_lock():
    scripts = "\n".join(step.get("run", "") for step in _steps(_load(PLAN)))
    for forbidden in (r"\bapply\b", r"cdktf\s+deploy", r"make\s+deploy", r"\bdestroy\b", r"force-unlock"):
        assert not re.search(forbidden, scripts), f"plan.yml runs something matching {forbidden!r}"
    # `terraform [-chdir=…] plan …`, with its continuation lines.
    plans = re.findall(r"terraform\s+(?:-chdir=\S+\s+)?plan\s[^\n]*(?:\\\n[^\n]*)*", scripts)
    assert plans, "plan.yml runs no terraform plan"
    for command in plans:
        assert "-lock=false" in command, f"a plan that takes the state lock: {command}"
