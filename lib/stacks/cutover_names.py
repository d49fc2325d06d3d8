"""Names the cutover stack gives, known upstream without reading it (that would be a cycle)."""

from __future__ import annotations


def writer_rollback_state_machine_name(env_name: str) -> str:
    """The writer rollback state machine, which the rollback Lambda starts by name."""
    return f"payment-writer-rollback-{env_name}"
