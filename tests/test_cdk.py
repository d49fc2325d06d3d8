"""lib/cdk, the one place the CDK comes from, and lib/compare_cdk, which compares cdktf's output with
CDK Terrain's (make compare-cdk runs both syntheses; these tests check the comparison itself)."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from lib import cdk
from lib.compare_cdk import (
    Synthesis,
    addresses,
    binding_arguments,
    binding_differences,
    structural_differences,
    used_types,
    value_differences,
)


def test_cdktf_is_the_default(monkeypatch):
    monkeypatch.delenv(cdk.VARIABLE, raising=False)
    assert cdk.selected().name == "cdktf"


def test_an_unknown_implementation_is_refused(monkeypatch):
    monkeypatch.setenv(cdk.VARIABLE, "cdk8s")
    with pytest.raises(ImportError, match="PAYMENT_MIGRATION_CDK=cdk8s: expected one of cdktf, cdktn"):
        cdk.selected()


def test_a_provider_module_is_the_bindings_own_module_not_a_copy():
    """A copy would register its jsii types a second time."""
    from lib.cdk.aws.vpc import Vpc

    bindings = importlib.import_module(f"{cdk.SELECTED.aws}.vpc")
    assert sys.modules["lib.cdk.aws.vpc"] is bindings, "lib.cdk.aws.vpc was loaded as a second module"
    assert Vpc is bindings.Vpc
    assert sys.modules["lib.cdk.aws"] is sys.modules[cdk.SELECTED.aws]
    assert bindings.__spec__.name == f"{cdk.SELECTED.aws}.vpc", "the alias overwrote the module's own spec"


def test_the_core_classes_are_the_selected_implementations():
    core = importlib.import_module(cdk.SELECTED.core)
    assert cdk.App is core.App and cdk.TerraformStack is core.TerraformStack


def _stack(**resources) -> dict:
    return {
        "//": {"metadata": {"version": "0.21.0"}},
        "terraform": {"required_providers": {"aws": {"source": "aws", "version": "6.25.0"}}},
        "provider": {"aws": [{"region": "eu-west-1"}, {"alias": "us_east_1", "region": "us-east-1"}]},
        "data": {"aws_partition": {"partition": {}}},
        "resource": resources,
        "output": {"vpc_id": {"value": "${aws_vpc.vpc.id}"}},
    }


def _synthesis(name: str, stacks: dict, dependencies: dict | None = None, bindings=None) -> Synthesis:
    manifest = {"version": "0", "stacks": {stack: {"dependencies": (dependencies or {}).get(stack, [])}
                                           for stack in stacks}}
    return Synthesis(name, stacks, manifest, 1.0, bindings)


def test_addresses_name_every_resource_data_source_output_and_provider():
    stack = _stack(aws_vpc={"vpc": {"cidr_block": "10.0.0.0/16"}})
    assert addresses(stack) == {"aws_vpc.vpc", "data.aws_partition.partition", "output.vpc_id",
                                "provider.aws", "provider.aws.us_east_1"}


def test_the_same_app_has_no_structural_difference_and_lists_the_provider_pin():
    left = _synthesis("cdktf", {"network-dev": _stack(aws_vpc={"vpc": {"cidr_block": "10.0.0.0/16"}})})
    newer = _stack(aws_vpc={"vpc": {"cidr_block": "10.0.0.0/16"}})
    newer["terraform"]["required_providers"]["aws"] = {"source": "hashicorp/aws", "version": "6.69.1"}
    newer["//"]["metadata"]["version"] = "0.24.0"
    right = _synthesis("cdktn", {"network-dev": newer})

    assert structural_differences(left, right) == []
    assert value_differences(left, right) == [
        {"path": "terraform.required_providers.aws.source", "cdktf": "aws", "cdktn": "hashicorp/aws",
         "stacks": ["network-dev"]},
        {"path": "terraform.required_providers.aws.version", "cdktf": "6.25.0", "cdktn": "6.69.1",
         "stacks": ["network-dev"]},
    ], "the CDK's own metadata (//) must not count as a difference"


def test_a_missing_stack_resource_or_dependency_is_structural():
    left = _synthesis("cdktf", {"network-dev": _stack(aws_vpc={"vpc": {}}, aws_eip={"nat": {}}),
                                "security-dev": _stack()},
                      dependencies={"security-dev": ["network-dev"]})
    right = _synthesis("cdktn", {"network-dev": _stack(aws_vpc={"vpc": {}}, aws_eip={"nat_0": {}})})

    assert structural_differences(left, right) == [
        "stack security-dev only with cdktf",
        "network-dev: aws_eip.nat only with cdktf",
        "network-dev: aws_eip.nat_0 only with cdktn",
    ]


def test_an_attribute_that_differs_is_listed_with_its_stacks():
    left = _synthesis("cdktf", {"network-dev": _stack(aws_vpc={"vpc": {"enable_dns_support": True}})})
    right = _synthesis("cdktn", {"network-dev": _stack(aws_vpc={"vpc": {}})})
    assert value_differences(left, right) == [
        {"path": "resource.aws_vpc.vpc.enable_dns_support", "cdktf": True, "cdktn": "<absent>",
         "stacks": ["network-dev"]}]


BINDINGS_VPC = '''
class Vpc(TerraformResource, metaclass=jsii.JSIIMeta, jsii_type="x.vpc.Vpc"):
    def __init__(self, scope, id_, *, cidr_block=None, {extra}connection=None, count=None, provider=None):
        pass

class VpcConfig(TerraformMetaArguments):
    def __init__(self, *, cidr_block=None, {extra}connection=None):
        pass

class VpcTimeouts:
    def __init__(self, *, create=None):
        pass
'''


def _bindings(root, extra: str = ""):
    (root / "vpc").mkdir(parents=True)
    (root / "vpc" / "__init__.py").write_text(textwrap.dedent(BINDINGS_VPC.format(extra=extra)))
    return root


def test_binding_arguments_are_read_from_the_source_without_meta_arguments_or_the_config_copy(tmp_path):
    arguments = binding_arguments(_bindings(tmp_path, "ipv4_ipam_pool_id=None, ") / "vpc" / "__init__.py")
    assert arguments == {"Vpc": {"cidr_block", "ipv4_ipam_pool_id"}, "VpcTimeouts": {"create"}}


def test_binding_differences_name_the_arguments_only_one_side_accepts(tmp_path):
    stacks = {"network-dev": _stack(aws_vpc={"vpc": {}})}
    assert used_types(stacks) == {"aws": "provider", "aws_vpc": "vpc", "data.aws_partition": "data_aws_partition"}
    left = _synthesis("cdktf", stacks, bindings=_bindings(tmp_path / "cdktf"))
    right = _synthesis("cdktn", stacks, bindings=_bindings(tmp_path / "cdktn", "ipv4_ipam_pool_id=None, "))
    differences = binding_differences(left, right)
    assert differences["aws_vpc"] == {"cdktf": [], "cdktn": ["Vpc.ipv4_ipam_pool_id"]}
    assert differences["aws"] == {"cdktf": ["no module provider"], "cdktn": ["no module provider"]}
