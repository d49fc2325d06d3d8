"""Flushing the WAL before decoding it from a logical slot."""

from __future__ import annotations


def flush_wal(cur, label: str) -> None:
    """Decoding reads only WAL flushed to disk, and a commit acknowledged with synchronous_commit =
    off may not be yet — nor is WAL the WAL writer does not flush on its own (it flushes partial
    pages for asynchronous commits only). A transaction of our own, committed synchronously, flushes
    all WAL written before its commit record: a transactional logical message (prefix
    payment-migration, content `label`), which changes no table; the decoders here skip messages.
    `cur` is a cursor of an autocommit connection; psycopg2's errors pass through."""
    cur.execute("SET synchronous_commit = on")
    cur.execute("SELECT pg_catalog.pg_logical_emit_message(true, 'payment-migration', %s)", (label,))
    cur.execute("RESET synchronous_commit")
