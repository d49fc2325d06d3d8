"""A pause in the apply, for what AWS makes consistent a little after it answers (IAM)."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from lib.cdk import LocalExecProvisioner, TerraformResource


class PropagationDelay(Construct):
    """Completes `seconds` after `triggers` (resource attributes) are known, and again whenever
    they change. Built on Terraform's own `terraform_data` resource with a `sleep`, because the
    `time` provider is not available offline; what depends on it starts after the pause."""

    def __init__(self, scope: Construct, id_: str, *, seconds: int, triggers: Sequence[str], reason: str) -> None:
        super().__init__(scope, id_)
        self.resource = TerraformResource(
            self, "delay", terraform_resource_type="terraform_data",
            provisioners=[LocalExecProvisioner(type="local-exec", command=f"sleep {int(seconds)}")])
        self.resource.add_override("triggers_replace", list(triggers))
        self.resource.add_override("//.reason", reason)
