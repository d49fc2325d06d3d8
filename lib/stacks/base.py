"""What every stack shares: its own AWS provider (region, default tags) and its own S3 backend,
so that each stack plans and deploys alone with `cdktf deploy <area>-<env>`."""

from __future__ import annotations

from constructs import Construct

from lib.aspects import SecureDefaults
from lib.cdk import Aspects, S3Backend, TerraformStack
from lib.cdk.aws.data_aws_caller_identity import DataAwsCallerIdentity
from lib.cdk.aws.data_aws_partition import DataAwsPartition
from lib.cdk.aws.provider import AwsProvider, AwsProviderDefaultTags
from lib.config import Config
from lib.local import wiring
from lib.names import Names

# The S3 backend's lock file (`use_lockfile`) needs Terraform 1.10.
REQUIRED_TERRAFORM_VERSION = ">= 1.10.0"


class BaseStack(TerraformStack):
    """A stack named `<area>-<env>` with state at `s3://<bucket>/<env>/<area>.tfstate`."""

    def __init__(self, scope: Construct, area: str, *, config: Config) -> None:
        super().__init__(scope, f"{area}-{config.name}")
        self.area = area
        self.env_name = config.name
        self.names = Names(config.name)
        self.region = config.region
        Aspects.of(self).add(SecureDefaults())
        self._tags = {**config.default_tags, "Stack": area}
        # A local environment talks to the emulator on this machine; no other gets any of this.
        self._provider_settings = wiring.provider_settings(config.emulator) if config.emulator else {}
        backend_settings = wiring.backend_settings(config.emulator) if config.emulator else {}
        AwsProvider(self, "aws", region=config.region, default_tags=[AwsProviderDefaultTags(tags=self._tags)],
                    **self._provider_settings)
        backend = S3Backend(self, bucket=config.state.bucket, key=f"{config.name}/{area}.tfstate",
                            region=config.state.region, encrypt=True, kms_key_id=config.state.kms_key_arn,
                            **backend_settings)
        # S3-native locking (Terraform ≥ 1.10); cdktf 0.21's S3Backend predates the option.
        backend.add_override("use_lockfile", True)
        self.add_override("terraform.required_version", REQUIRED_TERRAFORM_VERSION)
        if config.emulator:
            self.add_override("terraform.required_providers.aws.version", wiring.EMULATOR_PROVIDER_CONSTRAINT)
        self._identity: DataAwsCallerIdentity | None = None
        self._partition: DataAwsPartition | None = None
        self._us_east_1: AwsProvider | None = None

    @property
    def us_east_1(self) -> AwsProvider:
        """A second provider for what AWS keeps in us-east-1 (DNSSEC keys, Route 53 query logs)."""
        if self._us_east_1 is None:
            self._us_east_1 = AwsProvider(self, "aws-us-east-1", alias="us_east_1", region="us-east-1",
                                          default_tags=[AwsProviderDefaultTags(tags=self._tags)],
                                          **self._provider_settings)
        return self._us_east_1

    def resource_name(self, suffix: str) -> str:
        """Names AWS resources `payment-<suffix>-<env>` (lib/names.py)."""
        return self.names.resource(suffix)

    @property
    def account_id(self) -> str:
        if self._identity is None:
            self._identity = DataAwsCallerIdentity(self, "caller")
        return self._identity.account_id

    @property
    def partition(self) -> str:
        if self._partition is None:
            self._partition = DataAwsPartition(self, "partition")
        return self._partition.partition
