"""No literal password or secret value in code, config or synthesized Terraform JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "main.py", *sorted((ROOT / "lib").rglob("*.py")), *sorted((ROOT / "config").glob("*.toml")),
           *sorted((ROOT / "lib").rglob("*.sql")), ROOT / "cdktf.json"]

# name = "literal" / name: "literal" for names that hold credentials; values that are clearly not
# credentials (environment variable names, ARNs, references, empty) are allowed.
ASSIGNMENT = re.compile(
    r"""(?ix)\b(?P<name>[a-z_]*(?:password|passwd|pwd|secret_string|secret_value|api_key|access_key|private_key|token))\b
        ["']?\s*[:=]\s*(?P<quote>["'])(?P<value>[^"']*)(?P=quote)""")
KNOWN_BAD = re.compile(r"ChangeMe|TempPassword|Password123|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Terraform attributes that would carry a credential into plan and state.
CREDENTIAL_ATTRIBUTES = {"password", "master_password", "master_password_wo", "secret_string", "secret_binary",
                         "secret_string_wo", "access_key", "secret_key", "token"}
FORBIDDEN_RESOURCES = {"aws_secretsmanager_secret_version", "random_password"}
# The only SSM parameter: the writer's name and epoch, which the controller owns. A parameter can
# carry a secret only as a SecureString, and none may ever be one here.
ALLOWED_PARAMETERS = {"/payment-migration/dev/writer"}


def literal_credentials(text: str) -> list[str]:
    found = [m.group(0) for m in KNOWN_BAD.finditer(text)]
    for match in ASSIGNMENT.finditer(text):
        value = match.group("value")
        if not value or value.isupper() or value.startswith(("${", "arn:", "{")) or " " in value:
            continue  # an environment variable name, a reference, or prose
        found.append(match.group(0))
    return found


def credential_values(node, path: str = "") -> Iterator[str]:
    """Paths in Terraform JSON where a credential attribute has a literal (non-reference) value."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in CREDENTIAL_ATTRIBUTES and isinstance(value, str) and not value.startswith("${"):
                yield here
            yield from credential_values(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from credential_values(value, f"{path}[{index}]")


def test_source_holds_no_literal_credential() -> None:
    """One test for the whole scan; its message names every file that fails it and why."""
    missing = [str(path.relative_to(ROOT)) for path in SCANNED if not path.is_file()]
    assert missing == [], f"scanned paths that are not files: {missing}"
    offending = {str(path.relative_to(ROOT)): found
                 for path in SCANNED if (found := literal_credentials(path.read_text()))}
    assert offending == {}, "literal credentials in " + "; ".join(
        f"{name}: {', '.join(found)}" for name, found in offending.items())


def test_synthesized_json_holds_no_credential(synthesized) -> None:
    for name, stack in synthesized.stacks.items():
        assert list(credential_values(stack)) == [], f"{name}: literal credential"
        assert not FORBIDDEN_RESOURCES & set(stack.get("resource", {})), f"{name} puts a secret value in state"
        assert literal_credentials(json.dumps(stack)) == [], f"{name}: literal credential"
        for parameter in stack.get("resource", {}).get("aws_ssm_parameter", {}).values():
            assert parameter["name"] in ALLOWED_PARAMETERS and parameter["type"] == "String", \
                f"{name}: SSM parameter {parameter['name']} could hold a secret in state"
            assert set(json.loads(parameter["value"])) == {"writer", "epoch", "changed_at", "reason"}


@pytest.mark.parametrize("planted", [
    'master_password = "hunter2hunter2"',
    '"password": "s3cr3t-Value"',
    "db_password: 'correct-horse'",
    'aws_access_key = "AKIAIOSFODNN7EXAMPLE"',
    "PASSWORD = 'ChangeMe'",
])
def test_the_detector_catches_planted_credentials(planted: str) -> None:
    assert literal_credentials(planted), f"the scan misses {planted!r}"


def test_the_detector_passes_references_and_names() -> None:
    for harmless in ('SOURCE_SECRET_ARN = "SOURCE_SECRET_ARN"', '"password": "${var.x}"',
                     'manage_master_user_password = True', 'secret_string = "{\\"username\\"'):
        assert literal_credentials(harmless) == [], harmless
    planted = {"resource": {"aws_dms_endpoint": {"e": {"password": "literal"}}}}
    assert list(credential_values(planted)) == [".resource.aws_dms_endpoint.e.password"]
