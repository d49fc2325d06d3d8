"""Counting payments: what the clients were told (acknowledged), what the final writer holds, and
the write pauses the clients saw. Plain functions over plain data, so the arithmetic is tested on
its own (tests/local/test_rehearsal_ledger.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Acknowledgement:
    key: str
    payment_id: str
    first_attempt: float  # monotonic seconds
    acknowledged: float  # monotonic seconds: the 2xx arrived
    attempts: int
    status: int  # 201 created, 200 replayed


@dataclass(frozen=True)
class Count:
    payments_acknowledged: int
    payments_in_writer: int
    lost: list[str]  # acknowledged, absent from the final writer
    duplicated: list[str]  # an idempotency key stored more than once
    answered_with_other_payment: list[str]  # acknowledged with a payment_id the final writer does not hold
    seeded_missing: list[str]  # pre-migration payments absent from the final writer
    stored_not_acknowledged: list[str]  # in the writer, never acknowledged (a client gave up, or legacy)

    def to_dict(self, *, sample: int = 20) -> dict:
        return {
            "payments_acknowledged": self.payments_acknowledged,
            "payments_in_writer": self.payments_in_writer,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "answered_with_other_payment": len(self.answered_with_other_payment),
            "seeded_missing": len(self.seeded_missing),
            "stored_not_acknowledged": len(self.stored_not_acknowledged),
            "samples": {name: values[:sample] for name, values in (
                ("lost", self.lost), ("duplicated", self.duplicated),
                ("answered_with_other_payment", self.answered_with_other_payment),
                ("seeded_missing", self.seeded_missing),
                ("stored_not_acknowledged", self.stored_not_acknowledged)) if values},
        }


def count(acknowledged: Mapping[str, str], final_keys: Sequence[str], final_ids: Mapping[str, str],
          seeded: Iterable[str] = ()) -> Count:
    """`acknowledged`: key → payment_id the API answered with; `final_keys`: every row's key in the
    final writer (duplicates included); `final_ids`: key → payment_id there."""
    stored = Counter(final_keys)
    seeded = list(seeded)
    seeded_set = set(seeded)
    return Count(
        payments_acknowledged=len(acknowledged),
        payments_in_writer=len(final_keys),
        lost=sorted(key for key in acknowledged if key not in stored),
        duplicated=sorted(key for key, copies in stored.items() if copies > 1),
        answered_with_other_payment=sorted(key for key, payment_id in acknowledged.items()
                                           if key in stored and final_ids.get(key) != payment_id),
        seeded_missing=sorted(key for key in seeded if key not in stored),
        stored_not_acknowledged=sorted(key for key in stored if key not in acknowledged and key not in seeded_set),
    )


def longest_gap(times: Sequence[float], start: float, end: float) -> tuple[float, float | None]:
    """The longest interval between consecutive acknowledgements (any client) that overlaps
    [start, end], and where it began. `times` need not be sorted. An interval is open on the right
    when no acknowledgement came after it: it lasts until `end` then."""
    ordered = sorted(times)
    best, at = 0.0, None
    previous = None
    for current in ordered:
        if previous is not None and current >= start and previous <= end and current - previous > best:
            best, at = current - previous, previous
        previous = current
    if previous is not None and previous <= end and end - previous > best:
        best, at = end - previous, previous
    if previous is None:
        best, at = end - start, start
    return best, at


def longest_wait(acks: Iterable[Acknowledgement], start: float, end: float) -> float:
    """The longest time one payment took from its first attempt to its acknowledgement, among
    those that overlap [start, end]."""
    return max((ack.acknowledged - ack.first_attempt for ack in acks
                if ack.acknowledged >= start and ack.first_attempt <= end), default=0.0)


def rate(times: Sequence[float]) -> float:
    """Acknowledgements per second over the span they cover."""
    if len(times) < 2:
        return 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else 0.0


def slowest_rate(times: Sequence[float], window: float = 10.0, *, exclude: Sequence[tuple[float, float]] = ()) -> float:
    """The lowest acknowledgement rate over any `window`-second stretch of the load, stretches
    that overlap an excluded interval (a planned write pause) left out: "throughout"."""
    ordered = sorted(times)
    if len(ordered) < 2 or ordered[-1] - ordered[0] < window:
        return rate(ordered)
    lowest = None
    start = ordered[0]
    index = 0
    while start + window <= ordered[-1]:
        end = start + window
        if not any(start < b and a < end for a, b in exclude):
            while index < len(ordered) and ordered[index] < start:
                index += 1
            inside = 0
            probe = index
            while probe < len(ordered) and ordered[probe] < end:
                inside += 1
                probe += 1
            lowest = inside / window if lowest is None else min(lowest, inside / window)
        start += 1.0
    return lowest if lowest is not None else rate(ordered)
