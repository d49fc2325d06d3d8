"""The emulator: a moto server on loopback, in this process, with small shims where moto answers
differently from AWS, seeded with what a config expects to exist before its first stack.

    python -m lib.local.emulator [--env local]

serves until interrupted, so that `cdktf deploy <stack>-local` can run in another terminal.

Each shim fixes one emulator bug in place, so the resource it concerns is applied like any other
instead of being left out of the local deploy (SHIMS lists them, with the moto behaviour each
fixes). Features moto lacks altogether are not imitated: lib/local/limits.py lists what the local
deploy leaves out because of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.config import Config, load_config

# The account and region moto answers for; the local stacks read the account from STS.
EMULATOR_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Shim:
    name: str
    moto_behaviour: str
    install: Callable[[], None]


def _epoch(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            return value
    return value


# DMS answers in JSON; timestamps are epoch seconds there. moto writes ISO strings instead.
_DMS_TIMESTAMP_KEYS = frozenset({
    "InstanceCreateTime", "FreeUntil", "ReplicationTaskCreationDate", "ReplicationTaskStartDate",
    "FreshStartDate", "StartDate", "StopDate", "FullLoadStartDate", "FullLoadFinishDate",
})


def _with_epoch_timestamps(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _epoch(value) if key in _DMS_TIMESTAMP_KEYS else _with_epoch_timestamps(value)
                for key, value in document.items()}
    if isinstance(document, list):
        return [_with_epoch_timestamps(item) for item in document]
    return document


def _install_dms_timestamps() -> None:
    from moto.dms import models

    for cls in (models.FakeReplicationInstance, models.FakeReplicationTask):
        original = cls.to_dict
        if getattr(original, "_payment_migration_shim", False):
            continue

        def to_dict(self, _original=original) -> dict[str, Any]:
            return _with_epoch_timestamps(_original(self))

        to_dict._payment_migration_shim = True
        cls.to_dict = to_dict


def _install_dms_task_ready() -> None:
    """A created DMS task is `ready` once AWS has validated it; moto leaves it `creating` for
    ever, and the provider waits for `ready` until it times out."""
    from moto.dms import models

    original = models.DatabaseMigrationServiceBackend.create_replication_task
    if getattr(original, "_payment_migration_shim", False):
        return

    def create_replication_task(self, *args, **kwargs):
        return original(self, *args, **kwargs).ready()

    create_replication_task._payment_migration_shim = True
    models.DatabaseMigrationServiceBackend.create_replication_task = create_replication_task


def _install_query_log_arn() -> None:
    """Route 53 takes a log group's ARN with or without the `:*` suffix; moto only with it, and
    the provider sends it without."""
    from moto.route53 import models

    original = models.Route53Backend.create_query_logging_config
    if getattr(original, "_payment_migration_shim", False):
        return

    def create_query_logging_config(self, hosted_zone_id: str, log_group_arn: str):
        if log_group_arn and not log_group_arn.endswith(":*"):
            config = original(self, hosted_zone_id, f"{log_group_arn}:*")
            config.cloud_watch_logs_log_group_arn = log_group_arn  # read back as it was sent
            return config
        return original(self, hosted_zone_id, log_group_arn)

    create_query_logging_config._payment_migration_shim = True
    models.Route53Backend.create_query_logging_config = create_query_logging_config


def _install_sfn_list_versions() -> None:
    """The provider reads a state machine's versions after creating it; moto keeps versions but
    does not answer ListStateMachineVersions (a 500 the provider retries, then fails on)."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions import responses

    if getattr(responses.StepFunctionResponse, "list_state_machine_versions", None) is not None:
        return

    def list_state_machine_versions(self) -> ActionResult:
        machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
        versions = sorted(getattr(machine, "versions", {}).values(), key=lambda version: version.version, reverse=True)
        return ActionResult({"stateMachineVersions": [
            {"stateMachineVersionArn": version.arn, "creationDate": version.creation_date.timestamp()}
            for version in versions]})

    responses.StepFunctionResponse.list_state_machine_versions = list_state_machine_versions


