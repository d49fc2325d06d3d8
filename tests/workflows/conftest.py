"""The controller's state machines (lib/workflows/cutover.py) run by moto's Step Functions
interpreter, with the real step handlers behind their Task states.

One Emulator (a moto server in this process, execution of state machines switched on) per module,
and the two PostgreSQL servers of lib/local/postgres/replication.py joined by logical replication (on-prem
→ aws running). Once per module, `deployed` builds what the stacks leave behind — the routing and
monitoring world of tests/rollback/world.py (weighted pair, alarms, writer parameter, alarm topic with
a queue subscribed), the four Lambda functions (a dummy zip; their environment as the stacks set it)
and the three state machines made from the real definitions with those functions' ARNs — and the real
handlers are registered in InProcessLambdas:

    payment-cutover-steps  payment_cutover.handler      REPLICATION_DRIVER=postgres-logical
    payment-validation     payment_validation.handler   ONPREM_DB_* on-prem, AURORA_DB_* aws
    payment-traffic        payment_rollback.traffic     the hosted zone, alarms, writer parameter
    payment-rollback       payment_rollback.handler     … and the rollback state machine, the topic

Before each test, `controller` puts it all back cheaply (tables emptied, fences lifted, forward
replication re-made; writer, weights, alarms, topic queue as deployed).

What the module changes in the process (moto's execution switch, MOTO_PORT, the AWS environment,
moto's LambdaFunction.invoke, os.environ's per-thread overlay) is put back when it ends.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import secrets as token
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import psycopg2
import pytest

from lib.cutover.executions import history as execution_history
from lib.local.postgres.replication import (
    ReplicatedPair,
    acquire_servers,
    cutover_environment,
    release_servers,
    shared_pair,
)
from lib.workflows.cutover import advance_definition, cutover_definition, rollback_definition
from tests.rollback.world import (
    ADVANCE_MACHINE_NAME,
    CUTOVER_MACHINE_NAME,
    FALLBACK_ALARM_NAMES,
    FORWARD_ALARM_NAMES,
    HEALTH_ALARM_NAMES,
    REGION,
    ROLLBACK_ALARM_NAMES,
    WRITER_PARAMETER,
    World,
    build_world,
)

ACCOUNT_ID = "123456789012"
STEP_FUNCTION = "payment-cutover-steps-test"
VALIDATION_FUNCTION = "payment-validation-test"
TRAFFIC_FUNCTION = "payment-traffic-test"
ROLLBACK_FUNCTION = "payment-rollback-test"
# The advance definition's own defaults; executions pass a short bake in their input.
BAKE_CHECKS, BAKE_INTERVAL_SECONDS = 5, 60
EXECUTION_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="session")
def servers():
    """The two PostgreSQL servers of this process (shared with tests/cutover and tests/api)."""
    yield acquire_servers()
    release_servers()


@dataclass
class Emulator:
    emulator: Any  # lib.local.emulator.Emulator
    lambdas: Any  # lib.local.lambdas.InProcessLambdas
    validation_handler: Any  # payment_validation.handler, imported with the emulator's endpoint


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    from moto.awslambda import models as lambda_models
    from moto.core.config import default_user_config

    from lib.local.emulator import Emulator as MotoEmulator
    from lib.local.lambdas import InProcessLambdas

    with pytest.MonkeyPatch.context() as patch:
        # Put back at the end: the environ object (InProcessLambdas overlays it per thread), moto's
        # switches (the Emulator sets them in place: each gets a copy here), Lambda's invoke.
        patch.setattr(os, "environ", os.environ)
        patch.setitem(default_user_config, "stepfunctions", dict(default_user_config.get("stepfunctions", {})))
        patch.setitem(default_user_config, "iam", dict(default_user_config.get("iam", {})))
        patch.setattr(lambda_models.LambdaFunction, "invoke", lambda_models.LambdaFunction.invoke)
        patch.setenv("MOTO_PORT", "0")  # the Emulator sets it to its port; undone with the rest
        server = MotoEmulator(0, execute_state_machines=True)
        # No step here reads AWS managed policies; without them a reset IAM backend is quick to rebuild.
        default_user_config["iam"]["load_aws_managed_policies"] = False
        try:
            for name, value in {**server.environment, "MOTO_PORT": str(server.port)}.items():
                patch.setenv(name, value)
            patch.delenv("AWS_SESSION_TOKEN", raising=False)
            patch.delenv("AWS_PROFILE", raising=False)
            lambdas = InProcessLambdas(account_id=ACCOUNT_ID, region=REGION)
            lambdas.install()
            # Its Secrets Manager client is made at import: import it again with this endpoint.
            validation = importlib.reload(importlib.import_module("payment_validation.handler"))
            yield Emulator(server, lambdas, validation)
        finally:
            _stop_running_executions(server)
            server.stop()


def _stop_running_executions(server) -> None:
    """So that a step still running cannot write into the next test's world."""
    stepfunctions = server.client("stepfunctions")
    for machine in stepfunctions.list_state_machines()["stateMachines"]:
        for execution in stepfunctions.list_executions(stateMachineArn=machine["stateMachineArn"],
                                                       statusFilter="RUNNING")["executions"]:
            stepfunctions.stop_execution(executionArn=execution["executionArn"])


