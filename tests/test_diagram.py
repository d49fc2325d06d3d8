"""The architecture picture's DOT source (lib/diagram.py) holds every stack and every cross-stack
dependency of the synthesized app: checked on the DOT text, so no Graphviz binary is needed."""

from __future__ import annotations

import re

import pytest

from lib.diagram import DEPLOY_ORDER, DiagramError, architecture, render_dot

CLUSTER = re.compile(r'^\s*subgraph "cluster_([^"]+)" \{', re.MULTILINE)
ARROW = re.compile(r'^\s*"[^"]+" -> "[^"]+" \[ltail="cluster_([^"]+)", lhead="cluster_([^"]+)"', re.MULTILINE)


def _dot(manifest: dict, stacks: dict) -> str:
    return render_dot(architecture(manifest, stacks))


def _manifest_dependencies(manifest: dict) -> set[tuple[str, str]]:
    """(producer, consumer) for every dependency the manifest records."""
    return {(producer, consumer) for consumer, entry in manifest["stacks"].items()
            for producer in entry["dependencies"]}


def test_every_stack_of_the_manifest_is_a_box(synthesized):
    drawn = CLUSTER.findall(_dot(synthesized.manifest, synthesized.stacks))
    assert sorted(drawn) == sorted(synthesized.manifest["stacks"]), "stacks missing from or extra in the diagram"
    assert len(drawn) == len(set(drawn)), f"a stack is drawn twice: {drawn}"


def test_every_cross_stack_dependency_of_the_manifest_is_an_arrow(synthesized):
    arrows = ARROW.findall(_dot(synthesized.manifest, synthesized.stacks))
    expected = _manifest_dependencies(synthesized.manifest)
    assert expected, "the manifest records no cross-stack dependency: nothing to check"
    missing = expected - set(arrows)
    extra = set(arrows) - expected
    assert not missing, f"dependencies without an arrow (producer, consumer): {sorted(missing)}"
    assert not extra, f"arrows the manifest does not record (producer, consumer): {sorted(extra)}"
    assert len(arrows) == len(set(arrows)), "a dependency is drawn more than once"


def test_every_remote_state_read_is_an_arrow_from_the_stack_owning_that_state(synthesized):
    """The manifest and the stacks' terraform_remote_state agree, and the picture shows both."""
    owner_of_state = {(stack["terraform"]["backend"]["s3"]["bucket"], stack["terraform"]["backend"]["s3"]["key"]): name
                      for name, stack in synthesized.stacks.items()}
    arrows = set(ARROW.findall(_dot(synthesized.manifest, synthesized.stacks)))
    for consumer, stack in synthesized.stacks.items():
        for source, settings in stack.get("data", {}).get("terraform_remote_state", {}).items():
            producer = owner_of_state.get((settings["config"]["bucket"], settings["config"]["key"]))
            assert producer, f"{consumer}: {source} reads a state no synthesized stack writes"
            assert (producer, consumer) in arrows, f"{consumer} reads {producer}'s state but no arrow shows it"


def test_boxes_run_left_to_right_in_deploy_order(synthesized):
    drawn = CLUSTER.findall(_dot(synthesized.manifest, synthesized.stacks))
    position = {name: index for index, name in enumerate(drawn)}
    for producer, consumer in _manifest_dependencies(synthesized.manifest):
        assert position[producer] < position[consumer], f"{consumer} is drawn before {producer}, which it reads"
    known = [name.removesuffix("-dev") for name in drawn if name.removesuffix("-dev") in DEPLOY_ORDER]
    assert known == sorted(known, key=DEPLOY_ORDER.index), f"not in the runbook's deploy order: {known}"


def test_each_box_shows_its_main_resources_and_counts_the_rest(synthesized):
    arch = architecture(synthesized.manifest, synthesized.stacks)
    views = {view.name: view for view in arch.stacks}
    for name, stack in synthesized.stacks.items():
        total = sum(len(resources) for resources in stack.get("resource", {}).values())
        view = views[name]
        assert sum(group.count for group in view.resources) + view.other_resources == total, \
            f"{name}: the boxes and the 'supporting resources' line do not add up to its {total} resources"
        if total:
            assert view.resources, f"{name} has resources but its box shows none"
    shown = {group.resource_type for group in views["database-dev"].resources}
    assert "aws_rds_cluster" in shown, f"the database box lacks the Aurora cluster: {shown}"
    assert "aws_lambda_function" in {group.resource_type for group in views["compute-dev"].resources}
    assert "aws_vpc" in {group.resource_type for group in views["network-dev"].resources}


