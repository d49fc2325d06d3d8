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

    # The cdktf CLI names the output folder in CDKTF_OUTDIR; by hand it is cdktf.out. Stacks of an
    # environment synthesized earlier into the same folder are removed, as the CLI does.
    outdir = Path(os.environ.get("CDKTF_OUTDIR") or "cdktf.out").resolve()
    shutil.rmtree(outdir / "stacks", ignore_errors=True)
    outdir.mkdir(parents=True, exist_ok=True)
    excluded: list[dict[str, str]] = []
    build_app(config, outdir=str(outdir), excluded=excluded).synth()
    if config.emulator is not None:  # a local environment: what its stacks leave out, for the deploy report
        (outdir / "excluded.json").write_text(json.dumps(excluded, indent=2) + "\n")
    if dms_settings.record(config):
        print(f"recorded the DMS task settings of phase {dms_settings.FROZEN_PHASE} in "
              f"{dms_settings.record_path(config).relative_to(Path(__file__).resolve().parent)}: commit it",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