# -- executions ------------------------------------------------------------------------------------


@dataclass
class Execution:
    """A finished execution: its description and its history."""

    arn: str
    description: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return self.description["status"]

    @property
    def error(self) -> str | None:
        return self.description.get("error")

    @property
    def cause(self) -> str | None:
        return self.description.get("cause")

    @property
    def output(self) -> dict[str, Any]:
        return json.loads(self.description["output"])

    def states_entered(self) -> list[str]:
        return state_names(self.events)

    def task_outcomes(self, state: str) -> list[tuple[str, Any]]:
        """What each attempt of a Task state did, in order: ("TaskSucceeded", its Payload) or
        ("TaskFailed", its error name)."""
        return task_outcomes(self.events, state)

    def result(self, state: str) -> Any:
        """The Payload of the last successful attempt of a Task state."""
        outcomes = [payload for kind, payload in self.task_outcomes(state) if kind == "TaskSucceeded"]
        assert outcomes, f"{state} never succeeded: {self.task_outcomes(state)}"
        return outcomes[-1]


def state_names(events: list[dict[str, Any]]) -> list[str]:
    return [event["stateEnteredEventDetails"]["name"] for event in events if "stateEnteredEventDetails" in event]


def task_outcomes(events: list[dict[str, Any]], state: str) -> list[tuple[str, Any]]:
    outcomes, current = [], None
    for event in events:
        if "stateEnteredEventDetails" in event:
            current = event["stateEnteredEventDetails"]["name"]
        elif current == state and event["type"] == "TaskSucceeded":
            outcomes.append(("TaskSucceeded", json.loads(event["taskSucceededEventDetails"]["output"])["Payload"]))
        elif current == state and event["type"] == "TaskFailed":
            outcomes.append(("TaskFailed", event["taskFailedEventDetails"]["error"]))
    return outcomes


# -- the controller's world --------------------------------------------------------------------------


@dataclass
class Controller:
    """Everything the state machines act on, and how a test starts and reads their executions."""

    emulator: Emulator
    world: World
    pair: ReplicatedPair
    stepfunctions: Any
    functions: dict[str, str]  # function name -> ARN
    machines: dict[str, str] = field(default_factory=dict)  # "cutover" | "rollback" | "advance" -> ARN
    step_environment: dict[str, str] = field(default_factory=dict)
    _names: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    # executions

    def start(self, machine: str, execution_input: dict[str, Any] | None = None) -> str:
        name = f"{machine}-{next(self._names)}-{token.token_hex(3)}"
        return self.stepfunctions.start_execution(stateMachineArn=self.machines[machine], name=name,
                                                  input=json.dumps(execution_input or {}))["executionArn"]

    def wait(self, arn: str, timeout: float = EXECUTION_TIMEOUT_SECONDS) -> Execution:
        deadline = time.monotonic() + timeout
        while (description := self.stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                self.stepfunctions.stop_execution(executionArn=arn)
                raise AssertionError(f"{arn} still running after {timeout} s: {state_names(self.history(arn))}")
            time.sleep(0.1)
        return Execution(arn, description, self.history(arn))

    def run(self, machine: str, execution_input: dict[str, Any] | None = None) -> Execution:
        return self.wait(self.start(machine, execution_input))

    def history(self, arn: str) -> list[dict[str, Any]]:
        return execution_history(self.stepfunctions, arn)

    def when(self, arn: str, condition: Callable[[list[dict[str, Any]]], bool], action: Callable[[], None],
             what: str) -> threading.Thread:
        """In another thread: once the execution's history satisfies `condition`, run `action`."""
        def watch() -> None:
            deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                if condition(self.history(arn)):
                    action()
                    return
                time.sleep(0.05)
            raise AssertionError(f"never saw {what}")

        thread = threading.Thread(target=watch, name=f"when {what}", daemon=True)
        thread.start()
        return thread

    # what the executions changed

    def weights(self) -> dict[str, int]:
        return self.world.weights()

    def writer(self) -> dict[str, Any]:
        return self.world.writer()

    def actions_enabled(self) -> dict[str, bool]:
        return {name: self.world.alarm(name)["ActionsEnabled"] for name in (*FORWARD_ALARM_NAMES,
                                                                             *FALLBACK_ALARM_NAMES)}

    def fence(self) -> dict[str, str]:
        """Each side's fence of payment_app, read from the catalogs."""
        from payment_cutover.fence import fence_state

        states = {}
        for side in ("onprem", "aws"):
            conn = self.pair.admin_connection(side)
            states[side] = fence_state(conn, ["payment_app"])["payment_app"]
        return states

    def subscriptions(self) -> dict[str, list[str]]:
        """The subscriptions on each side's database, by name: a side subscribes to the other."""
        return {side: sorted(row[0] for row in db.query(
                    "SELECT subname FROM pg_subscription WHERE subdbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"))
                for side, db in self.pair.sides.items()}

    def app_write(self, side: str, entity_id: str) -> int | str:
        """An audit entry written as payment_app, as the application would (it may insert there,
        not read): the audit_id it got, or the SQLSTATE of the refusal."""
        conn = self.pair.sides[side].connect("payment_app")
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'probe')",
                            (entity_id,))
        except psycopg2.Error as error:
            return error.pgcode
        finally:
            conn.close()
        return self.pair.sides[side].scalar("SELECT audit_id FROM audit_log WHERE entity_id = %s", (entity_id,))

    def has_audit(self, side: str, entity_id: str) -> bool:
        return bool(self.pair.sides[side].scalar("SELECT count(*) FROM audit_log WHERE entity_id = %s", (entity_id,)))

    def register_step_function(self, **overrides: str) -> None:
        """The cutover steps' handler again, with some of its environment changed (until the next test)."""
        from payment_cutover import handler

        self.emulator.lambdas.register(STEP_FUNCTION, handler.lambda_handler, overrides=overrides)


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    raise RuntimeError('runs in-process')\n")
    return buffer.getvalue()