def _stack(key: str, resources: dict | None = None, reads: dict[str, str] | None = None,
           uses: list[str] | None = None) -> dict:
    """A synthesized stack: its backend key, resources, remote states read and outputs used."""
    document = {"terraform": {"backend": {"s3": {"bucket": "state", "key": key}}},
                "resource": resources or {}}
    if reads:
        document["data"] = {"terraform_remote_state": {
            source: {"backend": "s3", "config": {"bucket": "state", "key": state_key}}
            for source, state_key in reads.items()}}
        document["output"] = {f"use-{index}": {"value": f"${{{expression}}}"} for index, expression in enumerate(uses or [])}
    return document


def _app(stacks: dict[str, tuple[list[str], dict]]) -> tuple[dict, dict]:
    manifest = {"stacks": {name: {"dependencies": deps, "synthesizedStackPath": f"stacks/{name}/cdk.tf.json"}
                           for name, (deps, _) in stacks.items()}}
    return manifest, {name: document for name, (_, document) in stacks.items()}


def test_a_stack_the_runbook_does_not_know_is_drawn_after_what_it_reads():
    read_lb = "data.terraform_remote_state.cross-stack-reference-input-load-balancer-prod-eu.outputs"
    manifest, stacks = _app({
        "load-balancer-prod-eu": ([], _stack("prod-eu/load-balancer.tfstate", {
            "aws_lb": {"alb": {}}, "aws_lb_target_group": {"api": {}}, "aws_lb_listener": {"a": {}, "b": {}}})),
        "traffic-shadow-prod-eu": (["load-balancer-prod-eu"], _stack(
            "prod-eu/traffic-shadow.tfstate", {"aws_sfn_state_machine": {"m": {}}, "aws_iam_role_policy": {"p": {}}},
            reads={"cross-stack-reference-input-load-balancer-prod-eu": "prod-eu/load-balancer.tfstate"},
            uses=[f"{read_lb}.cross-stack-output-aws_lb_target_groupapiarn_suffix",
                  f"{read_lb}.cross-stack-output-aws_lbalbarn_suffix"])),
        "account-prod-eu": ([], _stack("prod-eu/account.tfstate", {"aws_iam_role": {"dms": {}}})),
    })
    arch = architecture(manifest, stacks)
    assert arch.environment == "prod-eu"
    assert [(view.area, view.name) for view in arch.stacks] == [
        ("account", "account-prod-eu"), ("load-balancer", "load-balancer-prod-eu"),
        ("traffic-shadow", "traffic-shadow-prod-eu")]
    (reference,) = arch.references
    assert (reference.producer, reference.consumer, reference.values) == \
        ("load-balancer-prod-eu", "traffic-shadow-prod-eu", 2)
    # The longest resource type wins: aws_lb_target_group… is the target group, not the load balancer.
    assert reference.crossing == ("ALB target group", "Application Load Balancer")
    shadow = arch.stacks[2]
    assert [group.label for group in shadow.resources] == ["Step Functions state machine"]
    assert shadow.other_resources == 1
    dot = render_dot(arch)
    assert CLUSTER.findall(dot) == ["account-prod-eu", "load-balancer-prod-eu", "traffic-shadow-prod-eu"]
    assert ARROW.findall(dot) == [("load-balancer-prod-eu", "traffic-shadow-prod-eu")]


def test_a_dependency_only_the_remote_state_shows_is_still_drawn():
    manifest, stacks = _app({
        "network-test": ([], _stack("test/network.tfstate", {"aws_vpc": {"vpc": {}}})),
        "security-test": ([], _stack("test/security.tfstate", {"aws_security_group": {"sg": {}}},
                                     reads={"network": "test/network.tfstate"})),
    })
    assert ARROW.findall(_dot(manifest, stacks)) == [("network-test", "security-test")]


def test_stacks_reading_each_other_in_a_cycle_are_refused():
    manifest, stacks = _app({
        "a-test": (["b-test"], _stack("test/a.tfstate")),
        "b-test": (["a-test"], _stack("test/b.tfstate")),
    })
    with pytest.raises(DiagramError, match="cycle: a-test, b-test"):
        architecture(manifest, stacks)


def test_names_are_quoted_for_dot():
    manifest, stacks = _app({'odd"name-x': ([], _stack("x/odd.tfstate", {"aws_vpc": {"v": {}}}))})
    dot = _dot(manifest, stacks)
    assert 'subgraph "cluster_odd\\"name-x"' in dot
