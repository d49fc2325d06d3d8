"""Fixtures of the synth assertions beyond the dev app (tests/conftest.py)."""

from __future__ import annotations

import pytest

from lib.config import CONFIG_DIR


@pytest.fixture(scope="session")
def prod(synthesize):
    """The production example (config/prod.toml), synthesized once per session."""
    return synthesize((CONFIG_DIR / "prod.toml").read_text())
