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
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.clients < 1 or args.bake_checks < 1 or args.bake_interval < 1:
        parser.error("--rate, --clients, --bake-checks and --bake-interval must be positive")
    try:
        config = load_config(args.env)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if config.emulator is None:
        print(f"error: config/{args.env}.toml has no [emulator] section: the rehearsal runs only against the "
              "emulator", file=sys.stderr)
        return 2
    from lib.local.rehearsal.runbook import Rehearsal

    return Rehearsal(config, rate=args.rate, clients=args.clients, bake_checks=args.bake_checks,
                     bake_interval=args.bake_interval).run()


if __name__ == "__main__":
    sys.exit(main())
