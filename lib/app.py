"""The orchestrator: one environment's config in, the nine stacks out, wired by their attributes.
cdktf turns each value that crosses stacks into an output of its producer and a
`terraform_remote_state` read in its consumer."""

from __future__ import annotations

from cdktf import App

from lib.config import Config
from lib.stacks.database import DatabaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack


def build_app(config: Config, *, outdir: str = "cdktf.out") -> App:
    app = App(outdir=outdir)
    network = NetworkStack(app, config=config)
    security = SecurityStack(app, config=config, network=network)
    DatabaseStack(app, config=config, network=network, security=security)
    return app