def create_function(awslambda, role_arn: str, name: str, handler: str, environment: dict[str, str]) -> str:
    """A function as a stack leaves it (its code never runs: InProcessLambdas runs the handler)."""
    return awslambda.create_function(FunctionName=name, Runtime="python3.12", Role=role_arn, Handler=handler,
                                     Code={"ZipFile": _dummy_zip()}, Timeout=900,
                                     Environment={"Variables": environment})["FunctionArn"]


def _validation_environment(pair: ReplicatedPair, secretsmanager, step_environment: dict[str, str]) -> dict[str, str]:
    """As the validation stack sets it: read-only payment_validator on both sides, TLS as the step
    function has it for these servers; rechecks short (the differences the tests make stay)."""
    env = {"RECHECK_SECONDS": "0.2", "RECHECK_ROUNDS": "1", "POWERTOOLS_METRICS_NAMESPACE": "PaymentMigrationTest",
           **{name: step_environment[name] for name in ("DB_SSLMODE", "DB_SSLROOTCERT") if name in step_environment}}
    for side, prefix in (("onprem", "ONPREM_DB_"), ("aws", "AURORA_DB_")):
        db = pair.sides[side]
        if step_environment.get(f"{prefix}SSLROOTCERT"):
            env[f"{prefix}SSLROOTCERT"] = step_environment[f"{prefix}SSLROOTCERT"]
        secret = secretsmanager.create_secret(
            Name=f"{side}-payment_validator-{token.token_hex(4)}",
            SecretString=json.dumps({"username": "payment_validator",
                                     "password": db.server.passwords["payment_validator"]}))["ARN"]
        env.update({f"{prefix}HOST": db.postgres.host, f"{prefix}PORT": str(db.postgres.port),
                    f"{prefix}NAME": db.dbname, f"{prefix}SECRET_ARN": secret})
    return env


def _register_handlers(emulator: Emulator) -> None:
    from payment_cutover import handler as step_handler
    from payment_rollback import handler as rollback_handler
    from payment_rollback import traffic

    lambdas = emulator.lambdas
    lambdas.register(STEP_FUNCTION, step_handler.lambda_handler)
    lambdas.register(VALIDATION_FUNCTION, emulator.validation_handler.lambda_handler)
    lambdas.register(TRAFFIC_FUNCTION, traffic.lambda_handler)
    lambdas.register(ROLLBACK_FUNCTION, rollback_handler.lambda_handler)
    # Clients made from each test's environment, no metrics left over.
    for cached in (step_handler.aws_clients, rollback_handler.aws_clients, traffic.aws_clients):
        cached.cache_clear()
    step_handler.metrics.clear_metrics()
    rollback_handler.metrics.clear_metrics()


