"""Parts of the rehearsal that can be checked without running it: the deploy order it applies the
stacks in, and the API execution environments of its clients."""

from __future__ import annotations

import json

from lib.local.deploy import dependencies


def test_every_stack_but_network_waits_for_the_account_stack(tmp_path):
    manifest = {"stacks": {"account-x": {}, "network-x": {}, "security-x": {"dependencies": ["network-x"]},
                           "migration-x": {"dependencies": ["network-x", "security-x"]}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    graph = dependencies(tmp_path, "x")
    assert graph["account-x"] == set() and graph["network-x"] == set(), "the two first stacks run side by side"
    assert graph["migration-x"] == {"network-x", "security-x", "account-x"}, \
        "the migration stack reads the account stack's DMS roles by name, which the manifest cannot show"
    assert graph["security-x"] == {"network-x", "account-x"}


def test_each_client_gets_its_own_api_execution_environment():
    from lib.local.rehearsal.load import isolated_module, private_metrics

    first = isolated_module("payment_api", "payment_api.handler")
    second = isolated_module("payment_api", "payment_api.handler")
    import payment_api.handler as canonical

    assert len({id(first), id(second), id(canonical)}) == 3
    assert first.app is not second.app and first.payments is not second.payments, \
        "the resolver and the core are per environment, like a Lambda execution environment"
    private_metrics(first.metrics)
    first.metrics.add_metric(name="Probe", unit="Count", value=1)
    assert "Probe" not in second.metrics.metric_set, "metrics are not shared between environments"
    first.metrics.clear_metrics()
