"""build/local/env.sh, which `make emulator` writes: sourced in a shell that has a real account's
profile and session token, it leaves that shell pointed at the emulator and at nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lib.config import load_config
from lib.local.emulator import REPO_ROOT, write_environment_script
from lib.terraform import find_mirror

ENDPOINT = "http://127.0.0.1:4566"


def sourced(script: Path) -> dict[str, str]:
    shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "AWS_PROFILE": "production",
             "AWS_SESSION_TOKEN": "a-real-session", "PAYMENT_MIGRATION_CONFIG": "/elsewhere/prod.toml"}
    output = subprocess.run(
        ["bash", "-c", f"source {script} && env && echo cdktf=$(command -v cdktf) python=$(command -v python)"],
        env=shell, capture_output=True, text=True, check=True).stdout
    variables = dict(line.split("=", 1) for line in output.splitlines() if "=" in line and " " not in line)
    variables.update(part.split("=", 1) for part in output.splitlines()[-1].split())
    return variables


def test_the_script_points_a_shell_at_the_local_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PAYMENT_MIGRATION_CONFIG", raising=False)
    config = load_config("local")

    script = write_environment_script(config, ENDPOINT, tmp_path / "env.sh")
    shell = sourced(script)

    assert shell["PAYMENT_MIGRATION_ENV"] == "local"
    assert "PAYMENT_MIGRATION_CONFIG" not in shell, "a file named elsewhere would win over the environment"
    assert shell["cdktf"] == str(REPO_ROOT / "node_modules" / ".bin" / "cdktf"), "the pinned cdktf CLI first"
    assert shell["python"] == str(REPO_ROOT / ".venv" / "bin" / "python"), "the project's Python first"
    assert shell["JSII_NODE"] == str(REPO_ROOT / "node_modules" / ".bin" / "node")
    assert shell["CHECKPOINT_DISABLE"] == "1"
    assert (shell["AWS_ENDPOINT_URL"], shell["AWS_ACCESS_KEY_ID"], shell["AWS_SECRET_ACCESS_KEY"]) == (
        ENDPOINT, "test", "test")
    assert shell["AWS_REGION"] == shell["AWS_DEFAULT_REGION"] == config.region
    assert "AWS_PROFILE" not in shell and "AWS_SESSION_TOKEN" not in shell, "a real account's settings stayed"
    terraform_config = Path(shell["TF_CLI_CONFIG_FILE"])
    assert terraform_config.parent == tmp_path
    text = terraform_config.read_text()
    assert f'path    = "{find_mirror().root}"' in text and 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text, \
        f"the AWS provider must come from the mirror only:\n{text}"
