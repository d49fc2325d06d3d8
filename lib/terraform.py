"""Terraform, run offline against the synthesized stacks: the provider comes from a filesystem
mirror on this machine, never from the registry.

    python -m lib.terraform validate [--out cdktf.out] [stack ...]

runs `terraform init -backend=false` and `terraform validate` on every synthesized stack (or the
named ones), each in a scratch copy under build/terraform/validate/<stack> so `cdktf.out` stays
exactly what `cdktf deploy` reads.

The stacks pin the provider users deploy with (the bindings' version). The mirror may hold an
older release; scratch copies and local deploys accept the mirror's version through an override
file, which Terraform merges into the configuration (`*_override.tf.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "build" / "terraform"
SYNTH_DIR = REPO_ROOT / "cdktf.out"

PROVIDER = "registry.terraform.io/hashicorp/aws"
# Points at a mirror root (the folder holding registry.terraform.io) instead of searching for one.
MIRROR_VARIABLE = "PAYMENT_MIGRATION_TF_MIRROR"
# Where Terraform and its packagers usually put a system-wide mirror, searched before the disk.
_LIKELY_MIRROR_ROOTS = (
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
    Path("/opt"),
)
_SKIPPED_SEARCH_ROOTS = {"/proc", "/sys", "/dev", "/run", "/tmp", "/var/lib/docker"}
OVERRIDE_FILE = "zz_provider_mirror_override.tf.json"


class TerraformError(Exception):
    """Terraform or its provider is missing, or a Terraform command failed; the message says which."""


@dataclass(frozen=True)
class Mirror:
    root: Path
    versions: tuple[str, ...]  # of hashicorp/aws, newest first

    @property
    def version(self) -> str:
        return self.versions[0]


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if not found:
        raise TerraformError("terraform is not on the PATH: install Terraform 1.10 or later "
                             "(the stacks' S3 lock file needs 1.10)")
    return found


def terraform_version(binary: str | None = None) -> str:
    output = subprocess.run([binary or terraform_binary(), "version", "-json"], capture_output=True, text=True,
                            check=True, env=_quiet_environment()).stdout
    return json.loads(output)["terraform_version"]


def find_mirror() -> Mirror:
    """The filesystem mirror holding hashicorp/aws: $PAYMENT_MIGRATION_TF_MIRROR, else the usual
    places, else the first one found on this machine's disk."""
    override = os.environ.get(MIRROR_VARIABLE, "").strip()
    if override:
        mirror = _mirror_at(Path(override))
        if mirror is None:
            raise TerraformError(f"{MIRROR_VARIABLE}={override} holds no {PROVIDER} provider "
                                 f"(expected {override}/{PROVIDER}/<version>/<os>_<arch>/)")
        return mirror
    remembered = BUILD_DIR / "mirror-root"
    candidates = [Path(remembered.read_text().strip())] if remembered.is_file() else []
    for root in [*candidates, *_LIKELY_MIRROR_ROOTS]:
        mirror = _mirror_at(root)
        if mirror is not None:
            return mirror
    for root in _search_disk():
        mirror = _mirror_at(root)
        if mirror is not None:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            remembered.write_text(f"{root}\n")  # the disk search takes seconds: remember its answer
            return mirror
    raise TerraformError(f"no Terraform filesystem mirror with {PROVIDER} on this machine: set {MIRROR_VARIABLE} "
                         "to the folder that holds registry.terraform.io/hashicorp/aws/<version>/")


def _mirror_at(root: Path) -> Mirror | None:
    provider_dir = root / PROVIDER
    platform = _platform()
    try:
        versions = [entry.name for entry in provider_dir.iterdir()
                    if (entry / platform).is_dir() and re.fullmatch(r"\d+\.\d+\.\d+", entry.name)]
    except OSError:
        return None
    if not versions:
        return None
    versions.sort(key=lambda version: tuple(int(part) for part in version.split(".")), reverse=True)
    return Mirror(root=root, versions=tuple(versions))


