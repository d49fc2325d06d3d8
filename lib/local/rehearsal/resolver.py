"""Name resolution as the rehearsal's clients see it: a resolver that answers the service name as
Route 53 answers a weighted record set, from the records in the emulator's Route 53, and a cache per
client that keeps an answer for the record's TTL (as a stub resolver or a JVM's DNS cache does).

Route 53 picks one record of a weighted set at random, in proportion to the weights; a record of
weight 0 is answered only when every record of the set has weight 0. No health checks sit on the
records (README, The cutover model), so health plays no part here either.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightedRecord:
    set_identifier: str
    weight: int
    ttl: int


def choose(records: list[WeightedRecord], rng: random.Random) -> WeightedRecord:
    """One record of a weighted set, as Route 53 picks it."""
    if not records:
        raise LookupError("no record answers the name")
    live = [record for record in records if record.weight > 0] or records
    if all(record.weight == 0 for record in live):
        return rng.choice(live)
    point = rng.uniform(0, sum(record.weight for record in live))
    for record in live:
        point -= record.weight
        if point < 0:
            return record
    return live[-1]


class Route53Resolver:
    """Answers `name` (`record_type`) from a hosted zone through the Route 53 API."""

    def __init__(self, route53: Any, zone_id: str, name: str, record_type: str) -> None:
        self.route53, self.zone_id, self.name, self.record_type = route53, zone_id, name.rstrip("."), record_type
        self._lock = threading.Lock()
        self.queries = 0

    def records(self) -> list[WeightedRecord]:
        with self._lock:  # one boto3 client shared by the clients' threads
            self.queries += 1
            answer = self.route53.list_resource_record_sets(
                HostedZoneId=self.zone_id, StartRecordName=self.name, StartRecordType=self.record_type, MaxItems="10")
        return [WeightedRecord(record["SetIdentifier"], int(record.get("Weight", 0)), int(record.get("TTL", 60)))
                for record in answer["ResourceRecordSets"]
                if record["Name"].rstrip(".") == self.name and record["Type"] == self.record_type
                and "SetIdentifier" in record]


class CachingStub:
    """One client's view of the name: the answer it got, kept until its TTL runs out."""

    def __init__(self, lookup: Callable[[], list[WeightedRecord]], rng: random.Random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup, self.rng, self.clock = lookup, rng, clock
        self.answer: WeightedRecord | None = None
        self.expires = 0.0
        self.resolutions = 0

    def resolve(self) -> str:
        """The set identifier of the record this client sends its next request to."""
        now = self.clock()
        if self.answer is None or now >= self.expires:
            self.answer = choose(self.lookup(), self.rng)
            self.expires = now + self.answer.ttl
            self.resolutions += 1
        return self.answer.set_identifier
