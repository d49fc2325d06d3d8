"""Properties every stack shares: its own provider and backend, ids, and cross-stack values."""

from __future__ import annotations

import json
import re

import pytest

AREAS = ("network", "security", "database")


@pytest.mark.parametrize("area", AREAS)
def test_each_stack_has_its_own_provider_with_region_and_default_tags(synthesized, area):
    providers = [p for p in synthesized.stack(area)["provider"]["aws"] if "alias" not in p]
    assert len(providers) == 1, f"{area}: expected one default AWS provider"
    provider = providers[0]
    assert provider["region"] == "eu-west-1"
    tags = provider["default_tags"][0]["tags"]
    assert tags["Environment"] == "dev" and tags["Project"] == "payment-migration" and tags["Stack"] == area


@pytest.mark.parametrize("area", AREAS)
def test_each_stack_has_its_own_encrypted_locked_s3_backend(synthesized, area):
    backend = synthesized.stack(area)["terraform"]["backend"]["s3"]
    assert backend == {"bucket": "payment-migration-tfstate-dev", "key": f"dev/{area}.tfstate",
                       "region": "eu-west-1", "encrypt": True, "use_lockfile": True}


def test_stack_ids_follow_area_env(synthesized):
    assert set(AREAS) <= {name.rsplit("-", 1)[0] for name in synthesized.stacks}
    assert all(name.endswith("-dev") for name in synthesized.stacks)


def test_provider_version_is_pinned(synthesized):
    for name, stack in synthesized.stacks.items():
        assert stack["terraform"]["required_providers"]["aws"]["version"] == "6.25.0", name


def _references(value) -> str:
    return json.dumps(value)


@pytest.mark.parametrize("area,resource_type,name,attribute", [
    ("security", "aws_security_group", "database", "vpc_id"),
    ("database", "aws_db_subnet_group", "subnets", "subnet_ids"),
    ("database", "aws_rds_cluster", "cluster", "kms_key_id"),
    ("database", "aws_rds_cluster", "cluster", "vpc_security_group_ids"),
    ("database", "aws_rds_cluster_instance", "reader", "availability_zone"),
])
def test_values_from_other_stacks_arrive_through_remote_state(synthesized, area, resource_type, name, attribute):
    value = _references(synthesized.resources(area, resource_type)[name][attribute])
    assert "data.terraform_remote_state." in value, f"{area}/{name}.{attribute} is not read from remote state: {value}"


@pytest.mark.parametrize("area", ("security", "database"))
def test_remote_state_reads_the_producers_s3_state(synthesized, area):
    for name, remote in synthesized.data(area, "terraform_remote_state").items():
        assert remote["backend"] == "s3", name
        producer = re.search(r"input-(.+)-dev$", name).group(1)
        assert remote["config"]["key"] == f"dev/{producer}.tfstate", name


def test_dependency_graph_is_acyclic(synthesized):
    graph = {name: set(stack.get("dependencies", [])) for name, stack in synthesized.manifest["stacks"].items()}
    visiting, done = set(), set()

    def visit(node, path):
        assert node not in visiting, f"cycle: {' -> '.join(path + [node])}"
        if node in done:
            return
        visiting.add(node)
        for dependency in graph[node]:
            visit(dependency, path + [node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    assert graph["network-dev"] == set()
    assert graph["database-dev"] == {"network-dev", "security-dev"}


@pytest.mark.parametrize("environment", ["synthesized", "prod"], ids=["dev", "prod"])
def test_iam_role_names_are_unique_across_the_app(request, environment):
    """IAM role names are unique in an account: two stacks (or a function and a state machine)
    naming the same role would fail at apply, whichever deploys second."""
    app = request.getfixturevalue(environment)
    names = [role["name"] for stack in app.stacks.values()
             for role in stack.get("resource", {}).get("aws_iam_role", {}).values()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"IAM role names used twice: {duplicates}"
    assert all(len(name) <= 64 for name in names), [name for name in names if len(name) > 64]
