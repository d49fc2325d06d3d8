"""The rehearsal's client-side arithmetic and its resolver: Route 53's weighted choice, the TTL
cache per client, the longest stretch without a write, the alarm evaluated on the clients' 5xx."""

from __future__ import annotations

import random
from collections import Counter

from lib.local.rehearsal import clients as seen
from lib.local.rehearsal.load import Attempt
from lib.local.rehearsal.resolver import CachingStub, WeightedRecord, choose


def records(onprem: int, aws: int, ttl: int = 10) -> list[WeightedRecord]:
    return [WeightedRecord("onprem", onprem, ttl), WeightedRecord("aws", aws, ttl)]


def test_a_record_of_weight_zero_is_never_answered_while_another_has_weight():
    rng = random.Random(1)
    assert {choose(records(0, 100), rng).set_identifier for _ in range(500)} == {"aws"}
    assert {choose(records(100, 0), rng).set_identifier for _ in range(500)} == {"onprem"}


def test_answers_follow_the_weights():
    rng = random.Random(2)
    answers = Counter(choose(records(90, 10), rng).set_identifier for _ in range(5000))
    assert 350 < answers["aws"] < 650, answers


def test_all_weights_zero_still_answers():
    assert choose(records(0, 0), random.Random(3)).set_identifier in ("onprem", "aws")


def test_a_client_keeps_its_answer_for_the_ttl_and_then_asks_again():
    now = [0.0]
    current = [records(100, 0)]
    stub = CachingStub(lambda: current[0], random.Random(4), clock=lambda: now[0])
    assert stub.resolve() == "onprem"
    current[0] = records(0, 100)
    now[0] = 9.9
    assert stub.resolve() == "onprem", "the cached answer must hold for the record's TTL"
    now[0] = 10.0
    assert stub.resolve() == "aws" and stub.resolutions == 2


def ok(at: float, side: str = "aws") -> Attempt:
    return Attempt(at, side, True, "ok")


def failed(at: float, cause: str = "aws 500 internal_error") -> Attempt:
    return Attempt(at, cause.split()[0], True, cause)


def test_the_longest_stretch_without_a_write_counts_the_edges():
    times = seen.successes([ok(1), ok(2), failed(3), failed(4), ok(7)])
    assert seen.longest_without_write(times, 0, 8) == 5
    assert seen.longest_without_write([], 0, 8) == 8


def test_unavailability_is_the_gap_that_overlaps_the_window():
    times = [1.0, 2.0, 6.0, 6.5, 20.0]
    assert seen.unavailability(times, (3.0, 4.0)) == 4.0
    assert seen.unavailability(times, (7.0, 8.0)) == 13.5


def test_fence_refusals_are_not_server_errors_and_the_alarm_needs_every_period():
    attempts = [failed(t) for t in (0.5, 1, 1.5, 10.5, 11, 11.5, 20.5, 21, 21.5)]
    attempts += [failed(5, "aws 503 writer_fenced"), failed(6, "onprem 503 unavailable")]
    errors = seen.server_errors(attempts)
    assert len(errors) == 9
    assert seen.alarm_periods(errors, 0, 30, 10, 3, 3) == [30]
    assert seen.alarm_periods(errors[:-1], 0, 30, 10, 3, 3) == [], "two failures in the last period: no alarm"


def test_per_client_figures_count_failures_by_cause():
    figures = seen.per_client({"c0": [ok(1), failed(2), failed(3), ok(4, "onprem")]}, 0, 5)["c0"]
    assert figures["failed_by_cause"] == {"aws 500 internal_error": 2}
    assert figures["by_side"] == {"aws": 3, "onprem": 1}
    assert figures["longest_without_successful_write_seconds"] == 3
    assert seen.first_onprem_write_after({"c0": [ok(1), ok(4, "onprem")]}, 2) == {"c0": 4}


def test_clipped_unavailability_counts_from_the_event_only():
    assert seen.unavailability([1.0, 30.0], (20.0, 25.0), clip=True) == 10.0
    assert seen.unavailability([1.0, 30.0], (20.0, 25.0)) == 29.0
