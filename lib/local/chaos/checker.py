"""The checker: judges one trial from what the clients were told and what the databases hold, trusting
nothing the controller reports about itself (Jepsen's method).

Its inputs are plain data, so it can be tested on hand-made histories:

- `requests`: every answer every client got, one dict per attempt (`key`, `customer`, `amount`,
  `status` — an HTTP status or "exception" —, `error` (the API's error code, if any), `payment_id`,
  `sent`, `answered`);
- `rows`: per side, the payments stored there at the end (`payment_id`, `key`, `amount`, `customer`);
- `commits`: per side, the payments committed there by a local transaction (not applied by
  replication), with their commit time (`pg_xact_commit_timestamp_origin(xmin)`, origin 0);
- `samples`: the fence sampler's readings, `(seconds, onprem_state, aws_state)` with each state as
  payment_cutover.fence.fence_state reports it ("open", "fenced", "partial: …") or "down" (its
  server could not be reached);
- `writer_changes`: how many times the writer legitimately changed in the trial (the writer
  parameter's epoch at the end minus at the start);
- `final`: what liveness needs: the writer parameter's side, each side's fence state, the
  validation's status.

What it reports (a `Verdict`): payments lost (acknowledged, but absent from the final writer or stored
with other fields), duplicated (a key stored twice, or stored under another payment id than the one
its client was told), unexplained (stored, though no client was told about it and none saw an
ambiguous answer for it), the sides' difference, two-writer samples (neither side fenced or down),
interleaved commits (local commits of the two sides alternating more often than the writer changed),
the seconds with no open side, and liveness.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from lib.names import SIDES
ACKNOWLEDGED = (200, 201)
# An answer that says nothing was stored: the request was refused before anything committed.
CANNOT_WRITE = ("fenced", "down")
DEFINITE_REFUSALS = {"writer_fenced", "invalid_request", "unknown_customer", "idempotency_conflict"}


@dataclass
class Verdict:
    acknowledged: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)  # keys
    duplicated: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # stored with other fields than sent
    unexplained: list[str] = field(default_factory=list)
    ambiguous: int = 0  # keys whose client saw an answer that does not say whether it was stored
    sides_differ: list[str] = field(default_factory=list)  # keys (or payment ids) on one side only / differing
    two_writer_samples: int = 0
    samples: int = 0
    max_sample_gap_seconds: float = 0.0
    interleaved_commits: int = 0
    commit_runs: int = 0
    no_writer_seconds: float = 0.0
    max_ack_gap_seconds: float = 0.0
    liveness: list[str] = field(default_factory=list)  # what is wrong after recovery; empty: live

    @property
    def safe(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.unexplained or self.sides_differ
                    or self.two_writer_samples or self.interleaved_commits)

    @property
    def live(self) -> bool:
        return not self.liveness

    def findings(self) -> list[str]:
        found = []
        for name in ("lost", "duplicated", "mismatched", "unexplained", "sides_differ"):
            keys = getattr(self, name)
            if keys:
                found.append(f"{len(keys)} {name.replace('_', ' ')}: {', '.join(sorted(keys)[:5])}"
                             + (" …" if len(keys) > 5 else ""))
        if self.two_writer_samples:
            found.append(f"{self.two_writer_samples} fence samples with neither side fenced")
        if self.interleaved_commits:
            found.append(f"{self.interleaved_commits} interleaved local commits ({self.commit_runs} runs of commits "
                         "by side)")
        found.extend(self.liveness)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "safe": self.safe, "live": self.live,
                "lost": len(self.lost), "duplicated": len(self.duplicated), "mismatched": len(self.mismatched),
                "unexplained": len(self.unexplained), "sides_differ": len(self.sides_differ),
                "examples": {name: sorted(getattr(self, name))[:10]
                             for name in ("lost", "duplicated", "mismatched", "unexplained", "sides_differ")
                             if getattr(self, name)}}


def amount(value: Any) -> str:
    return f"{Decimal(str(value)):.2f}"


def _ambiguous(answer: Mapping[str, Any]) -> bool:
    status = answer.get("status")
    if status in ACKNOWLEDGED:
        return False
    if isinstance(status, int) and status < 500:
        return False
    return answer.get("error") not in DEFINITE_REFUSALS


def check(requests: Iterable[Mapping[str, Any]], rows: Mapping[str, Sequence[Mapping[str, Any]]], *,
          final_writer: str, commits: Mapping[str, Sequence[tuple[float, str]]] | None = None,
          samples: Sequence[tuple[float, str, str]] = (), writer_changes: int = 0,
          final: Mapping[str, Any] | None = None) -> Verdict:
    verdict = Verdict()
    sent: dict[str, tuple[str, str]] = {}  # key → (customer, amount) as the client sent it
    acked: dict[str, set[str]] = defaultdict(set)  # key → payment ids its client was told
    ambiguous: set[str] = set()
    ack_times: list[float] = []
    for answer in requests:
        key = answer["key"]
        sent.setdefault(key, (str(answer["customer"]), amount(answer["amount"])))
        if answer.get("status") in ACKNOWLEDGED:
            acked[key].add(str(answer["payment_id"]))
            ack_times.append(float(answer["answered"]))
        elif _ambiguous(answer):
            ambiguous.add(key)
    verdict.acknowledged = len(acked)
    verdict.ambiguous = len(ambiguous - set(acked))

    stored = rows.get(final_writer, [])
    verdict.stored = len(stored)
    by_key: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in stored:
        by_key[str(row["key"])].append(row)
    for key, ids in acked.items():
        found = by_key.get(key, [])
        if not found:
            verdict.lost.append(key)
            continue
        if len(ids) > 1 or len(found) > 1 or {str(row["payment_id"]) for row in found} != ids:
            verdict.duplicated.append(key)
        customer, value = sent[key]
        if any((str(row["customer"]), amount(row["amount"])) != (customer, value) for row in found):
            verdict.mismatched.append(key)
    for key, found in by_key.items():
        if key in acked:
            continue
        if len(found) > 1:
            verdict.duplicated.append(key)
        if key not in ambiguous:
            verdict.unexplained.append(key)
        elif key in sent and any((str(row["customer"]), amount(row["amount"])) != sent[key] for row in found):
            verdict.mismatched.append(key)

    # both sides hold the same payments (a plain recount, duplicates included)
    def content(side: str) -> Counter:
        return Counter((str(row["payment_id"]), str(row["key"]), amount(row["amount"]), str(row["customer"]))
                       for row in rows.get(side, []))
    difference = (content("onprem") - content("aws")) + (content("aws") - content("onprem"))
    verdict.sides_differ = sorted({entry[1] for entry in difference})

    _check_samples(verdict, samples)
    if commits is not None:
        _check_commits(verdict, commits, writer_changes)
    if ack_times:
        ack_times.sort()
        verdict.max_ack_gap_seconds = round(max((b - a for a, b in zip(ack_times, ack_times[1:])), default=0.0), 3)
    if final is not None:
        verdict.liveness = liveness(final)
    return verdict


def _check_samples(verdict: Verdict, samples: Sequence[tuple[float, str, str]]) -> None:
    verdict.samples = len(samples)
    no_writer = 0.0
    for index, (at, onprem, aws) in enumerate(samples):
        # a side can take writes unless it is fenced or down (its server stopped)
        if onprem not in CANNOT_WRITE and aws not in CANNOT_WRITE:
            verdict.two_writer_samples += 1
        if index + 1 < len(samples):
            gap = samples[index + 1][0] - at
            verdict.max_sample_gap_seconds = max(verdict.max_sample_gap_seconds, round(gap, 3))
            if onprem != "open" and aws != "open":
                no_writer += gap
    verdict.no_writer_seconds = round(no_writer, 3)


def _check_commits(verdict: Verdict, commits: Mapping[str, Sequence[tuple[float, str]]], writer_changes: int) -> None:
    """Local commits of both sides in commit-time order: each run of one side's commits is one
    writer's tenure. More runs than tenures means the sides wrote alternately: two writers. The
    commits counted as interleaved are those of the runs beyond the allowed ones (the smallest)."""
    timeline = sorted((at, side) for side in SIDES for at, _ in commits.get(side, ()))
    runs: list[int] = []
    previous = None
    for _, side in timeline:
        if side != previous:
            runs.append(0)
            previous = side
        runs[-1] += 1
    verdict.commit_runs = len(runs)
    excess = len(runs) - (writer_changes + 1)
    if excess > 0:
        verdict.interleaved_commits = sum(sorted(runs)[:excess])


def liveness(final: Mapping[str, Any]) -> list[str]:
    """Exactly one side open, the one the writer parameter names; the other fenced; validation PASSED."""
    problems = []
    writer, fence = final.get("writer"), final.get("fence", {})
    open_sides = [side for side in SIDES if fence.get(side) == "open"]
    if open_sides != [writer]:
        problems.append(f"writer parameter names {writer}, open sides: {open_sides or 'none'} ({fence})")
    other = "aws" if writer == "onprem" else "onprem"
    if fence.get(other) != "fenced":
        problems.append(f"{other} is not fenced: {fence.get(other)}")
    if final.get("validation") != "PASSED":
        problems.append(f"validation {final.get('validation')}")
    if final.get("execution") not in (None, "SUCCEEDED"):
        problems.append(f"recovery execution {final.get('execution')}")
    return problems
