"""The rehearsal itself: the operator's runbook, step by step, with every payment counted.

Steps (each a phase in report.json, with its timestamps):

  preflight        ports and tools; build/rehearsal/ emptied
  databases        (beside the deploy) two PostgreSQL servers with TLS: on-prem where
                   config/local.toml says, "Aurora" on a free port; schema/payments.sql and
                   schema/roles.sql on both, a generated password per role; customers and some
                   pre-migration payments on on-prem
  deploy           the emulator (Step Functions executions on), seeded, every stack applied
  wiring           each role's credentials into its secret (payment-migration/<env>/<side>/<role>);
                   the deployed functions run in-process with their deployed environment plus
                   overrides; forward replication started (full copy, then streaming) as the
                   operator starts the forward DMS task once; Aurora fenced (fence_non_writer)
  legacy-sync      the payment load starts (through the real API handler) and runs to the end
  canary, split    `advance` executions with a short bake
  data-cutover     the `cutover` execution: the writer moves to Aurora behind the fence
  aws-primary      `advance` to all traffic on AWS
  fault-and-rollback  a child of the composite alarm goes to ALARM; the composite's notification
                   reaches the rollback function through SNS; it moves DNS and runs the fenced
                   writer rollback; measured until both controls are on-prem
  on-prem-again    the load keeps writing, now to on-prem
  drain            the load stops; the replica catches up; final state and a last validation

Any step that fails stops the rehearsal naming it; the ledger files and the report are written
whatever happened, and the logs stay under build/rehearsal/.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from lib.config import Config
from lib.terraform import shown
from lib.terraform import REPO_ROOT

WORK_DIR = REPO_ROOT / "build" / "rehearsal"
LAMBDA_ROOT = REPO_ROOT / "lib" / "lambda"

# What a rehearsal must meet: report.json records each figure against its bound.
MAX_WRITE_PAUSE_SECONDS = 30.0
MAX_ALARM_TO_ONPREM_SECONDS = 120.0  # fault → every client writing on on-prem: detection, action, follow
MAX_CUTOVER_UNAVAILABLE_SECONDS = 5.0  # legacy mode: what any client sees at the data cutover
MAX_REHEARSAL_SECONDS = 15 * 60.0
MIN_WRITE_RATE = 2.0  # payments per second in every 10 s stretch outside the two switches: "a few"

CUSTOMERS = 20
LEGACY_PAYMENTS = 200
WARM_UP_PAYMENTS = 30
PAYMENTS_BETWEEN_PHASES = 15
ON_PREM_AGAIN_SECONDS = 15.0
ROLLBACK_TIMEOUT_SECONDS = 300.0
PARALLEL = 3  # stacks applied at once


class RehearsalFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step {step}: {message}")
        self.step = step
        self.message = message


@dataclass
class Phase:
    name: str
    started: float
    started_at: str
    ended: float | None = None
    ended_at: str | None = None
    status: str = "running"
    detail: dict = field(default_factory=dict)

    def to_dict(self, origin: float) -> dict:
        return {"name": self.name, "status": self.status, "started_at": self.started_at, "ended_at": self.ended_at,
                "offset_seconds": round(self.started - origin, 1),
                "seconds": None if self.ended is None else round(self.ended - self.started, 1), **self.detail}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Console:
    """Progress on the terminal the rehearsal started on (the functions' own output goes to
    lambdas.log, as it would to CloudWatch Logs)."""

    def __init__(self, stream: TextIO, origin: float) -> None:
        self.stream = stream
        self.origin = origin
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            self.stream.write(f"[{time.monotonic() - self.origin:6.1f}s] {message}\n")
            self.stream.flush()


class Rehearsal:
    def __init__(self, config: Config, *, rate: float, clients: int, bake_checks: int, bake_interval: int,
                 work_dir: Path = WORK_DIR) -> None:
        if config.emulator is None:
            raise ValueError(f"environment {config.name} has no [emulator] section: it would rehearse against AWS")
        self.config = config
        self.rate = rate
        self.client_count = clients
        self.bake = {"bake_checks": bake_checks, "bake_interval_seconds": bake_interval}
        self.work = work_dir
        self.origin = time.monotonic()
        self.started_at = _now_iso()
        self.console_out, self.console_err = sys.stdout, sys.stderr
        self.say = Console(self.console_out, self.origin)
        self.phases: list[Phase] = []
        self.failure: RehearsalFailed | None = None
        self.findings: list[str] = []  # defects seen on the way that do not stop the run
        self.servers: dict[str, Any] = {}
        self.customers: list[str] = []
        self.legacy_keys: list[str] = []
        self.emulator = None
        self.lambdas = None
        self.controls = None
        self.load = None
        self.deploy_summary: dict = {}
        self.overrides: dict[str, dict[str, str]] = {}
        self.windows: dict[str, tuple[float, float]] = {}
        self.alarm: dict = {}
        self.final: dict = {}
        self.count = None
        self.shims: list[str] = []
        self.one_writer = None
        self._lambda_log: TextIO | None = None
        self.onprem_app_secrets: dict[str, str] = {}
        self.onprem_app_role = None
        self.onprem_server = None
        self.routing = None
        self.resolver = None
        self.fault_timing: dict = {}
        self._invocations_written = 0

    # ---- the run -------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self._run()
        except RehearsalFailed as failure:
            self.failure = failure
        except KeyboardInterrupt:
            self.failure = RehearsalFailed(self._current_phase(), "interrupted (Ctrl-C)")
        except Exception as error:  # noqa: BLE001 - a rehearsal bug is a failed step too
            self._log_traceback(self._current_phase())
            self.failure = RehearsalFailed(self._current_phase(), f"{type(error).__name__}: {error}")
        finally:
            report = self._finish()
        return 0 if report["result"] == "PASSED" else 1

    def _run(self) -> None:
        from lib.local.postgres import replication

        # Each Lambda folder is the root of its zip: its package (payment_api, payment_cutover, …) is
        # imported from there, as the tests do.
        for root in sorted(LAMBDA_ROOT.iterdir()):
            if root.is_dir() and str(root) not in sys.path:
                sys.path.insert(0, str(root))

        with self.phase("preflight"):
            self._preflight()
        database_errors: list[BaseException] = []
        database_thread = threading.Thread(target=self._databases_beside_deploy, args=(database_errors,),
                                           name="rehearsal-databases", daemon=True)
        database_thread.start()
        try:
            with self.phase("deploy") as phase:
                self._deploy(phase)
        finally:
            # Whatever the deploy did, the servers must be known to the end, which stops them.
            database_thread.join()
        if database_errors:
            raise RehearsalFailed("databases", f"{type(database_errors[0]).__name__}: {database_errors[0]}")
        with self.phase("wiring") as phase:
            self._wire(phase, replication)
        with self.phase("legacy-sync") as phase:
            self._start_load(phase)
        for name in ("canary", "split"):
            with self.phase(name) as phase:
                self._advance(phase, name)
        # A legacy on-prem application never learns of the writer: all traffic goes to AWS first
        # (the AWS API writes to on-prem meanwhile), and the cutover's gate waits out the TTL.
        order = (("aws-primary", "data-cutover") if self.config.cutover.legacy else ("data-cutover", "aws-primary"))
        for name in order:
            with self.phase(name) as phase:
                self._data_cutover(phase) if name == "data-cutover" else self._advance(phase, name)
        with self.phase("fault-and-rollback") as phase:
            self._fault_and_rollback(phase)
        with self.phase("on-prem-again") as phase:
            self._on_prem_again(phase)
        with self.phase("drain") as phase:
            self._drain(phase)

    @contextmanager
    def phase(self, name: str):
        phase = Phase(name, time.monotonic(), _now_iso())
        self.phases.append(phase)
        self.say(f"==> {name}")
        try:
            yield phase
        except RehearsalFailed:
            phase.status = "failed"
            raise
        except BaseException as error:
            phase.status = "failed"
            if isinstance(error, KeyboardInterrupt):
                raise
            self._log_traceback(name)
            raise RehearsalFailed(name, f"{type(error).__name__}: {error}") from error
        finally:
            phase.ended, phase.ended_at = time.monotonic(), _now_iso()
        phase.status = "done"
        self.say(f"    {name} done in {phase.ended - phase.started:.1f} s")

    def _log_traceback(self, step: str) -> None:
        try:
            with open(self.work / "logs" / "rehearsal-errors.log", "a") as handle:
                handle.write(f"===== {_now_iso()} step {step}\n{traceback.format_exc()}\n")
        except OSError:
            pass

    def _current_phase(self) -> str:
        running = [phase.name for phase in self.phases if phase.status in ("running", "failed")]
        return running[-1] if running else "start"

    # ---- steps -----------------------------------------------------------------------------------
    def _preflight(self) -> None:
        from lib.local.postgres.server import pg_binary, port_is_free, stop_leftover
        from lib.terraform import terraform_binary

        terraform_binary()
        for tool in ("initdb", "pg_ctl"):
            pg_binary(tool)
        if not shutil.which("openssl"):
            raise RuntimeError("openssl is not on the PATH (the servers' TLS certificates)")
        # A server an interrupted run left behind holds the on-prem port: stop it first.
        for side in ("onprem", "aws"):
            stop_leftover(self.work / "postgres" / side)
        busy = [f"{what} port {port}" for what, port in (("emulator", self.config.emulator.port),
                                                         ("on-prem PostgreSQL", self.config.onprem.db_port))
                if not port_is_free(port)]
        if busy:
            raise RuntimeError(f"{' and '.join(busy)} on 127.0.0.1 in use (config/{self.config.name}.toml): another "
                               "`make rehearse`, `make deploy-local` or `make emulator` runs? `ss -ltnp` shows who")
        self.work.mkdir(parents=True, exist_ok=True)
        for entry in self.work.iterdir():
            if entry.name == "deploy":  # keeps the stacks' .terraform (provider already unpacked)
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        (self.work / "logs").mkdir()

    def _databases_beside_deploy(self, errors: list[BaseException]) -> None:
        from lib.local.rehearsal import databases

        phase = Phase("databases", time.monotonic(), _now_iso())
        self.phases.append(phase)
        try:
            self.ca, self.servers = databases.start_databases(
                self.work, self.config.onprem.db_port,
                {"onprem": self.config.onprem.db_name, "aws": self.config.database.database_name})
            aws_port = self.servers["aws"].port
            onprem = self.servers["onprem"]
            self.customers = databases.seed_customers(onprem, CUSTOMERS)
            self.legacy_keys = databases.seed_legacy_payments(onprem, self.customers, LEGACY_PAYMENTS)
            phase.detail = {"onprem": f"127.0.0.1:{onprem.port}/{onprem.dbname}",
                            "aws": f"127.0.0.1:{aws_port}/{self.servers['aws'].dbname}",
                            "tls": "sslmode=verify-full against the rehearsal CA", "customers": CUSTOMERS,
                            "legacy_payments": LEGACY_PAYMENTS}
            phase.status = "done"
            self.say(f"    databases ready: on-prem {phase.detail['onprem']}, Aurora {phase.detail['aws']} "
                     f"(TLS verify-full), {CUSTOMERS} customers, {LEGACY_PAYMENTS} pre-migration payments "
                     f"({time.monotonic() - phase.started:.1f} s)")
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            phase.status = "failed"
            phase.detail = {"error": f"{type(error).__name__}: {error}"}
            errors.append(error)
        finally:
            phase.ended, phase.ended_at = time.monotonic(), _now_iso()

    def _deploy(self, phase: Phase) -> None:
        import logging

        from lib.local.deploy import LocalDeploy, apply_all, excluded_resources, replan_all

        started = time.monotonic()
        # The same deployment as `make deploy-local`, in the same place: its summary and plans are
        # what `make scan` checks, so CI runs the rehearsal instead of a second deploy.
        deployment = LocalDeploy(self.config)
        # Synthesis (jsii, a Node process) and loading moto overlap: both take a while.
        synthesis: dict[str, Any] = {}

        def synthesize() -> None:
            try:
                synthesis["seconds"] = deployment.prepare()
            except BaseException as error:  # noqa: BLE001 - re-raised below
                synthesis["error"] = error

        synthesizer = threading.Thread(target=synthesize, name="synthesis", daemon=True)
        synthesizer.start()
        from lib.local.emulator import Emulator
        from lib.local.rehearsal import shims

        # moto's requests (service, action, status, seconds), and werkzeug's errors, to logs/moto.log.
        moto_log = logging.FileHandler(self.work / "logs" / "moto.log")
        moto_log.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(message)s"))
        requests = logging.getLogger("payment_migration.rehearsal.moto")
        requests.setLevel(logging.INFO)
        requests.propagate = False
        requests.addHandler(moto_log)
        shims.install_request_log(requests)
        self.emulator = Emulator(self.config.emulator.port, execute_state_machines=True)
        self.shims = ["request-log"]
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.WARNING)
        werkzeug.propagate = False
        werkzeug.addHandler(moto_log)
        for item in self.emulator.seed(self.config):
            self.say(f"    created {item} in the emulator ({self.emulator.endpoint})")
        synthesizer.join()
        if "error" in synthesis:
            raise synthesis["error"]
        synth_seconds = synthesis["seconds"]
        try:
            runs = apply_all(deployment, progress=lambda message: self.say(f"    {message}"), parallel=PARALLEL)
            applied = time.monotonic() - started
            self.say("    re-planning every stack (nothing may drift but what lib/local/limits.py declares)")
            replan_all(deployment, progress=lambda message: self.say(f"    {message}"), parallel=PARALLEL)
        finally:
            self.deploy_summary = {"seconds": round(time.monotonic() - started, 1),
                                   "synth_seconds": round(synth_seconds, 1),
                                   "stacks": [run.to_dict() for run in deployment.runs], "complete": False}
            deployment.write_summary(excluded_resources(deployment.outdir))
        drift = deployment.undeclared_drift()
        if drift:
            raise RuntimeError(f"re-plan after the apply: {drift}")
        seconds = time.monotonic() - started
        self.deploy_summary = {"complete": True,
            "seconds": round(seconds, 1), "apply_seconds": round(applied, 1), "synth_seconds": round(synth_seconds, 1),
            "stacks": [run.to_dict() for run in runs], "resources": sum(run.resources for run in runs),
            "logs": shown(deployment.logs),
            "summary": shown(deployment.work_dir / "summary.json"),
            "how": "lib/local/deploy.py (make deploy-local's machinery, in build/deploy-local): synthesis, init + "
                   f"apply -auto-approve per stack, stacks whose dependencies are applied side by side, {PARALLEL} "
                   "at a time, then every stack planned again: nothing may drift but what lib/local/limits.py declares",
        }
        phase.detail = {"resources": self.deploy_summary["resources"], "stacks": len(runs)}
        self.say(f"    {len(runs)} stacks, {self.deploy_summary['resources']} resources applied in {seconds:.0f} s "
                 f"(synthesis {synth_seconds:.0f} s)")

    def _wire(self, phase: Phase, databases) -> None:
        from lib.local.emulator import EMULATOR_ACCOUNT_ID
        from lib.local.lambdas import InProcessLambdas
        from lib.local.rehearsal.controls import Controls

        onprem, aws = self.servers["onprem"], self.servers["aws"]
        # boto3 in this process (and in every function) talks to the emulator.
        os.environ.update(self.emulator.environment)
        self.controls = controls = Controls(self.emulator, self.config, self.work / "executions", self.say)
        names = controls.names
        # The operator's step: each role's credentials into its secret (the stacks create them empty).
        arns: dict[tuple[str, str], str] = {}
        for side, server in self.servers.items():
            for role in databases.ROLES:
                arns[(side, role)] = controls.put_secret(names.secret(side, role), server.secret(role))
            arns[(side, databases.SUBSCRIPTION_ADMIN)] = controls.put_secret(
                names.secret(side, databases.SUBSCRIPTION_ADMIN), server.secret(databases.SUBSCRIPTION_ADMIN),
                create=True)
        self.say(f"    credentials of {len(databases.ROLES)} roles × 2 sides put into their secrets "
                 f"(+ {databases.SUBSCRIPTION_ADMIN}, the rehearsal's subscription manager)")

        self._onprem_application_role(databases, controls)

        # The functions' output goes to lambdas.log from here on, as it would to CloudWatch Logs.
        self._lambda_log = open(self.work / "logs" / "lambdas.log", "a", buffering=1)
        sys.stdout = sys.stderr = self._lambda_log

        lambdas = InProcessLambdas(account_id=EMULATOR_ACCOUNT_ID, region=self.config.region)
        deployed = {name: lambdas.deployed_environment(name) for name in names.functions}
        # Deployed, the functions verify on-prem against the CA in their zip (ONPREM_DB_SSLROOTCERT);
        # here both servers' certificates come from the rehearsal's own CA.
        ca = str(self.ca.certificate)
        tls = {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": ca, "ONPREM_DB_SSLROOTCERT": ca}
        aurora = {"AURORA_DB_HOST": aws.host, "AURORA_DB_PORT": str(aws.port)}
        for name in (names.api, names.steps):
            environment = deployed[name]
            expected = {"ONPREM_DB_HOST": onprem.host, "ONPREM_DB_PORT": str(onprem.port),
                        "ONPREM_DB_NAME": onprem.dbname, "AURORA_DB_NAME": aws.dbname}
            wrong = {key: environment.get(key) for key, value in expected.items() if environment.get(key) != value}
            if wrong:
                raise RuntimeError(f"{name} is deployed with {wrong}, not the rehearsal's servers {expected}")
        self.overrides = {
            names.api: {**aurora, **tls},
            names.steps: {
                **aurora, **tls, "REPLICATION_DRIVER": "postgres-logical", "PUBLICATION_NAME": databases.PUBLICATION,
                "ONPREM_DB_REPLICATION_SECRET_ARN": arns[("onprem", "dms_source")],
                "AURORA_DB_REPLICATION_SECRET_ARN": arns[("aws", "dms_source")],
                "ONPREM_DB_SUBSCRIPTION_SECRET_ARN": arns[("onprem", databases.SUBSCRIPTION_ADMIN)],
                "AURORA_DB_SUBSCRIPTION_SECRET_ARN": arns[("aws", databases.SUBSCRIPTION_ADMIN)],
            },
            names.validation: {"AURORA_DB_HOST": aws.host, "AURORA_DB_PORT": str(aws.port), **tls},
            names.rollback: {},
            names.traffic: {},
        }
        for name in names.functions:
            handler_path = controls.lambda_.get_function_configuration(FunctionName=name)["Handler"]
            module_name, _, attribute = handler_path.rpartition(".")
            module = importlib.import_module(module_name)
            if hasattr(module, "metrics"):
                from lib.local.rehearsal.load import private_metrics

                private_metrics(module.metrics)
            lambdas.register(name, getattr(module, attribute), overrides=self.overrides[name],
                             environment=deployed[name])
        lambdas.install()
        self.lambdas = lambdas
        self.api_environment = {**deployed[names.api], **self.overrides[names.api]}
        self.say(f"    {len(names.functions)} functions run in-process with their deployed environment + overrides "
                 f"(Aurora at 127.0.0.1:{aws.port}, TLS verify-full, postgres-logical replication driver)")

        controls.bind(deployed[names.rollback])
        self._start_onprem_application(names)
        # roles.sql leaves payment_app able to write on both sides: the side that is not the writer is
        # fenced before anything connects to it (README, runbook), then replication starts.
        fenced = controls.invoke(names.steps, {"step": "fence_non_writer"})
        from lib.local.rehearsal.watch import OneWriterWatch

        self.one_writer = OneWriterWatch(self.servers, deployed[names.steps].get("APPLICATION_ROLES", "payment_app")
                                         .split(","), self.origin)
        self.one_writer.start()
        slot = deployed[names.steps]["FORWARD_SLOT_NAME"]
        seconds = databases.start_forward_replication(onprem, aws, slot)
        copied = aws.scalar("SELECT count(*) FROM payments")
        self.say(f"    forward replication (subscription {slot} on Aurora): full copy of {copied} payments, "
                 f"streaming after {seconds:.1f} s")
        status = controls.invoke(names.steps, {"step": "status"})
        writer, weights = controls.writer(), controls.weights()
        roles = self.one_writer.roles
        if writer["writer"] != "onprem" or status["fence"]["aws"] != {role: "fenced" for role in roles} \
                or status["fence"]["onprem"] != {role: "open" for role in roles} \
                or status["replication"]["forward"]["status"] != "running":
            raise RuntimeError(f"not the starting state: writer {writer}, fences {status['fence']}, replication "
                               f"{status['replication']}")
        self.say(f"    Aurora fenced (fence_non_writer: {fenced['fenced']}); writer {writer['writer']} "
                 f"(epoch {writer['epoch']}); weights {weights}; forward "
                 f"{status['replication']['forward']['status']}")
        phase.detail = {"writer": writer, "weights": weights, "fence": status["fence"],
                        "forward_replication_seconds": round(seconds, 1), "full_copy_payments": copied}

    def _onprem_application_role(self, databases, controls) -> None:
        """The operator's step for an application role other than payment_app (schema/roles.sql's
        header): the on-prem application's own login role on both servers, its writes only through
        payment_writer, its reads as payment_app's; its credentials in its secrets."""
        import secrets as tokens

        from psycopg2 import sql

        from lib.local.rehearsal.onprem_app import ROLE

        role = self.config.cutover.onprem_application_role or ROLE
        for side, server in self.servers.items():
            password = tokens.token_urlsafe(24)
            conn = server.admin()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
                    cur.execute(sql.SQL("GRANT payment_writer TO {}").format(sql.Identifier(role)))
                    cur.execute("SELECT DISTINCT table_schema, table_name, privilege_type FROM "
                                "information_schema.role_table_grants WHERE grantee = 'payment_app'")
                    for schema, table, privilege in cur.fetchall():
                        cur.execute(sql.SQL("GRANT {} ON {}.{} TO {}").format(
                            sql.SQL(privilege), sql.Identifier(schema), sql.Identifier(table), sql.Identifier(role)))
                    cur.execute("SELECT nspname FROM pg_namespace WHERE has_schema_privilege('payment_app', oid, "
                                "'USAGE') AND nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'")
                    for (schema,) in cur.fetchall():
                        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema),
                                                                                     sql.Identifier(role)))
            finally:
                conn.close()
            server.server.passwords[role] = password
            self.onprem_app_secrets[side] = controls.put_secret(controls.names.secret(side, role), server.secret(role),
                                                                create=True)
        self.onprem_app_role = role

    def _start_onprem_application(self, names) -> None:
        from lib.local.rehearsal import onprem_app
        from lib.local.rehearsal.load import Routing
        from lib.local.rehearsal.resolver import Route53Resolver

        onprem = self.servers["onprem"]
        if self.config.cutover.legacy:
            application = onprem_app.LegacyApplication(lambda: onprem.connect(self.onprem_app_role, autocommit=False))
        else:
            application = onprem_app.FollowsWriterApplication(
                {**self.api_environment, "ONPREM_DB_SECRET_ARN": self.onprem_app_secrets["onprem"],
                 "AURORA_DB_SECRET_ARN": self.onprem_app_secrets["aws"]}, names.api)
        self.onprem_server = onprem_app.OnPremServer(application).start()
        record = self.controls.record
        resolver = Route53Resolver(self.controls.route53, record["HOSTED_ZONE_ID"], record["RECORD_NAME"],
                                   record["RECORD_TYPE"])
        self.routing = Routing(lookup=resolver.records,
                               sides={record["ONPREM_SET_IDENTIFIER"]: "onprem", record["AWS_SET_IDENTIFIER"]: "aws"},
                               onprem_port=self.onprem_server.port)
        self.resolver = resolver
        self.say(f"    on-prem application ({self.config.cutover.onprem_application}) on 127.0.0.1:"
                 f"{self.onprem_server.port} as role {self.onprem_app_role}; clients resolve "
                 f"{record['RECORD_NAME']} from Route 53 (TTL {self.config.routing.ttl_seconds} s, cached per client)")

    def _start_load(self, phase: Phase) -> None:
        from lib.local.rehearsal.load import PaymentLoad

        self.load = PaymentLoad(self.api_environment, self.customers, clients=self.client_count, rate=self.rate,
                                function_name=self.controls.names.api, routing=self.routing)
        self.load.start()
        self._expect_payments(WARM_UP_PAYMENTS, "the load to start", timeout=60)
        phase.detail = {"weights": self.controls.weights(), "writer": self.controls.writer()["writer"]}
        self.say(f"    {self.client_count} clients writing ~{self.rate:g} payments/s through the API handler; "
                 f"{self.load.ledger.count()} acknowledged so far; weights {phase.detail['weights']}")

    def _advance(self, phase: Phase, target: str) -> None:
        controls = self.controls
        description = controls.run_execution(controls.names.advance, f"rehearsal-advance-{target}-{int(time.time())}",
                                             {"phase": target, **self.bake})
        weights = controls.weights()
        phase.detail = {"execution": description["status"], "weights": weights,
                        "writer": controls.writer()["writer"], "bake": self.bake}
        if description["status"] != "SUCCEEDED":
            raise RehearsalFailed(phase.name, f"advance to {target} ended {description['status']}: "
                                              f"{description.get('error')}: {description.get('cause')}")
        self.say(f"    advance to {target} SUCCEEDED; weights {weights}")
        self._expect_payments(PAYMENTS_BETWEEN_PHASES, f"payments after {target}")

    def _data_cutover(self, phase: Phase) -> None:
        controls = self.controls
        started = time.monotonic()
        description = controls.run_execution(controls.names.cutover, f"rehearsal-cutover-{int(time.time())}", {})
        ended = time.monotonic()
        self.windows["cutover"] = (started, ended)
        writer, weights = controls.writer(), controls.weights()
        phase.detail = {"execution": description["status"], "writer": writer, "weights": weights}
        if description["status"] != "SUCCEEDED":
            raise RehearsalFailed(phase.name, f"cutover ended {description['status']}: {description.get('error')}: "
                                              f"{description.get('cause')}")
        if writer["writer"] != "aws" or weights.get("aws") != 100:
            raise RehearsalFailed(phase.name, f"cutover SUCCEEDED but writer {writer}, weights {weights}")
        self._expect_payments(PAYMENTS_BETWEEN_PHASES, "payments on Aurora after the cutover")
        pause = self._pause("cutover")
        phase.detail["write_pause_seconds"] = round(pause, 2)
        self.say(f"    writer aws (epoch {writer['epoch']}), weights {weights}; longest gap in acknowledged "
                 f"writes {pause:.1f} s")

    def _fault_and_rollback(self, phase: Phase) -> None:
        from lib.local.rehearsal import clients as seen
        from lib.local.rehearsal.watch import ControlsWatch

        controls, names, lambdas = self.controls, self.controls.names, self.lambdas
        monitoring, ttl = self.config.monitoring, self.config.routing.ttl_seconds
        seen_invocations = len(lambdas.invocations)
        # The fault: the AWS API's handler starts failing every request (500).
        fault_at = time.monotonic()
        self.routing.fault.on = True
        self.say(f"    fault injected: the AWS API's handler fails every request; CloudWatch would put "
                 f"{names.child_alarm} in ALARM after {monitoring.evaluation_periods} × "
                 f"{monitoring.api_metric_period_seconds} s periods of ≥ {monitoring.api_failures} failures")
        # Detection as configured (the emulator evaluates no alarm): the clients keep failing meanwhile.
        while time.monotonic() < fault_at + monitoring.detection_seconds:
            self._check_load()
            time.sleep(0.2)
        watch = ControlsWatch(controls)
        alarm_at = time.monotonic()
        watch.start()
        fault = controls.inject_fault("rehearsal: the payment API's handler fails every request")
        self.say(f"    {fault['child_alarm']} set to ALARM; {fault['composite_alarm']} notification published to "
                 f"{fault['topic'].rsplit(':', 1)[-1]} (moto has no composite alarm)")
        execution_arn = self._wait_for_writer_rollback(alarm_at)
        if execution_arn:
            description = controls.follow(execution_arn, timeout=ROLLBACK_TIMEOUT_SECONDS)
            self.say(f"    writer rollback {description['status']}")
        rollback = self._wait_for_invocation(names.rollback, seen_invocations, ROLLBACK_TIMEOUT_SECONDS)
        both_onprem = watch.wait(ROLLBACK_TIMEOUT_SECONDS)
        watch.stop()
        # Follow: every client writing on on-prem, through its own DNS cache.
        clients = {client.name: client.attempts for client in self.load.clients}
        deadline = time.monotonic() + ttl + 60
        firsts = seen.first_onprem_write_after(clients, watch.weights_at or alarm_at)
        while None in firsts.values() and time.monotonic() < deadline:
            self._check_load()
            time.sleep(0.2)
            firsts = seen.first_onprem_write_after(clients, watch.weights_at or alarm_at)
        self.routing.fault.on = False
        controls.clear_fault()
        done_at = max([watch.both_at or time.monotonic(), *(t for t in firsts.values() if t is not None)])
        self.windows["rollback"] = (fault_at, done_at)
        self.windows["rollback-alarm"] = (alarm_at, done_at)
        errors = seen.server_errors([attempt for attempts in clients.values() for attempt in attempts])
        period = monitoring.api_metric_period_seconds
        fired = seen.alarm_periods(errors, fault_at, alarm_at + 0.001, period, monitoring.api_failures,
                                   monitoring.evaluation_periods)
        last_client = None if None in firsts.values() else max(firsts.values())
        action = None if watch.both_at is None else watch.both_at - alarm_at
        follow = None if last_client is None or watch.both_at is None else max(0.0, last_client - watch.both_at)
        detection = float(monitoring.detection_seconds)
        self.fault_timing = {
            "detection": detection,
            "action": None if action is None else round(action, 2),
            "follow": None if follow is None else round(follow, 2),
            "total": None if follow is None else round(detection + action + follow, 2),
            "how": {
                "detection": f"as configured, not measured (the emulator evaluates no alarm): the api-failures alarm "
                             f"needs ≥ {monitoring.api_failures} ServerError in each of {monitoring.evaluation_periods} "
                             f"consecutive {period}-s periods (monitoring.api_metric_period_seconds × "
                             "evaluation_periods); the rehearsal lets the API fail that long before it raises the alarm",
                "action": "measured: from the alarm (SetAlarmState + the composite's notification) until Route 53 "
                          "answers on-prem 100 / AWS 0 and the writer parameter names on-prem",
                "follow": "measured: from there until the last client's first successful write on on-prem, each "
                          f"client resolving through its own cache (TTL {ttl} s)",
            },
            "alarm_condition_met_by_clients_after_seconds": round(fired[0] - fault_at, 2) if fired else None,
            "routing_ttl_seconds": ttl,
            "clients_first_onprem_write_after_alarm_seconds": {
                name: None if at is None else round(at - alarm_at, 2) for name, at in firsts.items()},
        }
        self.alarm = {
            "measured": self.fault_timing["action"], "ttl": ttl, "total": self.fault_timing["total"],
            "weights_onprem_after": None if watch.weights_at is None else round(watch.weights_at - alarm_at, 2),
            "writer_onprem_after": None if watch.writer_at is None else round(watch.writer_at - alarm_at, 2),
            "how": "the fault (the AWS API failing) until every client wrote on on-prem: detection as configured + "
                   "action and follow measured (fault_to_clients_onprem_seconds)",
        }
        result = rollback.result if rollback else None
        phase.detail = {"fault": fault, "rollback_function": {
            "status": (result or {}).get("status") if isinstance(result, dict) else None,
            "error": rollback.error if rollback else "no invocation", "seconds": rollback and round(rollback.seconds, 1),
            "actions": (result or {}).get("actions") if isinstance(result, dict) else None,
            "errors": (result or {}).get("errors") if isinstance(result, dict) else None},
            "fault_to_clients_onprem_seconds": self.fault_timing, "writer_rollback_execution": execution_arn}
        if rollback is None:
            raise RehearsalFailed(phase.name, f"the rollback function was not invoked within {ROLLBACK_TIMEOUT_SECONDS:.0f} s "
                                              "of the alarm notification (SNS → Lambda delivery)")
        if rollback.error or not isinstance(result, dict) or result.get("status") != "ROLLED_BACK":
            raise RehearsalFailed(phase.name, f"the rollback function answered {rollback.error or ''} {result}")
        if not both_onprem:
            raise RehearsalFailed(phase.name, f"weights/writer not both on-prem {ROLLBACK_TIMEOUT_SECONDS:.0f} s after "
                                              f"the alarm: weights {controls.weights()}, writer {controls.writer()}")
        if last_client is None:
            raise RehearsalFailed(phase.name, f"not every client wrote on on-prem within TTL + 60 s: {firsts}")
        self._expect_payments(PAYMENTS_BETWEEN_PHASES, "payments on on-prem after the rollback")
        pause = self._pause("rollback-alarm")
        phase.detail["write_pause_seconds"] = round(pause, 2)
        self.say(f"    rollback function ROLLED_BACK in {rollback.seconds:.1f} s; fault → every client on on-prem: "
                 f"detection {detection:g} s (configured) + action {self.fault_timing['action']} s + follow "
                 f"{self.fault_timing['follow']} s = {self.fault_timing['total']} s; alarm condition met by the "
                 f"clients' failures after {self.fault_timing['alarm_condition_met_by_clients_after_seconds']} s")

    def _on_prem_again(self, phase: Phase) -> None:
        before = self.load.ledger.count()
        deadline = time.monotonic() + ON_PREM_AGAIN_SECONDS
        while time.monotonic() < deadline:
            self._check_load()
            time.sleep(0.5)
        phase.detail = {"acknowledged": self.load.ledger.count() - before, "writer": self.controls.writer()["writer"],
                        "weights": self.controls.weights()}
        self.say(f"    {phase.detail['acknowledged']} more payments acknowledged on on-prem")

    def _drain(self, phase: Phase) -> None:
        controls, names = self.controls, self.controls.names
        self.load.stop()
        self._check_load(stopped=True)
        if self.onprem_server is not None:
            self.onprem_server.stop()
        self.one_writer.stop()
        writer = controls.writer()["writer"]
        final, replica = self.servers[writer], self.servers["aws" if writer == "onprem" else "onprem"]
        deadline = time.monotonic() + 60
        while replica.scalar("SELECT count(*) FROM payments") != final.scalar("SELECT count(*) FROM payments"):
            if time.monotonic() > deadline:
                self.findings.append("the replica did not reach the final writer's payment count within 60 s")
                break
            time.sleep(0.2)
        status = controls.invoke(names.steps, {"step": "status"})
        validation = controls.invoke(names.validation, {})
        self.final = {"writer": controls.writer(), "weights": controls.weights(), "fence": status["fence"],
                      "replication": {name: state["status"] for name, state in status["replication"].items()},
                      "final_validation": validation.get("status"),
                      "replica_payments": replica.scalar("SELECT count(*) FROM payments"),
                      "writer_payments": final.scalar("SELECT count(*) FROM payments")}
        phase.detail = dict(self.final)
        self.say(f"    final: writer {self.final['writer']['writer']} (epoch {self.final['writer']['epoch']}), weights "
                 f"{self.final['weights']}, fences {status['fence']}, replication {self.final['replication']}, "
                 f"validation {self.final['final_validation']}")
        roles = self.one_writer.roles
        expected = {"onprem": {role: "open" for role in roles}, "aws": {role: "fenced" for role in roles}}
        if status["fence"] != expected or self.final["writer"]["writer"] != "onprem":
            raise RehearsalFailed(phase.name, f"not one writer on on-prem at the end: {self.final}")
        if validation.get("status") != "PASSED":
            raise RehearsalFailed(phase.name, f"the last validation is {validation.get('status')}: "
                                              f"{validation.get('message')}")

    # ---- helpers -----------------------------------------------------------------------------------
    def _expect_payments(self, more: int, what: str, timeout: float = 90) -> None:
        self._check_load()
        if not self.load.wait_for(more, timeout):
            self._check_load()
            raise RehearsalFailed(self._current_phase(), f"{what}: fewer than {more} payments acknowledged in "
                                                         f"{timeout:.0f} s (responses {dict(self.load.ledger.statuses)})")

    def _check_load(self, *, stopped: bool = False) -> None:
        crashed = self.load.crashed()
        if crashed:
            raise RehearsalFailed(self._current_phase(), f"payment clients crashed: {crashed}")
        rejected = self.load.ledger.rejected
        if rejected:
            raise RehearsalFailed(self._current_phase(), f"the API refused {len(rejected)} payment(s) for good "
                                                         f"(first: {rejected[0]})")

    def _pause(self, window: str) -> float:
        from lib.local.rehearsal.ledger import longest_gap

        start, end = self.windows[window]
        return longest_gap(self.load.ledger.ack_times(), start, end)[0]

    def _wait_for_writer_rollback(self, since: float, timeout: float = 60) -> str | None:
        controls = self.controls
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executions = controls.executions(controls.names.writer_rollback)
            if executions:
                return executions[0]["executionArn"]
            time.sleep(0.2)
        return None

    def _wait_for_invocation(self, function_name: str, after_index: int, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for invocation in self.lambdas.invocations[after_index:]:
                if invocation.function_name == function_name and invocation.asynchronous:
                    return invocation
            time.sleep(0.2)
        return None

    # ---- the end, whatever happened -----------------------------------------------------------------
    def _finish(self) -> dict:
        from lib.local.rehearsal.report import finish

        try:
            return finish(self)
        finally:
            sys.stdout, sys.stderr = self.console_out, self.console_err
            if self._lambda_log is not None:
                self._lambda_log.close()

