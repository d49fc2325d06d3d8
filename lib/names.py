"""What the stacks name things in one environment, and the two sides: the one place that builds a
resource name. The stacks name what they create from here; the operator CLI (lib.cutover), the
rehearsal and the tests find the same resources by the same functions, without synthesizing.

No provider bindings are imported here (loading them costs seconds), so a tool that only needs a
name imports this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass

# The two databases: on-prem PostgreSQL and Aurora, as the writer record and the controller name them.
SIDES = ("onprem", "aws")

# The controller's three state machines, by the label the CLI and its output use.
MACHINES = ("advance", "cutover", "writer-rollback")


def resource_name(suffix: str, env_name: str) -> str:
    """`payment-<suffix>-<env>`: unique per environment in one account."""
    return f"payment-{suffix}-{env_name}"


def secret_name(env_name: str, side: str, role: str) -> str:
    """`payment-migration/<env>/<side>/<role>`: what the README's runbook puts values into."""
    return f"payment-migration/{env_name}/{side}/{role}"


def writer_parameter_name(env_name: str) -> str:
    """The SSM parameter naming the database that accepts writes."""
    return f"/payment-migration/{env_name}/writer"


def replication_slot_name(env_name: str, direction: str) -> str:
    """The logical slot of a direction on its source: payment_<env>_forward on on-prem,
    payment_<env>_fallback on Aurora (PostgreSQL slot names take no hyphen)."""
    return f"payment_{env_name.replace('-', '_')}_{direction}"


@dataclass(frozen=True)
class Names:
    """The names an operator or a tool looks things up by, in environment `env_name`."""

    env_name: str

    def resource(self, suffix: str) -> str:
        return resource_name(suffix, self.env_name)

    # ---- functions ----
    @property
    def api(self) -> str:
        return self.resource("api")

    @property
    def validation(self) -> str:
        """The validation function, and the distributed validation state machine (same name)."""
        return self.resource("validation")

    @property
    def validation_scheduler(self) -> str:
        return self.resource("validation-scheduler")

    @property
    def rollback(self) -> str:
        """`aws lambda invoke --function-name payment-rollback-<env>` (README, DESIGN)."""
        return self.resource("rollback")

    @property
    def steps(self) -> str:
        return self.resource("cutover-steps")

    @property
    def traffic(self) -> str:
        return self.resource("cutover-traffic")

    @property
    def functions(self) -> tuple[str, ...]:
        """The functions the rehearsal runs in-process (the scheduler runs the steps' code)."""
        return (self.api, self.validation, self.rollback, self.steps, self.traffic)

    # ---- state machines ----
    @property
    def advance(self) -> str:
        return self.resource("advance")

    @property
    def cutover(self) -> str:
        return self.resource("cutover")

    @property
    def writer_rollback(self) -> str:
        return self.resource("writer-rollback")

    @property
    def machines(self) -> dict[str, str]:
        """MACHINES label -> state machine name."""
        return {"advance": self.advance, "cutover": self.cutover, "writer-rollback": self.writer_rollback}

    # ---- alarms, topics, parameters, secrets ----
    @property
    def child_alarm(self) -> str:
        """One of the alarms the composite alarm watches: the payment API's failures (10 s periods)."""
        return self.resource("api-failures")

    @property
    def composite_alarm(self) -> str:
        """The alarm whose ALARM means the AWS side fails its users: the automatic rollback's trigger."""
        return self.resource("cutover-unhealthy")

    @property
    def rollback_topic(self) -> str:
        """The SNS topic that carries only the composite alarm, to the rollback function."""
        return self.resource("rollback")

    @property
    def writer_parameter(self) -> str:
        return writer_parameter_name(self.env_name)

    def secret(self, side: str, role: str) -> str:
        return secret_name(self.env_name, side, role)
