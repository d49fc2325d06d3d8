"""The cdktf CLI as users run it (node_modules/.bin/cdktf, the app command in cdktf.json), each
test in its own output folder so the working tree's cdktf.out is left alone:

- its synthesis right after a synthesis of another environment by hand (make synth), which once
  failed with ENOENT on the other environment's stack folders, and the lock files that survive;
- `cdktf deploy account-local network-local` after `source build/local/env.sh`, offline: the
  provider from the machine's mirror, its lock file from the synthesis, every AWS call to an
  emulator in a child process; then `python -m lib.cutover status` in the same shell.

Both run the real CLI and the real synthesis (about 30 s each), the deploy Terraform too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from lib.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
CDKTF = ROOT / "node_modules" / ".bin" / "cdktf"
LOCK_FILE = ".terraform.lock.hcl"
# Any request that is not for this machine goes to a closed port: "offline" holds on a machine
# that has a network too.
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def cdktf_cli() -> None:
    assert CDKTF.exists(), f"{CDKTF} is missing: `make install` installs the cdktf CLI"


def shell_environment(**extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("AWS_", "PAYMENT_MIGRATION_", "CDKTF_", "TF_"))}
    environment.update(CHECKPOINT_DISABLE="1", PATH=f"{CDKTF.parent}:{environment['PATH']}", **OFFLINE)
    environment.update(extra)
    return environment


def stack_folders(outdir: Path) -> set[str]:
    return {entry.name for entry in (outdir / "stacks").iterdir()}


def test_cli_synth_after_another_environments_synth_and_lock_files_survive(tmp_path):
    outdir = tmp_path / "cdktf.out"
    by_hand = subprocess.run([sys.executable, "main.py"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=shell_environment(PAYMENT_MIGRATION_ENV="dev", CDKTF_OUTDIR=str(outdir)))
    assert by_hand.returncode == 0, by_hand.stderr
    assert "network-dev" in stack_folders(outdir)
    kept = outdir / "stacks" / "network-dev" / LOCK_FILE
    kept.write_text("# the lock file of an earlier deploy of network-dev\n")

    again = subprocess.run([sys.executable, "main.py"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env=shell_environment(PAYMENT_MIGRATION_ENV="dev", CDKTF_OUTDIR=str(outdir)))
    assert again.returncode == 0, again.stderr
    assert kept.read_text() == "# the lock file of an earlier deploy of network-dev\n", "synthesis lost a lock file"

    cli = subprocess.run([str(CDKTF), "synth", "--output", str(outdir)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=shell_environment(PAYMENT_MIGRATION_ENV="local"))
    assert cli.returncode == 0, f"cdktf synth failed:\n{cli.stdout}\n{cli.stderr}"
    assert "ENOENT" not in cli.stdout + cli.stderr
    assert "[ERROR]" not in cli.stdout + cli.stderr, f"the synthesis printed errors:\n{cli.stdout}{cli.stderr}"
    local = set(json.loads((outdir / "manifest.json").read_text())["stacks"])
    assert local and all(name.endswith("-local") for name in local), local
    assert stack_folders(outdir) == local, "the dev stacks' folders were left behind"
    for stack in local:
        lock = (outdir / "stacks" / stack / LOCK_FILE).read_text()
        assert 'provider "registry.terraform.io/hashicorp/aws"' in lock and 'constraints = ">= 5.100.0"' in lock, \
            f"{stack}: no lock file from the mirror:\n{lock}"

    back = subprocess.run([sys.executable, "main.py"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=shell_environment(PAYMENT_MIGRATION_ENV="dev", CDKTF_OUTDIR=str(outdir)))
    assert back.returncode == 0, back.stderr
    assert all(name.endswith("-dev") for name in stack_folders(outdir)), stack_folders(outdir)


_EMULATOR = """
import sys
from pathlib import Path
from lib.config import load_config
from lib.local.emulator import Emulator, write_environment_script
config = load_config()
emulator = Emulator(config.emulator.port)
emulator.seed(config)
write_environment_script(config, emulator.endpoint, Path(sys.argv[1]))
print(emulator.endpoint, flush=True)
sys.stdin.read()
emulator.stop()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def local_emulator(tmp_path):
    """The local environment on a free port (a `make emulator` may hold 4566): its config copied
    with that endpoint, and the emulator serving it in a child process, env.sh written."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "local.toml"
    config.write_text((CONFIG_DIR / "local.toml").read_text().replace('"http://127.0.0.1:4566"', f'"{endpoint}"'))
    script = tmp_path / "env.sh"
    process = subprocess.Popen([sys.executable, "-c", _EMULATOR, str(script)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=shell_environment(PAYMENT_MIGRATION_CONFIG=str(config)))
    try:
        assert process.stdout.readline().strip() == endpoint
        yield endpoint, config, script
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_cdktf_deploy_of_the_local_stacks_works_offline_on_the_first_try(local_emulator, tmp_path):
    endpoint, config, script = local_emulator
    outdir = tmp_path / "cdktf.out"
    # As a user runs it, with the copied config named (env.sh names config/local.toml).
    commands = (f"source {script} && export PAYMENT_MIGRATION_CONFIG={config} && "
                f"cdktf deploy account-local network-local --auto-approve --output {outdir} && "
                "python -m lib.cutover status --json")
    run = subprocess.run(["bash", "-c", commands], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=shell_environment())
    deploy_output, _, status_output = run.stdout.rpartition("\n{")
    assert run.returncode == 1, f"exit {run.returncode}:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert deploy_output.count("Apply complete!") == 2, deploy_output[-4000:]
    assert "providers lock" not in deploy_output and "registry.terraform.io/v1" not in deploy_output

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=endpoint, aws_access_key_id="test",
                       aws_secret_access_key="test")
    assert [vpc["CidrBlock"] for vpc in ec2.describe_vpcs(Filters=[
        {"Name": "tag:Environment", "Values": ["local"]}])["Vpcs"]] == ["10.30.0.0/16"]
    s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=endpoint, aws_access_key_id="test",
                      aws_secret_access_key="test")
    states = {item["Key"] for item in s3.list_objects_v2(Bucket="payment-migration-tfstate-local")["Contents"]}
    assert {"local/account.tfstate", "local/network.tfstate"} <= states, states

    # status reached the emulator: the cutover stack is not deployed, so parts are missing (exit 1).
    status = json.loads("{" + status_output)
    assert status["environment"] == "local"
    assert status["errors"] and not [error for error in status["errors"] if "credentials" in error.lower()], \
        status["errors"]
