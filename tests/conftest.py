"""Shared fixtures: a real PostgreSQL server and a moto server, each started once per session."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each Lambda folder is the root of its own zip; its package has a distinct name
# (payment_api, payment_validation, payment_rollback, payment_cutover), so the folders can share
# sys.path; lib/lambda/common (payment_common, the runtime every zip carries) is one of them.
for lambda_root in sorted((ROOT / "lib" / "lambda").iterdir()):
    if lambda_root.is_dir() and str(lambda_root) not in sys.path:
        sys.path.insert(0, str(lambda_root))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# jsii runs on the Node 22 that package.json pins (the machine's Node 20 is end-of-life).
if (ROOT / "node_modules" / ".bin" / "node").exists():
    os.environ.setdefault("JSII_NODE", str(ROOT / "node_modules" / ".bin" / "node"))

from lib.local.postgres.server import PostgresServer, start_postgres  # noqa: E402
from tests.support.moto_server import MotoServer  # noqa: E402


# The fixtures that start a server, and the marker a test using one (directly or through another
# fixture) gets, so that `make test-fast` can leave it out. Each name means the same kind of server
# wherever it is defined: `servers` is always the replicated pair of lib/local/postgres/replication.py,
# `emulator` always a moto server in this process. A module that starts a server another way marks
# itself.
SERVER_FIXTURES = {
    "postgres": "postgres",
    "servers": "postgres",
    "moto_server": "moto",
    "emulator": "moto",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker in sorted({SERVER_FIXTURES[name] for name in used & SERVER_FIXTURES.keys()}):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    server = start_postgres()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def moto_server() -> MotoServer:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto server, with this process's boto3 pointed at it."""
    moto_server.reset()
    for name, value in moto_server.environment.items():
        monkeypatch.setenv(name, value)
    return moto_server


@dataclass(frozen=True)
class Synthesized:
    """The dev app, synthesized once: each stack's Terraform JSON and the manifest."""

    stacks: dict[str, dict]
    manifest: dict

    def stack(self, area: str) -> dict:
        return self.stacks[f"{area}-dev"]

    def resources(self, area: str, resource_type: str) -> dict[str, dict]:
        return self.stack(area).get("resource", {}).get(resource_type, {})

    def data(self, area: str, data_type: str) -> dict[str, dict]:
        return self.stack(area).get("data", {}).get(data_type, {})

    def key_policy(self, area: str, key_fragment: str) -> dict:
        """The parsed key policy of the one KMS key whose construct id contains `key_fragment`."""
        (key,) = [k for n, k in self.resources(area, "aws_kms_key").items() if key_fragment in n]
        return json.loads(key["policy"])


@pytest.fixture(scope="session")
def synthesize(tmp_path_factory: pytest.TempPathFactory):
    """Synthesizes the app for a config text. The first call loads the provider bindings (~11 s);
    later ones, for variants of the config, take about a second."""
    from lib.app import build_app, build_bundles
    from lib.config import parse_config

    bundles = {}

    def run(config_text: str) -> Synthesized:
        config = parse_config(config_text)
        if not bundles:
            bundles.update(build_bundles(config))
        outdir = tmp_path_factory.mktemp("cdktf.out")
        build_app(config, outdir=str(outdir), bundles=bundles).synth()
        stacks = {path.parent.name: json.loads(path.read_text())
                  for path in (outdir / "stacks").glob("*/cdk.tf.json")}
        return Synthesized(stacks=stacks, manifest=json.loads((outdir / "manifest.json").read_text()))

    return run


@pytest.fixture(scope="session")
def synthesized(synthesize) -> Synthesized:
    """The dev app, synthesized once per session and shared by every synth assertion."""
    from lib.config import CONFIG_DIR

    return synthesize((CONFIG_DIR / "dev.toml").read_text())
