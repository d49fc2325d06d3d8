"""Variants of the shipped dev config, one line changed at a time."""

from __future__ import annotations

import re

from lib.config import CONFIG_DIR

DEV_CONFIG = (CONFIG_DIR / "dev.toml").read_text()


def edited(pattern: str, replacement: str, text: str = DEV_CONFIG) -> str:
    """`text` (default: the dev config) with the one line matching `pattern` replaced."""
    result, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, f"pattern {pattern!r} not found in the config"
    return result
