"""The world the trials run in, without Terraform, made once and reset in place between trials:

- the two PostgreSQL servers of lib/local/postgres/replication.py (on-prem and "Aurora") joined by
  logical replication, its pair reset in place (`ReplicatedPair.reset`), commits synchronous
  (`synchronous_commit = on`: a server crash must not lose an acknowledged commit);
- a moto server executing state machines (lib.local.emulator), holding what the routing,
  monitoring and cutover stacks leave behind (tests/rollback/world.py: the weighted pair, the alarms,
  the writer parameter) and the cutover and writer-rollback state machines built by
  lib/workflows/cutover.py's builders, checked equal to the synthesized ones (definitions.py);
- the real handlers in this process (lib.local.lambdas.InProcessLambdas, as tests/workflows/
  conftest.py registers them), each wrapped so a fault can be injected when a given Task state
  invokes it.

The PostgreSQL harness is the one the tests and the rehearsal use (lib/local/postgres); the emulator
world is still the tests' (tests/rollback/world.py, tests/workflows/conftest.py) rather than a copy.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import psycopg2

from lib.names import SIDES

REPO_ROOT = Path(__file__).resolve().parents[3]
LAMBDA_ROOT = REPO_ROOT / "lib" / "lambda"
ROLES = ["payment_app"]
MACHINES = ("cutover", "rollback")
# Each machine moves the writer from → to.
DIRECTIONS = {"cutover": ("onprem", "aws"), "rollback": ("aws", "onprem")}
STEP_STATES = {"preflight": "Preflight", "checkpoint": "Checkpoint", "catch_up": "CatchUp", "fence": "Fence",
               "wait_replication": "WaitReplication", "validate_changes": "Validate",
               "advance_sequences": "AdvanceSequences", "switch_replication": "SwitchReplication",
               "prove_fence": "ProveFence", "open": "Open", "set_writer": "SetWriter", "abort": "Abort"}
SAMPLE_SECONDS = 0.02
EXECUTION_TIMEOUT_SECONDS = 150.0


def lambda_paths() -> None:
    for root in sorted(LAMBDA_ROOT.iterdir()):
        if root.is_dir() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def state_of(function: str, event: Any) -> str | None:
    """The Task state an invocation comes from, read from its payload (the definitions' payloads tell
    their Task states apart)."""
    if not isinstance(event, dict):
        return None
    if function == "step":
        return STEP_STATES.get(event.get("step"))
    if function == "validation":
        # the live run before the fence; the sequences inside it (the fenced comparison is a step)
        return "ValidateSequences" if event.get("sequences_only") or event.get("check_sequences") else "ValidateLive"
    if function == "traffic":
        if event.get("action") == "replication_alarms":
            return "ReplicationAlarms"
        if event.get("action") == "set_weights":
            return "TrafficToOnprem" if str(event.get("reason", "")).startswith("rollback:") else "MoveTraffic"
    return None


@dataclass
class Injection:
    """One fault armed for one Task state of one trial: fires at the first invocation from that state."""

    fault: Any
    state: str
    world: World
    fired: threading.Event = field(default_factory=threading.Event)
    healed: threading.Event = field(default_factory=threading.Event)
    heal_finished: threading.Event = field(default_factory=threading.Event)
    fired_at: float | None = None
    healed_at: float | None = None  # when its heal ended (time.time(), as fired_at)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def around(self, state: str | None, handler: Callable, event: Any, context: Any) -> Any:
        with self._lock:
            fire = state == self.state and not self.fired.is_set()
            if fire:
                self.fired.set()
        if not fire:
            again = state == self.state and getattr(self.fault, "every_invocation", False)
            return self.fault.around(self.world, handler, event, context) if again else handler(event, context)
        self.fired_at = time.time()
        self.world.log(f"    fault {self.fault.name} injected at {state}")
        try:
            self.fault.inject(self.world)
        except Exception as error:  # noqa: BLE001 - recorded: a fault that could not be injected
            self.errors.append(f"inject: {error!r}")
        threading.Thread(target=self._heal_later, name="heal", daemon=True).start()
        wrap = getattr(self.fault, "around", None)
        if wrap is not None:
            return wrap(self.world, handler, event, context)
        return handler(event, context)

    def _heal_later(self) -> None:
        time.sleep(float(getattr(self.fault, "hold_seconds", 2.0)))
        self.heal()

    def heal(self, timeout: float = EXECUTION_TIMEOUT_SECONDS + 30) -> None:
        """Heals the fault once; a second caller waits until the first one's heal has ended (a heal
        may take a while: the rollback an alarm triggered, for one)."""
        with self._lock:
            healing = self.healed.is_set()
            self.healed.set()
        if healing:
            self.heal_finished.wait(timeout)
            return
        try:
            self.fault.heal(self.world)
        except Exception as error:  # noqa: BLE001
            self.errors.append(f"heal: {error!r}")
        finally:
            self.healed_at = time.time()
            self.heal_finished.set()


class FenceSampler(threading.Thread):
    """Both sides' fence of payment_app (payment_cutover.fence.fence_state) every SAMPLE_SECONDS, on
    superuser connections of its own; a side that cannot be read is "down"."""

    def __init__(self, world: World) -> None:
        super().__init__(name="fence-sampler", daemon=True)
        self.world = world
        self.samples: list[tuple[float, str, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        from payment_cutover.fence import fence_state

        connections: dict[str, Any] = {}
        while not self.halt.is_set():
            started = time.monotonic()
            states = []
            for side in SIDES:
                try:
                    if side not in connections or connections[side].closed:
                        connections[side] = self.world.connect(side, "postgres", timeout=1)
                    states.append(fence_state(connections[side], ROLES)["payment_app"])
                except Exception:  # noqa: BLE001 - a server down or restarting
                    connections.pop(side, None)
                    states.append("down")
            self.samples.append((time.time(), states[0], states[1]))
            self.halt.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - started)))
        for conn in connections.values():
            conn.close()

    def stop(self) -> list[tuple[float, str, str]]:
        self.halt.set()
        self.join(timeout=5)
        return self.samples


class World:
    """The servers, the emulator, the machines and the handlers, made once (`start`)."""

    def __init__(self, work: Path, env: str = "local", log: Callable[[str], None] = print) -> None:
        self.work = work
        self.env = env
        self.log = log
        self.injection: Injection | None = None
        self.machine: str = "cutover"  # the machine of the trial being run: faults read it
        self.extra_requests: list[dict[str, Any]] = []  # what faults' own clients were told
        self._names = iter(range(1, 1_000_000))

    # -- making it ---------------------------------------------------------------------------------

    def start(self) -> None:
        lambda_paths()
        from lib.local.chaos.definitions import check_synthesized, synthesized_stack
        from lib.terraform import shown

        started = time.monotonic()
        synthesized = synthesized_stack(self.env, self.work)
        check_synthesized(synthesized)
        self.log(f"==> the state machines equal those synthesized in {shown(synthesized)}, "
                 "ARNs aside")
        from lib.local.postgres.replication import replicated_pair, start_servers

        self.servers = start_servers({"synchronous_commit": "on"})
        self.pair = replicated_pair(self.servers, name="chaos")
        self._start_emulator()
        self._start_proxies()
        self._deploy()
        self.log(f"==> world ready in {time.monotonic() - started:.1f} s: on-prem :{self.server('onprem').port}, "
                 f"aws :{self.server('aws').port}, moto {self.emulator.endpoint}")

    def _start_emulator(self) -> None:
        from moto.core.config import default_user_config

        from lib.local.emulator import Emulator
        from lib.local.lambdas import InProcessLambdas
        from tests.rollback.world import REGION

        self.emulator = Emulator(0, execute_state_machines=True)
        default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = False
        os.environ.update({**self.emulator.environment, "MOTO_PORT": str(self.emulator.port)})
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(name, None)
        self.lambdas = InProcessLambdas(account_id="123456789012", region=REGION)
        self.lambdas.install()
        # its Secrets Manager client is made at import: imported again with this endpoint
        self.validation_handler = importlib.reload(importlib.import_module("payment_validation.handler"))

    def _start_proxies(self) -> None:
        """The link to on-prem and the AWS APIs as the handlers and the payment API reach them
        (lib/local/chaos/proxy.py): passing everything through until a fault says otherwise."""
        from lib.local.chaos.proxy import ApiProxy, LinkProxy

        onprem = self.server("onprem")
        self.link = LinkProxy(onprem.host, onprem.port)
        self.api_proxy = ApiProxy(self.emulator.endpoint)

    def _through_proxies(self, environment: dict[str, str], *port_variables: str) -> dict[str, str]:
        """`environment` with on-prem's port (each of `port_variables`) at the link proxy and every
        AWS call through the API proxy."""
        return {**environment, **{name: str(self.link.port) for name in port_variables},
                "AWS_ENDPOINT_URL": self.api_proxy.url}

    def _deploy(self) -> None:
        from lib.local.postgres.replication import api_environment, cutover_environment
        from lib.workflows.cutover import cutover_definition, rollback_definition
        from tests.rollback.world import CUTOVER_MACHINE_NAME, WRITER_PARAMETER, build_world
        from tests.workflows import conftest as workflows

        self.world = build_world(onprem_weight=50, aws_weight=50, aws_member="records")
        self.world.writer_rollback_wait_seconds = EXECUTION_TIMEOUT_SECONDS
        iam, awslambda, secretsmanager = boto3.client("iam"), boto3.client("lambda"), boto3.client("secretsmanager")
        role_arn = iam.create_role(RoleName="payment-migration-controller-chaos",
                                   AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))[
            "Role"]["Arn"]
        self.step_environment = cutover_environment(self.pair, WRITER_PARAMETER, secretsmanager)
        names = {"step": workflows.STEP_FUNCTION, "validation": workflows.VALIDATION_FUNCTION,
                 "traffic": workflows.TRAFFIC_FUNCTION, "rollback": workflows.ROLLBACK_FUNCTION}
        environments = {
            "step": self.step_environment,
            "validation": workflows._validation_environment(self.pair, secretsmanager, self.step_environment),
            "traffic": self.world.environment(), "rollback": self.world.environment()}
        # every handler reaches on-prem over the link and AWS through the API proxy
        self.step_environment = environments["step"] = self._through_proxies(self.step_environment, "ONPREM_DB_PORT")
        environments["validation"] = self._through_proxies(environments["validation"], "SOURCE_DB_PORT")
        environments["traffic"] = self._through_proxies(environments["traffic"])
        environments["rollback"] = self._through_proxies(environments["rollback"])
        handlers = {"step": "payment_cutover.handler.lambda_handler",
                    "validation": "payment_validation.handler.lambda_handler",
                    "traffic": "payment_rollback.traffic.lambda_handler",
                    "rollback": "payment_rollback.handler.lambda_handler"}
        self.functions = {kind: workflows.create_function(awslambda, role_arn, names[kind], handlers[kind],
                                                          environments[kind]) for kind in names}
        self.function_names = names
        arns = {"step_arn": self.functions["step"], "validation_arn": self.functions["validation"],
                "traffic_arn": self.functions["traffic"]}
        self.machines = {
            "cutover": self.world.create_controller_machine(CUTOVER_MACHINE_NAME, cutover_definition(**arns)),
            "rollback": self.world.create_rollback_machine(rollback_definition(**arns)),
        }
        self.stepfunctions = boto3.client("stepfunctions")
        self.api_environment = self._through_proxies(
            {**api_environment(self.pair, WRITER_PARAMETER, secretsmanager, cache_seconds=0.5),
             **self.emulator.environment, "POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"},
            "ONPREM_DB_PORT")
        self._register_handlers()

    def _register_handlers(self, **step_overrides: str) -> None:
        from payment_cutover import handler as step_handler
        from payment_rollback import handler as rollback_handler
        from payment_rollback import traffic

        from tests.workflows import conftest as workflows

        workflows._register_handlers(workflows.Emulator(self.emulator, self.lambdas, self.validation_handler))
        raw = {"step": step_handler.lambda_handler, "validation": self.validation_handler.lambda_handler,
               "traffic": traffic.lambda_handler}
        overrides = {"step": {"WAIT_SECONDS": "5", **step_overrides},
                     "validation": {"RECHECK_SECONDS": "0.2", "RECHECK_ROUNDS": "1"}}
        for kind, handler in raw.items():
            self.lambdas.register(self.function_names[kind], self._hooked(kind, handler),
                                  overrides=overrides.get(kind))
        self.lambdas.register(self.function_names["rollback"], rollback_handler.lambda_handler)
        for logger_module in (step_handler, rollback_handler, traffic, self.validation_handler):
            logger = getattr(logger_module, "logger", None)
            if logger is not None:
                logger.setLevel("CRITICAL")

    def _hooked(self, kind: str, handler: Callable) -> Callable:
        def run(event: Any, context: Any) -> Any:
            injection = self.injection
            if injection is None:
                return handler(event, context)
            return injection.around(state_of(kind, event), handler, event, context)
        return run

    def stop(self) -> None:
        from lib.local.postgres.replication import stop_servers

        self._stop_running()
        self.pair.close_connections()
        for proxy in (getattr(self, "link", None), getattr(self, "api_proxy", None)):
            if proxy is not None:
                proxy.close()
        self.emulator.stop()
        stop_servers(self.servers)

    # -- what faults and the runner use ----------------------------------------------------------------

    def server(self, side: str):
        return self.servers[side].postgres

    def connect(self, side: str, role: str = "postgres", *, timeout: int = 5):
        """An autocommit connection to `side` ("onprem" or "aws") as `role`: "postgres" (the superuser,
        on the unix socket) or a role of schema/roles.sql (TLS and password, as an application)."""
        db = self.pair.sides[side]
        if role == "postgres":
            return db.postgres.admin_connect(db.dbname, timeout=timeout)
        return db.connect(role, application_name="chaos")

    def source_target(self) -> tuple[str, str]:
        """The sides the trial's machine moves the writer from and to."""
        return DIRECTIONS[self.machine]

    def start_execution(self, machine: str, execution_input: dict | None = None) -> str:
        name = f"{machine}-{next(self._names)}-{uuid.uuid4().hex[:6]}"
        return self.stepfunctions.start_execution(stateMachineArn=self.machines[machine], name=name,
                                                  input=json.dumps(execution_input or {}))["executionArn"]

    def wait_execution(self, arn: str, timeout: float = EXECUTION_TIMEOUT_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (description := self.stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                self.stepfunctions.stop_execution(executionArn=arn, error="ChaosTimeout")
                return {**description, "status": "TIMED_OUT"}
            time.sleep(0.1)
        return description

    def states_entered(self, arn: str) -> list[str]:
        from lib.cutover.executions import history

        return [event["stateEnteredEventDetails"]["name"] for event in history(self.stepfunctions, arn)
                if "stateEnteredEventDetails" in event]

    def writer(self) -> dict[str, Any]:
        return self.world.writer()

    def invoke_step(self, step: str, **event: Any) -> Any:
        return self.lambdas.invoke(self.function_names["step"], {"step": step, **event})

    def validate(self) -> dict[str, Any]:
        direction = "forward" if self.writer()["writer"] == "onprem" else "reverse"
        return self.lambdas.invoke(self.function_names["validation"],
                                   {"direction": direction, "recheck_rounds": 2, "recheck_seconds": 0.5})

    def fence_states(self) -> dict[str, str]:
        from payment_cutover.fence import fence_state

        states = {}
        for side in SIDES:
            conn = self.connect(side)
            try:
                states[side] = fence_state(conn, ROLES)["payment_app"]
            finally:
                conn.close()
        return states

    # -- between trials ----------------------------------------------------------------------------------

    def reset(self, customers: list[str], epoch: int = 0) -> None:
        """Back to where a data cutover starts: the link up and the AWS APIs answering, the pair reset
        in place (forward replication running, tables empty), on-prem the writer (at `epoch`: the
        rollback function names its writer rollback after the epoch, and an execution's name is never
        reused, so each trial starts at an epoch of its own), aws fenced, weights 50/50, alarms OK;
        then the customers on on-prem, replicated to aws."""
        from tests.rollback.world import FALLBACK_ALARM_NAMES, FORWARD_ALARM_NAMES, ROLLBACK_ALARM_NAMES

        self._stop_running()
        self.injection = None
        self.extra_requests = []
        self.link.set("up")
        self.api_proxy.set(None)
        for side in SIDES:  # a fault may have left a server down
            server = self.server(side)
            try:
                server.admin_execute("SELECT 1")
            except psycopg2.Error:
                server.start()
        self.pair.reset()
        self.world.set_writer("onprem", epoch)
        self.world.set_weights(onprem=50, aws=50)
        names = (*ROLLBACK_ALARM_NAMES, *FORWARD_ALARM_NAMES, *FALLBACK_ALARM_NAMES)
        self.world.cloudwatch.enable_alarm_actions(AlarmNames=list(names))
        for name in names:
            self.world.cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="chaos reset")
        self._register_handlers()
        self.invoke_step("fence_non_writer")
        conn = self.connect("onprem")
        try:
            with conn.cursor() as cur:
                for index, customer in enumerate(customers):
                    cur.execute("INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, %s, %s)",
                                (customer, f"chaos-{index}", f"Customer {index}"))
        finally:
            conn.close()
        self.pair.wait_until(lambda: self.pair.aws.scalar("SELECT count(*) FROM customers") == len(customers),
                             "the customers to reach aws")

    def _stop_running(self) -> None:
        for arn in self.machines.values() if hasattr(self, "machines") else ():
            for execution in self.stepfunctions.list_executions(stateMachineArn=arn,
                                                                statusFilter="RUNNING")["executions"]:
                self.stepfunctions.stop_execution(executionArn=execution["executionArn"])

    # -- what the checker reads ----------------------------------------------------------------------------

    def payments(self, side: str) -> list[dict[str, Any]]:
        rows = self.pair.sides[side].query(
            "SELECT payment_id::text, idempotency_key, amount::text, customer_id::text FROM payments ORDER BY 2")
        return [{"payment_id": pid, "key": key, "amount": amount, "customer": customer}
                for pid, key, amount, customer in rows]

    def local_commits(self, side: str) -> list[tuple[float, str]]:
        """The payments committed on `side` by a local transaction (replication origin 0), with their
        commit times."""
        rows = self.pair.sides[side].query(
            """SELECT extract(epoch FROM c.timestamp)::float8, p.payment_id::text
               FROM payments p, LATERAL pg_xact_commit_timestamp_origin(p.xmin) c
               WHERE c.roident = 0 ORDER BY 1""")
        return [(at, pid) for at, pid in rows]

    def wait_sides_equal(self, timeout: float = 20.0) -> bool:
        query = "SELECT count(*), coalesce(sum(amount), 0)::text FROM payments"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.pair.onprem.query(query) == self.pair.aws.query(query):
                    return True
            except psycopg2.Error:
                pass
            time.sleep(0.2)
        return False
