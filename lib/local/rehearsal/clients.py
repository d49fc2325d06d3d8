"""What the clients saw, from their own logs of attempts (load.Attempt): plain functions over plain
data, so the arithmetic is tested on its own (tests/local/test_rehearsal_clients.py).

- per client: the longest stretch without a successful write, and its failed requests by cause;
- over all clients: the write unavailability around a switch — the longest stretch, of any client,
  without a successful write that overlaps the switch's window;
- the alarm the AWS API's failures would raise: the API's ServerError count per period (5xx other
  than a fence's 503) from the attempts answered by the AWS side, evaluated as CloudWatch evaluates
  the api-failures alarm (threshold in each of N consecutive periods);
- after the rollback: when each client first wrote successfully on on-prem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FENCE_REFUSAL = "writer_fenced"  # the AWS API's error code for a write a fence refused


def successes(attempts: Iterable[Any]) -> list[float]:
    return sorted(attempt.at for attempt in attempts if attempt.write and attempt.outcome == "ok")


def longest_without_write(times: Sequence[float], start: float, end: float) -> float:
    """The longest interval in [start, end] with no successful write (edges included)."""
    points = [start, *(t for t in times if start < t < end), end]
    return max((b - a for a, b in zip(points, points[1:])), default=0.0)


def unavailability(times: Sequence[float], window: tuple[float, float], *, clip: bool = False) -> float:
    """The longest stretch without a successful write that overlaps `window`; with `clip`, counted
    from the window's start at the earliest (what happened after an event, not before it)."""
    first, last = window
    before = [t for t in times if t <= first]
    after = [t for t in times if t >= last]
    inside = [t for t in times if first < t < last]
    points = [first if clip or not before else before[-1], *inside, after[0] if after else last]
    return max((b - a for a, b in zip(points, points[1:])), default=0.0)


def per_client(attempts_by_client: Mapping[str, Sequence[Any]], start: float, end: float) -> dict[str, dict]:
    figures = {}
    for name, attempts in attempts_by_client.items():
        writes = [attempt for attempt in attempts if attempt.write]
        figures[name] = {
            "writes_attempted": len(writes),
            "writes_succeeded": sum(attempt.outcome == "ok" for attempt in writes),
            "longest_without_successful_write_seconds": round(longest_without_write(successes(attempts), start, end), 2),
            "failed_by_cause": dict(Counter(attempt.outcome for attempt in attempts if attempt.outcome != "ok")),
            "by_side": dict(Counter(attempt.side for attempt in writes)),
        }
    return figures


def server_errors(attempts: Iterable[Any], side: str = "aws") -> list[float]:
    """When the `side` answered 5xx for a reason other than a fence (what its ServerError counts)."""
    times = []
    for attempt in attempts:
        if attempt.side != side or attempt.outcome == "ok":
            continue
        parts = attempt.outcome.split()
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= 500 and FENCE_REFUSAL not in parts[2:]:
            times.append(attempt.at)
        elif len(parts) >= 2 and parts[1] == "exception":
            times.append(attempt.at)
    return sorted(times)


def alarm_periods(errors: Sequence[float], start: float, end: float, period: float, threshold: int,
                  evaluation_periods: int) -> list[float]:
    """The ends of the periods (aligned on `start`) at which an alarm "≥ threshold in each of
    evaluation_periods consecutive periods" would be in ALARM."""
    counts: list[int] = []
    fired = []
    at = start
    while at + period <= end:
        counts.append(sum(at <= t < at + period for t in errors))
        at += period
        if len(counts) >= evaluation_periods and all(c >= threshold for c in counts[-evaluation_periods:]):
            fired.append(at)
    return fired


def first_onprem_write_after(attempts_by_client: Mapping[str, Sequence[Any]], after: float) -> dict[str, float | None]:
    """Per client, when it first wrote successfully on on-prem at or after `after`."""
    return {name: next((attempt.at for attempt in sorted(attempts, key=lambda a: a.at)
                        if attempt.at >= after and attempt.write and attempt.side == "onprem"
                        and attempt.outcome == "ok"), None)
            for name, attempts in attempts_by_client.items()}
