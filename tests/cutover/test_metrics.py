"""The publish_metrics step through the step Lambda: slot lag, retained WAL and fence state of both
real PostgreSQL servers, put to moto's CloudWatch and read back with ListMetrics / GetMetricData."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest

from payment_common.errors import DatabaseUnavailable
from tests.cutover.conftest import invoke

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
NAMESPACE = "PaymentMigrationTest"  # POWERTOOLS_METRICS_NAMESPACE of cutover_environment()
METRICS = ("SlotExists", "ReplicationSlotLagBytes", "RetainedWalBytes", "Fenced")


def read_back(namespace: str = NAMESPACE) -> dict[tuple[str, str], float]:
    """(side, metric) → the latest value CloudWatch holds."""
    cloudwatch = boto3.client("cloudwatch")
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    now = datetime.now(timezone.utc)
    queries = [{"Id": f"m{n}", "Label": f"{metric['Dimensions'][0]['Value']}/{metric['MetricName']}",
                "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}}
               for n, metric in enumerate(listed)]
    results = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=now - timedelta(minutes=10),
                                         EndTime=now + timedelta(minutes=10))["MetricDataResults"]
    return {tuple(result["Label"].split("/")): result["Values"][0] for result in results if result["Values"]}


def test_publishes_slot_lag_retained_wal_and_fence_per_side(handler, step_env, pair):
    invoke(handler, step="fence_non_writer")  # the writer is onprem: aws is fenced
    result = invoke(handler, step="publish_metrics")
    assert (result["from"], result["to"], result["published"], result["errors"]) == (None, None, 8, {})
    listed = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert sorted((m["MetricName"], [(d["Name"], d["Value"]) for d in m["Dimensions"]]) for m in listed) == sorted(
        (name, [("Side", side)]) for name in METRICS for side in ("onprem", "aws"))
    values = read_back()
    # onprem is the source of the running forward direction: its slot lives there
    assert values[("onprem", "SlotExists")] == 1 and values[("onprem", "Fenced")] == 0
    assert values[("onprem", "RetainedWalBytes")] >= values[("onprem", "ReplicationSlotLagBytes")] >= 0
    # no fallback slot on aws (its direction is stopped): 0 bytes, and the alarm sees SlotExists 0
    assert [values[("aws", name)] for name in METRICS] == [0, 0, 0, 1]


def test_the_lag_grows_while_the_consumer_does_not_confirm(handler, step_env, pair):
    pair.aws.postgres.admin_execute(f'ALTER SUBSCRIPTION "{pair.slot_names["forward"]}" DISABLE',
                                    dbname=pair.aws.dbname)
    pair.wait_until(lambda: not pair.onprem.scalar("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                                   (pair.slot_names["forward"],)), "the slot to be released")
    before = pair.onprem.scalar("SELECT pg_current_wal_lsn()::text")
    pair.onprem.postgres.admin_execute(
        "INSERT INTO audit_log (entity, entity_id, action, detail) "
        "SELECT 'payment', n::text, 'created', jsonb_build_object('pad', repeat('x', 500)) FROM generate_series(1, 2000) n",
        dbname=pair.onprem.dbname)
    written = pair.onprem.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (before,))
    assert written > 500_000
    result = invoke(handler, step="publish_metrics")
    lag = result["sides"]["onprem"]["ReplicationSlotLagBytes"]
    assert lag >= written, f"the {written} bytes of WAL written since the consumer stopped are not in the lag ({lag})"
    assert result["sides"]["onprem"]["RetainedWalBytes"] >= lag
    values = read_back()
    assert values[("onprem", "ReplicationSlotLagBytes")] == lag


def test_an_unreachable_side_publishes_nothing_and_the_other_side_is_still_published(
        handler, step_env, pair, monkeypatch):
    monkeypatch.setenv("AURORA_DB_PORT", "1")  # nothing listens there
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    with pytest.raises(DatabaseUnavailable, match="metrics not published for aws"):
        invoke(handler, step="publish_metrics")
    values = read_back()
    assert {side for side, _ in values} == {"onprem"}
    assert values[("onprem", "SlotExists")] == 1


def test_the_namespace_defaults_to_payment_migration(handler, step_env, pair, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE")
    assert invoke(handler, step="publish_metrics")["namespace"] == "PaymentMigration"
    assert read_back("PaymentMigration")[("onprem", "SlotExists")] == 1
