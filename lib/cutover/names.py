"""What the stacks name the controller's parts in one environment. The stacks name resources
`payment-<suffix>-<env>` (lib/stacks/base.py BaseStack.resource_name), which cannot be imported
here without loading the provider bindings; a test holds these names to the synthesized ones."""

from __future__ import annotations

from dataclasses import dataclass

from lib.stacks.cutover_names import writer_rollback_state_machine_name

# The three state machines, by the name the CLI and its output use.
MACHINES = ("advance", "cutover", "writer-rollback")


def resource_name(suffix: str, env_name: str) -> str:
    return f"payment-{suffix}-{env_name}"


@dataclass(frozen=True)
class Names:
    env_name: str

    @property
    def traffic_function(self) -> str:
        return resource_name("cutover-traffic", self.env_name)

    @property
    def steps_function(self) -> str:
        return resource_name("cutover-steps", self.env_name)

    @property
    def rollback_function(self) -> str:
        return resource_name("rollback", self.env_name)

    @property
    def validation_function(self) -> str:
        return resource_name("validation", self.env_name)

    @property
    def machines(self) -> dict[str, str]:
        return {
            "advance": resource_name("advance", self.env_name),
            "cutover": resource_name("cutover", self.env_name),
            "writer-rollback": writer_rollback_state_machine_name(self.env_name),
        }
