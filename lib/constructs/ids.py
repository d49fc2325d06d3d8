"""Construct ids for resources made one per configured value (a CIDR, an address, an e-mail).

Keyed by the value, not its position in the list: removing the first CIDR leaves the resources of
the others where they are, instead of replacing each with its neighbour's."""

from __future__ import annotations

import re


def value_id(value: str) -> str:
    """`172.16.0.0/16` → `172-16-0-0_16`, `ops@example.org` → `ops_at_example-org`."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", value.replace("/", "_").replace("@", "_at_"))
