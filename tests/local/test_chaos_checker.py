"""The fault matrix's checker on hand-made histories: each kind of broken promise is reported, and a
clean history passes."""

from __future__ import annotations

from lib.local.chaos.checker import check
from lib.local.chaos.definitions import PLACEHOLDERS, compare
from lib.workflows.cutover import cutover_definition

ALICE, BOB = "c0000000-0000-4000-8000-000000000001", "c0000000-0000-4000-8000-000000000002"
OPEN_FENCED = {"writer": "onprem", "fence": {"onprem": "open", "aws": "fenced"}, "validation": "PASSED"}


def answer(key: str, status, payment_id: str | None = None, *, customer: str = ALICE, amount: str = "10.00",
           error: str | None = None, at: float = 0.0) -> dict:
    return {"key": key, "customer": customer, "amount": amount, "status": status, "error": error,
            "payment_id": payment_id, "sent": at, "answered": at + 0.01}


def row(key: str, payment_id: str, *, customer: str = ALICE, amount: str = "10.00") -> dict:
    return {"key": key, "payment_id": payment_id, "customer": customer, "amount": amount}


def both(rows: list[dict]) -> dict[str, list[dict]]:
    return {"onprem": rows, "aws": list(rows)}


def test_a_clean_history_passes():
    requests = [answer("k1", 503, error="writer_fenced"), answer("k1", 201, "p1", at=1),
                answer("k2", 201, "p2", customer=BOB, amount="5.5", at=2)]
    verdict = check(requests, both([row("k1", "p1"), row("k2", "p2", customer=BOB, amount="5.50")]),
                    final_writer="onprem", commits={"onprem": [(1.0, "p1"), (2.0, "p2")], "aws": []},
                    samples=[(0.0, "open", "fenced"), (0.02, "open", "fenced")], final=OPEN_FENCED)

    assert verdict.safe and verdict.live, verdict.findings()
    assert verdict.acknowledged == 2 and verdict.findings() == []


def test_a_lost_payment_is_reported():
    requests = [answer("k1", 201, "p1"), answer("k2", 201, "p2")]

    verdict = check(requests, both([row("k1", "p1")]), final_writer="onprem")

    assert verdict.lost == ["k2"] and not verdict.safe


def test_a_payment_stored_with_other_fields_is_reported():
    verdict = check([answer("k1", 201, "p1", amount="10.00")], both([row("k1", "p1", amount="11.00")]),
                    final_writer="onprem")

    assert verdict.mismatched == ["k1"] and not verdict.safe


def test_a_duplicate_is_reported():
    # the client was told p1; the store holds the key under another payment id, and twice
    verdict = check([answer("k1", 201, "p1")], both([row("k1", "p1"), row("k1", "p9")]), final_writer="onprem")

    assert verdict.duplicated == ["k1"] and not verdict.safe


def test_two_acknowledgements_naming_different_payments_are_a_duplicate():
    verdict = check([answer("k1", 201, "p1"), answer("k1", 200, "p2")], both([row("k1", "p1")]),
                    final_writer="onprem")

    assert verdict.duplicated == ["k1"]


def test_a_payment_nobody_was_told_about_is_unexplained_unless_its_client_saw_an_ambiguous_answer():
    requests = [answer("k1", 503, error="writer_fenced"), answer("k2", "exception", error="timeout")]

    verdict = check(requests, both([row("k1", "p1"), row("k2", "p2"), row("k3", "p3")]), final_writer="onprem")

    assert sorted(verdict.unexplained) == ["k1", "k3"]  # k2's client does not know: it may be stored
    assert verdict.ambiguous == 1


def test_sides_that_differ_are_reported():
    verdict = check([answer("k1", 201, "p1")], {"onprem": [row("k1", "p1")], "aws": []}, final_writer="onprem")

    assert verdict.sides_differ == ["k1"] and not verdict.safe


def test_interleaved_commits_are_reported():
    # one writer change allowed: on-prem then aws. An on-prem commit after aws began is a second writer.
    commits = {"onprem": [(1.0, "p1"), (2.0, "p2"), (5.0, "p5")], "aws": [(3.0, "p3"), (4.0, "p4"), (6.0, "p6")]}

    verdict = check([], both([]), final_writer="aws", commits=commits, writer_changes=1)

    assert verdict.commit_runs == 4 and verdict.interleaved_commits == 2 and not verdict.safe


def test_commits_that_follow_the_writer_changes_are_not_interleaved():
    commits = {"onprem": [(1.0, "p1"), (5.0, "p5")], "aws": [(3.0, "p3"), (4.0, "p4")]}

    verdict = check([], both([]), final_writer="onprem", commits=commits, writer_changes=2)

    assert verdict.commit_runs == 3 and verdict.interleaved_commits == 0


def test_samples_with_two_sides_able_to_write_are_reported_and_a_down_side_is_not_one():
    samples = [(0.0, "open", "fenced"), (0.02, "open", "partial: holds: x"), (0.04, "open", "down"),
               (0.06, "fenced", "fenced"), (0.10, "fenced", "open")]

    verdict = check([], both([]), final_writer="aws", samples=samples)

    assert verdict.two_writer_samples == 1
    assert verdict.no_writer_seconds == 0.04  # from the all-fenced sample to the next one


def test_liveness_needs_the_named_writer_alone_open_and_the_validation_passed():
    final = {"writer": "aws", "fence": {"onprem": "fenced", "aws": "fenced"}, "validation": "FAILED"}

    verdict = check([], both([]), final_writer="aws", final=final)

    assert not verdict.live and len(verdict.liveness) == 2


def test_the_definition_comparison_sees_a_changed_state_and_a_misplaced_function():
    built = cutover_definition(**PLACEHOLDERS)
    synthesized = cutover_definition(step_arn="${aws_lambda_function.steps.arn}",
                                     validation_arn="${aws_lambda_function.validation.arn}",
                                     traffic_arn="${aws_lambda_function.traffic.arn}")
    assert compare(built, synthesized, "cutover", {}) == []

    synthesized["States"]["Fence"]["Retry"][0]["MaxAttempts"] = 1
    synthesized["States"]["Open"]["Parameters"]["FunctionName"] = "${aws_lambda_function.traffic.arn}"
    problems = compare(built, synthesized, "cutover", {})

    assert any("Fence.Retry[0].MaxAttempts" in problem for problem in problems)
    assert any("Open.Parameters.FunctionName" in problem for problem in problems)


def test_the_load_rate_counts_only_bins_where_every_answer_was_an_acknowledgement_outside_the_fault():
    from lib.local.chaos.runner import load_rate

    # 4 s of load from t=100: 100 acknowledgements a second, but the third second refused (a fence)
    # and the fourth slowed to 10 a second by a fault in place from t=103 to t=103.9
    requests = [answer(f"k{second}-{n}", 201, f"p{second}-{n}", at=100 + second + n / 101)
                for second in (0, 1) for n in range(100)]
    requests += [answer(f"r{n}", 503, error="writer_fenced", at=102 + n / 101) for n in range(100)]
    requests += [answer(f"s{n}", 201, f"ps{n}", at=103 + n / 10) for n in range(10)]

    measured = load_rate(requests, 100.0, 104.0, processes=2, fault=(103.0, 103.9))
    assert (measured["clean_payments_per_second"], measured["clean_seconds"]) == (100.0, 2.0), measured
    unfaulted = load_rate(requests, 100.0, 104.0, processes=2)
    assert unfaulted["clean_payments_per_second"] < 100 and unfaulted["clean_seconds"] == 3.0, unfaulted
    assert measured["offered_per_second"] == 77.5 and measured["load_processes"] == 2