SHIMS = (
    Shim("dms-timestamps", "DMS responses carry timestamps as ISO strings instead of epoch seconds; "
         "the provider rejects them and cannot read back a replication instance or task",
         _install_dms_timestamps),
    Shim("dms-task-ready", "DMS tasks stay 'creating' for ever instead of becoming 'ready'",
         _install_dms_task_ready),
    Shim("route53-query-log-arn", "CreateQueryLoggingConfig accepts only a log-group ARN ending in ':*'",
         _install_query_log_arn),
    Shim("sfn-list-versions", "ListStateMachineVersions is not answered (500), which the provider calls "
         "after creating a state machine", _install_sfn_list_versions),
)


class Emulator:
    """A moto server on 127.0.0.1:`port` with the shims installed and AWS managed IAM policies
    loaded (the stacks attach some); reached over HTTP like AWS."""

    def __init__(self, port: int = 0, *, execute_state_machines: bool = False) -> None:
        """`execute_state_machines`: moto runs Step Functions executions (its own interpreter),
        which must be switched on before any state machine is created."""
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = True
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = execute_state_machines
        for shim in SHIMS:
            shim.install()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        host, bound_port = self._server.get_host_and_port()
        self.port = bound_port
        self.endpoint = f"http://{host}:{bound_port}"
        # moto's Step Functions interpreter calls other services on localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(bound_port)

    @property
    def environment(self) -> dict[str, str]:
        """What a process (boto3, the AWS CLI) needs to talk to this emulator instead of AWS."""
        from lib.local.wiring import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY_VALUE

        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_ACCESS_KEY_VALUE, "AWS_DEFAULT_REGION": "eu-west-1",
                "AWS_REGION": "eu-west-1"}

    def client(self, service: str, region: str = "eu-west-1"):
        import boto3

        env = self.environment
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self._server.stop()

    def seed(self, config: Config) -> list[str]:
        """Create what `config` expects to exist before its first stack: the state bucket
        (versioned) and the VPN or transit gateway named in it. Idempotent; returns what it did."""
        done = []
        s3 = self.client("s3", config.state.region)
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        if config.state.bucket not in existing:
            location = ({} if config.state.region == "us-east-1"
                        else {"CreateBucketConfiguration": {"LocationConstraint": config.state.region}})
            s3.create_bucket(Bucket=config.state.bucket, **location)
            s3.put_bucket_versioning(Bucket=config.state.bucket, VersioningConfiguration={"Status": "Enabled"})
            done.append(f"state bucket {config.state.bucket}")
        done += _seed_onprem_gateway(config)
        return done


def _seed_onprem_gateway(config: Config) -> list[str]:
    """The VPN (or transit) gateway with the id the config names. EC2 picks ids itself, so it is
    created in moto's backend directly, as the network team would have created it in AWS."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.transit_gateway import TransitGateway
    from moto.ec2.models.vpn_gateway import VpnGateway

    backend = ec2_backends[EMULATOR_ACCOUNT_ID][config.region]
    onprem = config.onprem
    if onprem.vpn_gateway_id and onprem.vpn_gateway_id not in backend.vpn_gateways:
        backend.vpn_gateways[onprem.vpn_gateway_id] = VpnGateway(
            backend, onprem.vpn_gateway_id, "ipsec.1", None, None, {"Name": f"payment-migration {config.name} on-prem"})
        return [f"VPN gateway {onprem.vpn_gateway_id}"]
    if onprem.transit_gateway_id and onprem.transit_gateway_id not in backend.transit_gateways:
        gateway = TransitGateway(backend, description=f"payment-migration {config.name} on-prem")
        gateway.id = onprem.transit_gateway_id
        backend.transit_gateways[onprem.transit_gateway_id] = gateway
        return [f"transit gateway {onprem.transit_gateway_id}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.local.emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=os.environ.get("PAYMENT_MIGRATION_ENV", "local"),
                        help="the environment whose [emulator] endpoint to serve (default local)")
    args = parser.parse_args(argv)
    config = load_config(args.env)
    if config.emulator is None:
        print(f"error: config/{args.env}.toml has no [emulator] section", file=sys.stderr)
        return 2
    emulator = Emulator(config.emulator.port)
    for item in emulator.seed(config):
        print(f"==> created {item}", flush=True)
    print(f"==> emulator serving {emulator.endpoint} for environment {config.name}; Ctrl-C stops it", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
