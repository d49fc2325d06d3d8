"""The rehearsal's arithmetic: what counts as lost, duplicated or answered with another payment, and
how the write pause and the write rate are measured (lib/local/rehearsal/ledger.py)."""

from __future__ import annotations

import pytest

from lib.local.rehearsal.ledger import Acknowledgement, count, longest_gap, longest_wait, rate, slowest_rate


def test_count_finds_lost_duplicated_and_changed_payments():
    acknowledged = {"a": "p-a", "b": "p-b", "c": "p-c", "d": "p-d"}
    final_keys = ["a", "b", "b", "d", "legacy-1", "orphan"]
    final_ids = {"a": "p-a", "b": "p-b", "d": "p-other", "legacy-1": "p-l", "orphan": "p-o"}
    counted = count(acknowledged, final_keys, final_ids, seeded=["legacy-1", "legacy-2"])
    assert counted.payments_acknowledged == 4
    assert counted.payments_in_writer == 6, "every row counts, duplicates included"
    assert counted.lost == ["c"], "acknowledged but absent from the final writer"
    assert counted.duplicated == ["b"], "a key stored twice"
    assert counted.answered_with_other_payment == ["d"], "the client holds a payment_id the writer does not"
    assert counted.seeded_missing == ["legacy-2"]
    assert counted.stored_not_acknowledged == ["orphan"], "legacy payments are not unacknowledged ones"
    summary = counted.to_dict()
    assert (summary["lost"], summary["duplicated"], summary["samples"]["lost"]) == (1, 1, ["c"])


def test_count_of_a_clean_run_is_all_zero():
    counted = count({"a": "1", "b": "2"}, ["b", "a"], {"a": "1", "b": "2"})
    assert (counted.lost, counted.duplicated, counted.answered_with_other_payment) == ([], [], [])
    assert "samples" not in counted.to_dict() or counted.to_dict()["samples"] == {}


def test_longest_gap_is_the_widest_silence_overlapping_the_window():
    times = [0.0, 1.0, 2.0, 2.5, 9.5, 10.0, 30.0]
    assert longest_gap(times, 3.0, 8.0) == (7.0, 2.5), "2.5 → 9.5 straddles the window"
    assert longest_gap(times, 10.1, 12.0) == (20.0, 10.0), "a gap that begins before the window counts"
    assert longest_gap(times, 0.2, 0.8) == (1.0, 0.0)


def test_longest_gap_without_a_later_acknowledgement_runs_to_the_window_end():
    assert longest_gap([0.0, 1.0], 2.0, 12.0) == (11.0, 1.0)
    assert longest_gap([], 2.0, 5.0) == (3.0, 2.0), "nothing acknowledged at all: the whole window"


def test_longest_wait_counts_payments_that_overlap_the_window():
    acks = [Acknowledgement("a", "1", 0.0, 0.5, 1, 201), Acknowledgement("b", "2", 4.0, 11.0, 9, 200),
            Acknowledgement("c", "3", 20.0, 20.1, 1, 201)]
    assert longest_wait(acks, 5.0, 6.0) == pytest.approx(7.0)
    assert longest_wait(acks, 30.0, 40.0) == 0.0


def test_rates():
    steady = [index * 0.25 for index in range(121)]  # 4 per second for 30 s
    assert rate(steady) == pytest.approx(4.0)
    with_pause = [t for t in steady if not 10.0 < t < 15.0]
    assert slowest_rate(with_pause, 5.0) == pytest.approx(0.0, abs=0.25), "the pause is a slow stretch"
    assert slowest_rate(with_pause, 5.0, exclude=[(9.0, 16.0)]) == pytest.approx(4.0, abs=0.25), \
        "stretches overlapping a planned switch are left out"
    assert rate([1.0]) == 0.0
