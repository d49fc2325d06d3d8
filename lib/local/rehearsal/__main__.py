"""python -m lib.local.rehearsal: see lib/local/rehearsal/__init__.py."""

from __future__ import annotations

import argparse
import sys

from lib.config import ConfigError, load_config
from lib.local import rehearsal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.local.rehearsal",
                                     description=rehearsal.__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="local",
                        help="an environment with an [emulator] section (default local)")
    parser.add_argument("--rate", type=float, default=8.0, help="payments per second, all clients together (default 8)")
    parser.add_argument("--clients", type=int, default=4,
                        help="client threads, each its own API execution environment (default 4)")
    parser.add_argument("--bake-checks", type=int, default=2, help="alarm checks while a phase bakes (default 2)")
    parser.add_argument("--bake-interval", type=int, default=5, help="seconds between them (default 5)")
    parser.add_argument("--mode", choices=("legacy", "follows-writer"), default=None,
                        help="cutover.onprem_application for this run (default: the environment's config)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.clients < 1 or args.bake_checks < 1 or args.bake_interval < 1:
        parser.error("--rate, --clients, --bake-checks and --bake-interval must be positive")
    try:
        config = load_config(args.env)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.mode and args.mode != config.cutover.onprem_application:
        config = _with_mode(args.env, args.mode)
    if config.emulator is None:
        print(f"error: config/{args.env}.toml has no [emulator] section: the rehearsal runs only against the "
              "emulator", file=sys.stderr)
        return 2
    from lib.local.rehearsal.runbook import Rehearsal

    return Rehearsal(config, rate=args.rate, clients=args.clients, bake_checks=args.bake_checks,
                     bake_interval=args.bake_interval).run()


def _with_mode(env: str, mode: str):
    """The environment's config with cutover.onprem_application = `mode`, written beside the
    rehearsal's output and named by PAYMENT_MIGRATION_CONFIG, so the synthesis (another process)
    deploys the same state machines the run expects."""
    import os
    import re

    from lib.config import FILE_VARIABLE, config_path
    from lib.local.rehearsal.runbook import WORK_DIR

    text = config_path(env).read_text()
    line = f'onprem_application = "{mode}"'
    text, replaced = re.subn(r'(?m)^onprem_application = "[^"]*"', line, text)
    if not replaced:
        text += f"\n[cutover]\n{line}\n" if "[cutover]" not in text else text.replace("[cutover]\n", f"[cutover]\n{line}\n")
    WORK_DIR.parent.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR.parent / f"rehearsal-{env}-{mode}.toml"
    path.write_text(text)
    os.environ[FILE_VARIABLE] = str(path)
    return load_config(env)


if __name__ == "__main__":
    sys.exit(main())