@pytest.fixture(scope="module")
def deployed(emulator: Emulator, servers) -> Iterator[Controller]:
    """What the stacks deploy, made once per module (moto parses a definition in tenths of a second)."""
    emulator.emulator.reset()
    pair = shared_pair(servers)
    world = build_world(onprem_weight=50, aws_weight=50, aws_member="records")
    world.writer_rollback_wait_seconds = EXECUTION_TIMEOUT_SECONDS
    iam, awslambda = boto3.client("iam"), boto3.client("lambda")
    role_arn = iam.create_role(RoleName="payment-migration-controller-test",
                               AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))[
        "Role"]["Arn"]
    secretsmanager = boto3.client("secretsmanager")
    # The shared pair keeps its database names and slot names for the session: this environment
    # holds for every test of the module.
    step_environment = cutover_environment(pair, WRITER_PARAMETER, secretsmanager)
    functions = {
        STEP_FUNCTION: create_function(awslambda, role_arn, STEP_FUNCTION, "payment_cutover.handler.lambda_handler",
                                       step_environment),
        VALIDATION_FUNCTION: create_function(awslambda, role_arn, VALIDATION_FUNCTION,
                                             "payment_validation.handler.lambda_handler",
                                             _validation_environment(pair, secretsmanager, step_environment)),
        TRAFFIC_FUNCTION: create_function(awslambda, role_arn, TRAFFIC_FUNCTION,
                                          "payment_rollback.traffic.lambda_handler", world.environment()),
        ROLLBACK_FUNCTION: create_function(awslambda, role_arn, ROLLBACK_FUNCTION,
                                           "payment_rollback.handler.lambda_handler", world.environment()),
    }
    stepfunctions = boto3.client("stepfunctions")
    arns = {"step_arn": functions[STEP_FUNCTION], "validation_arn": functions[VALIDATION_FUNCTION],
            "traffic_arn": functions[TRAFFIC_FUNCTION]}
    # Under the names the rollback function knows them by: it starts the rollback machine, stops
    # the advance executions in flight (but the one calling it) and waits for a cutover in flight.
    machines = {
        "cutover": world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_definition(**arns)),
        "rollback": world.create_rollback_machine(rollback_definition(**arns)),
        "advance": world.create_controller_machine(ADVANCE_MACHINE_NAME, advance_definition(
            traffic_arn=functions[TRAFFIC_FUNCTION], validation_arn=functions[VALIDATION_FUNCTION],
            rollback_arn=functions[ROLLBACK_FUNCTION], bake_checks=BAKE_CHECKS,
            bake_interval_seconds=BAKE_INTERVAL_SECONDS)),
    }
    environment = world.environment()
    assert (environment["ADVANCE_STATE_MACHINE_ARN"], environment["CUTOVER_STATE_MACHINE_ARN"]) == (
        machines["advance"], machines["cutover"])
    yield Controller(emulator=emulator, world=world, pair=pair, stepfunctions=stepfunctions, functions=functions,
                     machines=machines, step_environment=step_environment)
    pair.close_connections()


@pytest.fixture
def controller(deployed: Controller, servers) -> Iterator[Controller]:
    """The deployed controller, put back where a data cutover starts from: the pair reset (forward
    running, both sides open, empty tables), on-prem the writer (epoch 0), weights at "split"
    (50/50), every alarm OK with its actions on, the topic's queue empty, the handlers as deployed."""
    world, stepfunctions = deployed.world, deployed.stepfunctions
    assert shared_pair(servers) is deployed.pair  # reset in place
    world.set_writer("onprem", 0)
    world.set_weights(onprem=50, aws=50)
    # What the controller's publish_metrics step measures on the reset pair (both sides open): the
    # rollback function reads it before it calls an on-prem writer one that accepts writes.
    world.publish_fence(onprem=0, aws=0)
    for cloudwatch, names in ((world.cloudwatch, (*ROLLBACK_ALARM_NAMES, *FORWARD_ALARM_NAMES,
                                                  *FALLBACK_ALARM_NAMES)),
                              (world.health_cloudwatch, HEALTH_ALARM_NAMES)):
        cloudwatch.enable_alarm_actions(AlarmNames=list(names))
        for name in names:
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test reset")
    world.notifications()
    # The rollback function names its execution after the writer epoch: a machine with no
    # executions, so that it starts one instead of joining an earlier test's.
    if stepfunctions.list_executions(stateMachineArn=deployed.machines["rollback"])["executions"]:
        stepfunctions.delete_state_machine(stateMachineArn=deployed.machines["rollback"])
        world.create_rollback_machine(rollback_definition(
            step_arn=deployed.functions[STEP_FUNCTION], validation_arn=deployed.functions[VALIDATION_FUNCTION],
            traffic_arn=deployed.functions[TRAFFIC_FUNCTION]))
    _register_handlers(deployed.emulator)
    try:
        yield deployed
    finally:
        _stop_running_executions(deployed.emulator.emulator)
        deployed.pair.close_connections()
