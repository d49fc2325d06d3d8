"""The orchestrator: one environment's config in, the stacks out, wired by their attributes.
cdktf turns each value that crosses stacks into an output of its producer and a
`terraform_remote_state` read in its consumer."""

from __future__ import annotations

from pathlib import Path

from lib.bundler import DEFAULT_OUT_DIR, LAMBDA_ROOT, build_bundle
from lib.cdk import App, TerraformResource, TerraformStack
from lib.config import Config
from lib.local.limits import EXCLUDED_TYPES
from lib.stacks.account import AccountStack
from lib.stacks.compute import ComputeStack
from lib.stacks.cutover import CutoverStack
from lib.stacks.database import DatabaseStack
from lib.stacks.load_balancer import LoadBalancerStack
from lib.stacks.migration import MigrationStack
from lib.stacks.monitoring import MonitoringStack
from lib.stacks.network import NetworkStack
from lib.stacks.routing import RoutingStack
from lib.stacks.security import SecurityStack
from lib.stacks.validation import ValidationStack


# The functions that connect to the on-prem database carry its CA, to verify it (verify-full).
ONPREM_CA_IN_BUNDLE = "certs/onprem-ca.pem"
CONNECTS_TO_ONPREM = ("api", "validation", "cutover")


# The cutover steps compare what changed since their checkpoint with the validation engine (the slot
# they read needs the controller's REPLICATION): its package goes into their zip beside their own.
BORROWED_PACKAGES = {"cutover": ("validation", "payment_validation")}


def build_bundles(config: Config, out_dir: Path = DEFAULT_OUT_DIR) -> dict[str, Path]:
    """The Lambda zips for the configured runtime (rebuilt only when their inputs change). Those
    that connect to PostgreSQL carry the RDS CA bundle (the bundler adds it) and the on-prem CA."""
    return {name: build_bundle(LAMBDA_ROOT / name, out_dir, python_version=config.compute.python_version,
                               extra_files=_extra_files(config, name) or None)
            for name in ("api", "validation", "rollback", "cutover")}


def _extra_files(config: Config, name: str) -> dict[str, Path]:
    files = {ONPREM_CA_IN_BUNDLE: config.onprem.db_ca_certificate_path} if name in CONNECTS_TO_ONPREM else {}
    if name in BORROWED_PACKAGES:
        folder, package = BORROWED_PACKAGES[name]
        root = LAMBDA_ROOT / folder
        files.update({path.relative_to(root).as_posix(): path for path in sorted((root / package).rglob("*.py"))})
    return files


def build_app(config: Config, *, outdir: str = "cdktf.out", bundles: dict[str, Path] | None = None,
              excluded: list[dict[str, str]] | None = None) -> App:
    """The app for `config`. For a local environment, the resources the emulator cannot create
    are left out and, when `excluded` is given, listed there ({"stack", "address"})."""
    bundles = bundles if bundles is not None else build_bundles(config)
    app = App(outdir=outdir)
    if config.migration.create_account_roles:
        AccountStack(app, config=config)
    network = NetworkStack(app, config=config)
    security = SecurityStack(app, config=config, network=network)
    database = DatabaseStack(app, config=config, network=network, security=security)
    compute = ComputeStack(app, config=config, bundle=bundles["api"], network=network, security=security,
                           database=database)
    load_balancer = LoadBalancerStack(app, config=config, network=network, security=security, compute=compute)
    migration = MigrationStack(app, config=config, network=network, security=security, database=database)
    routing = RoutingStack(app, config=config, network=network, load_balancer=load_balancer)
    monitoring = MonitoringStack(app, config=config, compute=compute, load_balancer=load_balancer,
                                 database=database, migration=migration)
    validation = ValidationStack(app, config=config, bundle=bundles["validation"], network=network,
                                 security=security, database=database)
    CutoverStack(app, config=config, bundles=bundles, network=network, security=security, database=database,
                 migration=migration, routing=routing, monitoring=monitoring, validation=validation)
    if config.emulator is not None:
        removed = _leave_out_what_the_emulator_lacks(app)
        if excluded is not None:
            excluded.extend(removed)
    return app


def _leave_out_what_the_emulator_lacks(app: App) -> list[dict[str, str]]:
    """Removes the resource types lib/local/limits.py declares (moto has no API for them) from a
    local environment's stacks. Nothing else references them, which `terraform validate` proves."""
    doomed = [node for node in app.node.find_all()
              if isinstance(node, TerraformResource) and node.terraform_resource_type in EXCLUDED_TYPES]
    removed = []
    for node in doomed:
        stack = TerraformStack.of(node)
        removed.append({"stack": stack.node.id,
                        "address": f"{node.terraform_resource_type}.{stack.get_logical_id(node)}"})
        node.node.scope.node.try_remove_child(node.node.id)
    return removed