def _search_disk() -> Iterable[Path]:
    """Folders named registry.terraform.io anywhere on the root file system, parents yielded."""
    for directory, subdirs, _ in os.walk("/", topdown=True):
        if directory in _SKIPPED_SEARCH_ROOTS:
            subdirs[:] = []
            continue
        if "registry.terraform.io" in subdirs:
            yield Path(directory)
        # Skip trees that cannot hold a mirror and are large, and Terraform working directories
        # (their .terraform/providers only link to a mirror, usually one this search would find).
        subdirs[:] = [name for name in subdirs
                      if name not in ("node_modules", "__pycache__", ".git", "site-packages", ".terraform")]


def _platform() -> str:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{sys.platform}_{arch}"


def cli_config(mirror: Mirror, path: Path = BUILD_DIR / "terraformrc") -> Path:
    """A Terraform CLI config that installs hashicorp/aws from the mirror and nothing from the
    network, with a plugin cache so init does not unpack it once per stack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = {json.dumps(str(mirror.root))}\n"
        f"    include = [{json.dumps(PROVIDER)}]\n  }}\n"
        f"  direct {{\n    exclude = [{json.dumps(PROVIDER)}]\n  }}\n"
        "}\n"
        "disable_checkpoint = true\n"
    )
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _quiet_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
    env.update(extra or {})
    return env


class Terraform:
    """Runs terraform in one stack directory with the mirror's CLI config."""

    def __init__(self, directory: Path, mirror: Mirror, *, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.binary = terraform_binary()
        self.env = _quiet_environment({"TF_CLI_CONFIG_FILE": str(cli_config(mirror)), **(env or {})})

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        process = subprocess.run([self.binary, *args, "-no-color"], cwd=self.directory, env=self.env,
                                 capture_output=capture, text=True)
        if check and process.returncode != 0:
            detail = (process.stderr or "") + (process.stdout or "")
            raise TerraformError(f"terraform {' '.join(args)} failed in {shown(self.directory)}:\n{detail.strip()}")
        return process


def accept_mirror_version(stack_dir: Path, mirror: Mirror) -> None:
    """Let the stack in `stack_dir` use the mirror's provider release instead of the pinned one."""
    document = {"terraform": {"required_providers": {"aws": {"source": "aws", "version": mirror.version}}}}
    (stack_dir / OVERRIDE_FILE).write_text(json.dumps(document, indent=2) + "\n")


LOCK_FILE = ".terraform.lock.hcl"


def required_aws_version(stack_dir: Path) -> str | None:
    """The version constraint on hashicorp/aws in a synthesized stack, if it sets one."""
    document = json.loads((stack_dir / "cdk.tf.json").read_text())
    for requirement in document.get("terraform", {}).get("required_providers", {}).values():
        if isinstance(requirement, dict) and requirement.get("source", "").split("/")[-1] == "aws":
            return requirement.get("version")
    return None


def mirror_lock(mirror: Mirror, constraint: str | None) -> str:
    """The text of a provider lock file for hashicorp/aws within `constraint`, made from the mirror
    alone (`terraform providers lock -fs-mirror`, never the registry) for this machine's platform,
    and kept under build/terraform/provider-lock for the next synthesis."""
    key = re.sub(r"[^0-9A-Za-z.]+", "_", f"{mirror.version}-{constraint or 'any'}")
    directory = BUILD_DIR / "provider-lock" / key
    lock = directory / LOCK_FILE
    if not lock.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        requirement = {"source": "hashicorp/aws", **({"version": constraint} if constraint else {})}
        (directory / "main.tf.json").write_text(json.dumps(
            {"terraform": {"required_providers": {"aws": requirement}}}, indent=2) + "\n")
        terraform = Terraform(directory, mirror)
        terraform.run("providers", "lock", f"-fs-mirror={mirror.root}", f"-platform={_platform()}")
    return lock.read_text()


def lock_from_mirror(stack_dirs: Iterable[Path], mirror: Mirror) -> list[Path]:
    """Writes the mirror's provider lock file into every stack folder whose lock file is missing or
    differs; returns the folders written. The cdktf CLI then finds a lock that satisfies the stack's
    constraint and skips `terraform providers lock`, which would ask the registry."""
    written = []
    for stack_dir in stack_dirs:
        text = mirror_lock(mirror, required_aws_version(stack_dir))
        lock = stack_dir / LOCK_FILE
        if not lock.is_file() or lock.read_text() != text:
            lock.write_text(text)
            written.append(stack_dir)
    return written


def synthesized_stacks(synth_dir: Path = SYNTH_DIR) -> list[str]:
    manifest = synth_dir / "manifest.json"
    if not manifest.is_file():
        raise TerraformError(f"{shown(manifest)} is missing: run `make synth` first")
    return sorted(json.loads(manifest.read_text())["stacks"])


def scratch_copy(stack: str, synth_dir: Path, into: Path) -> Path:
    """A copy of one synthesized stack (its JSON and its assets) to run Terraform in."""
    source = synth_dir / "stacks" / stack
    target = into / stack
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.name != ".terraform" and entry.name != ".terraform.lock.hcl":
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    shutil.copy2(source / "cdk.tf.json", target / "cdk.tf.json")
    if (source / "assets").is_dir():
        shutil.copytree(source / "assets", target / "assets")
    return target


def validate(stacks: Sequence[str] | None = None, synth_dir: Path = SYNTH_DIR,
             work_dir: Path = BUILD_DIR / "validate", workers: int = 3) -> list[tuple[str, float]]:
    """`terraform validate` on each stack (a few at a time); raises TerraformError naming every
    invalid one."""
    mirror = find_mirror()
    names = list(stacks) if stacks else synthesized_stacks(synth_dir)
    print(f"==> terraform {terraform_version()} with {PROVIDER} {mirror.version} from {mirror.root}", flush=True)

    def check(name: str) -> tuple[str, float, list[str], list[str]]:
        started = time.monotonic()
        directory = scratch_copy(name, synth_dir, work_dir)
        accept_mirror_version(directory, mirror)
        terraform = Terraform(directory, mirror)
        terraform.run("init", "-backend=false", "-input=false")
        result = terraform.run("validate", "-json", check=False)
        report = json.loads(result.stdout or "{}")
        diagnostics = report.get("diagnostics", [])
        errors = [] if report.get("valid", False) else [
            f"{d.get('severity')}: {d.get('summary')} — {d.get('detail', '')}".strip() for d in diagnostics
        ] or [result.stderr.strip()]
        warnings = sorted({d.get("summary", "") for d in diagnostics if d.get("severity") == "warning"})
        return name, time.monotonic() - started, errors, warnings

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check, names))
    invalid = []
    for name, elapsed, errors, warnings in results:
        note = f" ({len(warnings)} warning(s): {'; '.join(warnings)})" if warnings else ""
        print(f"    {name}: {'INVALID' if errors else 'valid'} in {elapsed:.1f} s{note}", flush=True)
        if errors:
            invalid.append(f"{name}:\n  " + "\n  ".join(errors))
    if invalid:
        raise TerraformError("not valid:\n" + "\n".join(invalid))
    return [(name, elapsed) for name, elapsed, _, _ in results]


def shown(path: Path) -> str:
    """A path as the console and the reports show it: from the repository root when inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.terraform", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="terraform init -backend=false + validate on each stack")
    check.add_argument("--out", type=Path, default=SYNTH_DIR, help="the synthesized app (default cdktf.out)")
    check.add_argument("stacks", nargs="*", help="stack names (default: every synthesized stack)")
    commands.add_parser("mirror", help="print the provider mirror this machine uses")
    args = parser.parse_args(argv)
    try:
        if args.command == "mirror":
            mirror = find_mirror()
            print(f"{mirror.root} ({PROVIDER} {', '.join(mirror.versions)})")
            return 0
        validate(args.stacks, args.out)
    except TerraformError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
