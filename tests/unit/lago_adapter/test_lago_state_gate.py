"""The pieces of the Lago state gate that need no I/O: what a state is, how a stamp sorts, what a stored
gate value says (the gate itself runs end to end in tests/e2e/test_payment_lifecycle.py)."""

from __future__ import annotations

from lead2cash.adapters import lago as adapter
from lead2cash.systems.lago.binding import _Passed, _short, _stamp


def test_states_are_not_ordered_and_a_return_to_a_state_is_the_same_state() -> None:
    paid = adapter.invoice_state({"status": "finalized", "payment_status": "succeeded"})
    failed = adapter.invoice_state({"status": "finalized", "payment_status": "failed"})
    assert paid != failed and paid == "finalized/succeeded/-/-"
    lost = adapter.invoice_state(
        {
            "status": "finalized",
            "payment_status": "succeeded",
            "payment_dispute_lost_at": "2026-01-01T00:00:00Z",
        }
    )
    assert lost.endswith("/dispute_lost")
    refunded = {
        "status": "finalized",
        "payment_status": "succeeded",
        adapter.REFUNDS_FIELD: {"refund_amount_cents": 5},
    }
    assert adapter.invoice_state(refunded) == "finalized/succeeded/-/-/refunded_5"


def test_refund_summary_counts_issued_refunds_only() -> None:
    notes = [
        {"refund_amount_cents": 500, "refund_status": "pending", "updated_at": "2026-01-02T10:00:00Z"},
        {"refund_amount_cents": 300, "refund_status": "succeeded", "updated_at": "2026-01-03T10:00:00Z"},
        {"refund_amount_cents": 200, "refund_status": "failed", "updated_at": "2026-01-04T10:00:00Z"},
        {"refund_amount_cents": 100, "refund_status": "succeeded", "credit_status": "voided"},
        {"credit_amount_cents": 900, "refund_amount_cents": 0, "updated_at": "2026-01-09T10:00:00Z"},
    ]
    summary = adapter.refund_summary(notes)
    # A declined refund still moves the time: the deal must stop showing it.
    assert summary == {"refund_amount_cents": 800, "updated_at": "2026-01-04T10:00:00Z"}
    assert adapter.refund_summary([]) == {"refund_amount_cents": 0, "updated_at": None}


def test_stamps_sort_as_time_whatever_the_offset_and_unknown_ones_are_empty() -> None:
    assert _stamp("2026-01-02T11:00:06+01:00") > _stamp("2026-01-02T10:00:05Z")
    assert _stamp("2026-01-02T10:00:05Z") == _stamp("2026-01-02T10:00:05+00:00")
    assert _stamp(None) == _stamp("yesterday") == _stamp(12) == ""


def test_gate_values_round_trip_and_old_rank_values_continue_above_their_rank() -> None:
    passed = _Passed("2026-01-02T10:00:05.000000Z", 3, "finalized/failed/-/-")
    assert _Passed.parse(passed.value("inv-1")) == passed
    # Written when the gate ranked states ("<id>:<rank>"): no time, the rank was the last version.
    assert _Passed.parse("4e90e318-86e3-4c84-a223-7055e4048560:4") == _Passed("", 4, "")
    assert _short("x|y") != "x|y" and len(_short("a" * 500)) < 60
