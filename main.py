#!/usr/bin/env python
"""Synthesizes every stack of one environment: PAYMENT_MIGRATION_ENV=<env> (default dev) selects
config/<env>.toml. The config is validated before any construct exists; an error names the key,
exits 2 and writes nothing."""

import json
import os
import shutil
import sys
from pathlib import Path

from lib import dms_settings
from lib.config import ConfigError, config_path, load_config

# The jsii runtime runs on the Node 22 LTS that package.json pins, however this is started
# (make, cdktf deploy, or by hand): the machine's Node may be end-of-life and print a banner.
PINNED_NODE = Path(__file__).resolve().parent / "node_modules" / ".bin" / "node"


def main() -> int:
    try:
        config = load_config()
        # Outside legacy-sync the DMS task settings are frozen: changing them stops a running task.
        dms_settings.check_frozen(config)
    except ConfigError as error:
        print(f"config error in {config_path()}: {error}", file=sys.stderr)
        return 2
    if PINNED_NODE.exists():
        os.environ.setdefault("JSII_NODE", str(PINNED_NODE))
    from lib.app import build_app  # the provider bindings load only for a valid config (~11 s)

    # The cdktf CLI names the output folder in CDKTF_OUTDIR; by hand it is cdktf.out.
    outdir = Path(os.environ.get("CDKTF_OUTDIR") or "cdktf.out").resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    excluded: list[dict[str, str]] = []
    build_app(config, outdir=str(outdir), excluded=excluded).synth()
    stacks = sorted(json.loads((outdir / "manifest.json").read_text())["stacks"])
    if not run_by_cdktf_cli():
        remove_other_stacks(outdir, stacks)
    if config.emulator is not None:  # a local environment: what its stacks leave out, for the deploy report
        (outdir / "excluded.json").write_text(json.dumps(excluded, indent=2) + "\n")
        lock_local_providers(outdir, stacks)
    if dms_settings.record(config):
        # stdout: the cdktf CLI shows everything its app writes to stderr as an error.
        print(f"recorded the DMS task settings of phase {dms_settings.FROZEN_PHASE} in "
              f"{dms_settings.record_path(config).relative_to(Path(__file__).resolve().parent)}: commit it")
    return 0


def run_by_cdktf_cli() -> bool:
    """Whether the cdktf CLI started this synthesis: it always passes its context in CDKTF_CONTEXT_JSON."""
    return "CDKTF_CONTEXT_JSON" in os.environ


def remove_other_stacks(outdir: Path, stacks: list[str]) -> None:
    """Removes the stack folders this synthesis did not write (another environment's), as the cdktf
    CLI does after its own syntheses. Only by hand: the CLI lists the folders before it starts the
    app and deletes the extra ones afterwards, failing on any that is already gone. The folders of
    the stacks written stay whole, with Terraform's lock file and working directory."""
    stacks_dir = outdir / "stacks"
    if not stacks_dir.is_dir():
        return
    for entry in stacks_dir.iterdir():
        if entry.name not in stacks:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def lock_local_providers(outdir: Path, stacks: list[str]) -> None:
    """Gives each stack of a local environment a provider lock file made from this machine's
    filesystem mirror, so that `cdktf deploy` does not run `terraform providers lock`, which asks
    the registry whatever the CLI configuration says."""
    from lib.terraform import TerraformError, find_mirror, lock_from_mirror

    try:
        written = lock_from_mirror([outdir / "stacks" / stack for stack in stacks], find_mirror())
    except TerraformError as error:
        print(f"warning: no provider lock files for the local stacks: {error}", file=sys.stderr)
        return
    if written:
        print(f"wrote the provider lock file of {len(written)} local stack(s) from the mirror")


if __name__ == "__main__":
    sys.exit(main())
