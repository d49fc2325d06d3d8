"""The app-wide rules fail synthesis when a resource breaks them."""

from __future__ import annotations

import pytest

from lib.aspects import SecureDefaults
from lib.cdk import App, Aspects, TerraformStack
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.provider import AwsProvider
from lib.cdk.aws.sns_topic import SnsTopic


def _synth_with(tmp_path, build) -> None:
    app = App(outdir=str(tmp_path))
    stack = TerraformStack(app, "probe")
    Aspects.of(stack).add(SecureDefaults())
    AwsProvider(stack, "aws", region="eu-west-1")
    build(stack)
    app.synth()


def test_unencrypted_log_group_fails_synthesis(synthesized, tmp_path):
    with pytest.raises(Exception, match="log group without a KMS key"):
        _synth_with(tmp_path, lambda stack: CloudwatchLogGroup(stack, "bare", name="bare", retention_in_days=7))


def test_unencrypted_topic_fails_synthesis(synthesized, tmp_path):
    with pytest.raises(Exception, match="SNS topic without a KMS key"):
        _synth_with(tmp_path, lambda stack: SnsTopic(stack, "bare", name="bare"))


def test_compliant_resources_synthesize(synthesized, tmp_path):
    _synth_with(tmp_path, lambda stack: CloudwatchLogGroup(stack, "ok", name="ok", retention_in_days=7,
                                                            kms_key_id="arn:aws:kms:eu-west-1:111122223333:key/k"))
    assert (tmp_path / "stacks" / "probe" / "cdk.tf.json").is_file()
