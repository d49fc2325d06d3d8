"""DMS task settings are frozen outside legacy-sync: a change stops synthesis, naming the key."""

from __future__ import annotations

import json

import pytest

from lib import dms_settings
from lib.config import ConfigError, parse_config
from tests.support.configs import DEV_CONFIG, edited


def test_legacy_sync_records_the_settings_and_a_second_record_changes_nothing(tmp_path):
    config = parse_config(DEV_CONFIG)
    path = tmp_path / "dev.dms-settings.json"
    assert dms_settings.record(config, path) is True
    recorded = json.loads(path.read_text())
    assert recorded["config"] == {"schema": "public", "tables": ["customers", "payments", "transactions", "audit_log"],
                                  "lob_max_size_kb": 64}
    assert dms_settings.record(config, path) is False
    dms_settings.check_frozen(config, path)  # legacy-sync: never refused


def test_outside_legacy_sync_a_settings_change_stops_naming_the_key(tmp_path):
    path = tmp_path / "dev.dms-settings.json"
    dms_settings.record(parse_config(DEV_CONFIG), path)
    canary = edited(r'^phase = .*$', 'phase = "canary"')
    dms_settings.check_frozen(parse_config(canary), path)  # unchanged: fine
    changed = parse_config(edited(r'^lob_max_size_kb = .*$', 'lob_max_size_kb = 128', canary))
    with pytest.raises(ConfigError) as raised:
        dms_settings.check_frozen(changed, path)
    assert raised.value.key == "migration.lob_max_size_kb" and "stops a running task" in raised.value.problem
    assert dms_settings.record(changed, path) is False, "outside legacy-sync nothing is recorded"


def test_outside_legacy_sync_without_a_record_synthesis_stops(tmp_path):
    canary = parse_config(edited(r'^phase = .*$', 'phase = "split"'))
    with pytest.raises(ConfigError) as raised:
        dms_settings.check_frozen(canary, tmp_path / "absent.json")
    assert raised.value.key == "routing.phase"


def test_the_committed_record_matches_the_shipped_dev_config():
    config = parse_config(DEV_CONFIG)
    assert json.loads(dms_settings.record_path(config).read_text()) == dms_settings.current_record(config), \
        "config/dev.dms-settings.json is stale: synthesize dev and commit it"
