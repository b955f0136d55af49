"""The state store on SQLite and PostgreSQL: the same tests, both backends."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from lead2cash.store import EffectState, NewDeadLetter, NewMessage, Store, XrefWrite


def _msgs(n: int, ordering: str | None = None, prefix: str = "k") -> list[NewMessage]:
    return [NewMessage(f"{prefix}{i}", "Order", "{}", f"trace{i}", ordering_key=ordering) for i in range(n)]


def test_enqueue_is_an_idempotent_consumer_and_moves_the_checkpoint(store_url: str) -> None:
    store = Store(store_url)
    store.enqueue("r", _msgs(3), checkpoint=("r:src", "3"))
    store.enqueue("r", _msgs(5), checkpoint=("r:src", "5"))
    assert store.count_messages("r") == 5
    assert store.checkpoint_get("r:src") == "5"
    history = store.checkpoint_history("r:src")
    assert [h["value"] for h in history] == ["5", "3"]
    assert history[0]["previous"] == "3"
    store.close()


def test_mapping_dead_letters_are_written_with_the_batch(store_url: str) -> None:
    store = Store(store_url)
    store.enqueue("r", _msgs(1), dead=[NewDeadLetter('{"bad": 1}', "customer: Field required", "t")])
    [dead] = store.dlq_list("r")
    assert dead.stage == "mapping" and dead.original_payload == '{"bad": 1}'
    assert "customer" in dead.error_message
    store.close()


def test_claim_respects_ordering_keys_and_leases(store_url: str) -> None:
    ticks = [1_000_000]
    store = Store(store_url, clock=lambda: ticks[0])
    store.enqueue("r", _msgs(3, ordering="acct-1", prefix="a") + _msgs(2, prefix="b"))
    first = store.claim("r", "w1", 10, lease_ms=5_000)
    # Only the oldest message of ordering key acct-1, plus the unordered ones.
    assert sorted(m.idempotency_key for m in first) == ["a0", "b0", "b1"]
    assert store.claim("r", "w2", 10, lease_ms=5_000) == []
    ticks[0] += 6_000  # the leases expired: another worker may take them
    again = store.claim("r", "w2", 10, lease_ms=5_000)
    assert sorted(m.idempotency_key for m in again) == ["a0", "b0", "b1"]
    store.complete("T", [(m.id, m.idempotency_key, "ref") for m in again if m.idempotency_key == "a0"])
    nxt = store.claim("r", "w3", 10, lease_ms=5_000)
    assert [m.idempotency_key for m in nxt] == ["a1"]
    store.close()


def test_effect_ledger_states(store_url: str) -> None:
    store = Store(store_url)
    assert store.effects_reserve("T", "r", [("k1", 1)]) == {}
    store.effects_mark("T", ["k1"], EffectState.SENT)
    prior = store.effects_reserve("T", "r", [("k1", 1)])
    assert prior["k1"].state is EffectState.SENT
    store.enqueue("r", _msgs(1, prefix="k1-"))
    store.complete("T", [(1, "k1", "doc-9")])
    effect = store.effect_get("T", "k1")
    assert effect is not None and effect.state is EffectState.CONFIRMED and effect.target_ref == "doc-9"
    # A confirmed effect never goes back to sent.
    store.effects_mark("T", ["k1"], EffectState.SENT)
    assert store.effect_get("T", "k1").state is EffectState.CONFIRMED  # type: ignore[union-attr]
    store.close()


def test_xrefs_receipts_and_route_state(store_url: str) -> None:
    store = Store(store_url)
    store.xref_put("Customer", "c1", "salesforce", "001A")
    store.xref_put("Customer", "c1", "lago", "L-1")
    assert store.xref_get("Customer", "c1", "lago") == "L-1"
    assert store.xref_find("Customer", "salesforce", "001A") == "c1"
    for i in range(1200):  # more than one chunk of bound parameters
        store.xref_put("Gate", f"g{i}", "lago", f"g{i}:{i % 3}")
    wanted = [f"g{i}" for i in range(0, 1300, 7)]
    many = store.xref_get_many("Gate", "lago", wanted)
    assert many == {f"g{i}": f"g{i}:{i % 3}" for i in range(0, 1200, 7)}
    # A batch updates what exists and inserts the rest; a key written twice in one batch keeps the last.
    store.xref_put_many(
        [
            XrefWrite("Gate", "g1", "lago", "g1:new"),
            XrefWrite("Gate", "g9999", "lago", "first"),
            XrefWrite("Gate", "g9999", "lago", "second"),
        ]
    )
    assert store.xref_get_many("Gate", "lago", ["g1", "g2", "g9999"]) == {
        "g1": "g1:new",
        "g2": "g2:2",
        "g9999": "second",
    }
    assert store.receipt_add("lago", "evt-1") is True
    assert store.receipt_add("lago", "evt-1") is False
    store.route_state_set("r", "halted", "boom")
    state = store.route_state_get("r")
    assert state is not None and state.status == "halted" and state.reason == "boom"
    store.close()


def test_dead_letter_requeue_and_discard(store_url: str) -> None:
    store = Store(store_url)
    store.enqueue("r", _msgs(2))
    claimed = store.claim("r", "w", 10, 60_000)
    d1 = store.dead_letter_message(claimed[0], "permanent", "rejected", [{"at_ms": 1, "error": "rejected"}])
    d2 = store.dead_letter_message(claimed[1], "exhausted", "503", [])
    assert store.count_messages("r", "dead") == 2
    store.dlq_requeue(d1)
    assert store.count_messages("r", "pending") == 1
    assert store.dlq_get(d1).status == "replayed"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not open"):
        store.dlq_requeue(d1)
    store.dlq_mark(d2, "discarded")
    assert store.count_messages("r", "discarded") == 1
    # "all" (what the CLI and the admin API pass) is every status, not a status named "all".
    assert [d.status for d in store.dlq_list("r", "all")] == ["replayed", "discarded"]
    assert store.dlq_count("r", "all") == 2 and store.dlq_count("r", None) == 2
    assert store.dlq_list("r") == []  # open ones only, by default
    store.close()


def _claim_all(url: str, worker: str) -> list[int]:
    store = Store(url, migrate=False)
    seen: list[int] = []
    while True:
        batch = store.claim("r", worker, 7, 60_000)
        if not batch:
            break
        seen.extend(m.id for m in batch)
        store.complete("T", [(m.id, m.idempotency_key, None) for m in batch])
    store.close()
    return seen


@pytest.mark.postgres
def test_three_worker_processes_never_claim_the_same_message(pg_url: str) -> None:
    """Separate processes on one PostgreSQL (FOR UPDATE SKIP LOCKED): every message exactly once."""
    setup = Store(pg_url)
    setup.enqueue("r", _msgs(900))
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_claim_all, [(pg_url, f"w{i}") for i in range(3)])
    all_ids = [i for ids in results for i in ids]
    assert len(all_ids) == 900 and len(set(all_ids)) == 900
    assert sum(1 for ids in results if ids) >= 2, "work was not shared"
    assert setup.count_messages("r", "delivered") == 900
    setup.close()


def test_confirmations_are_numbered_per_route_in_commit_order(store_url: str) -> None:
    store = Store(store_url)
    store.enqueue("r", _msgs(4))
    store.enqueue("other", _msgs(2))
    ids = [m.id for m in store.messages_for("r")]
    store.complete("t", [(ids[2], "k2", "ref2")], route="r")
    store.complete("t", [(ids[0], "k0", "ref0"), (ids[3], "k3", "ref3")])  # the route read from the row
    store.complete("t", [(ids[2], "k2", "ref2")], route="r")  # confirmed twice: keeps its number
    assert [(m.idempotency_key, m.confirmed_seq) for m in store.delivered_since("r", 0, 10)] == [
        ("k2", 1),
        ("k0", 2),
        ("k3", 3),
    ]
    # A message delivered after the reader's checkpoint passed it by id is still ahead of it by number.
    store.complete("t", [(ids[1], "k1", "ref1")], route="r")
    assert [m.idempotency_key for m in store.delivered_since("r", 3, 10)] == ["k1"]
    other = store.messages_for("other")
    store.complete("t", [(other[0].id, "k0", None)], route="other")
    assert [m.confirmed_seq for m in store.delivered_since("other", 0, 10)] == [1]
    store.close()


def test_the_confirmation_numbers_migration_keeps_checkpoints_and_offers_replayed_ones_again(
    store_url: str,
) -> None:
    """A store made before confirmation numbers: delivered messages keep their id as their number (a
    hub source's checkpoint is the last id it read); one delivered after a replay of its dead letter,
    possibly behind that checkpoint, is numbered after all others."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from lead2cash.store.store import MIGRATIONS

    old = Store(store_url, migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        for i, status in enumerate(["delivered", "delivered", "pending", "delivered"], start=1):
            conn.execute(
                text(
                    "INSERT INTO messages (id, route, idempotency_key, entity_type, payload, status, attempts,"
                    " next_attempt_at_ms, trace_id, created_at_ms, updated_at_ms)"
                    " VALUES (:id, 'r', :key, 'Order', '{}', :status, 0, 0, 't', 0, 0)"
                ),
                {"id": i, "key": f"k{i}", "status": status},
            )
        conn.execute(
            text(
                "INSERT INTO dead_letters (route, message_id, idempotency_key, stage, original_payload,"
                " error_class, error_message, attempts, status, created_at_ms, updated_at_ms)"
                " VALUES ('r', 2, 'k2', 'delivery', '{}', 'permanent', 'x', '[]', 'replayed', 0, 0)"
            )
        )
    old.close()
    store = Store(store_url)
    assert [(m.id, m.confirmed_seq) for m in store.delivered_since("r", 0, 10)] == [(1, 1), (4, 4), (2, 6)]
    assert [m.id for m in store.delivered_since("r", 4, 10)] == [2]  # a checkpoint at id 4 reads it
    store.complete("t", [(3, "k3", None)], route="r")
    assert store.delivered_since("r", 6, 10)[0].confirmed_seq == 7
    store.close()


def test_concurrent_completions_get_distinct_confirmation_numbers(store_url: str) -> None:
    """Workers completing at once (threads here; PostgreSQL runs their transactions concurrently): every
    confirmation gets its own number, none lost, none repeated."""
    from concurrent.futures import ThreadPoolExecutor

    store = Store(store_url)
    store.enqueue("r", _msgs(120))
    messages = store.messages_for("r")

    def complete(chunk: list[Any]) -> None:
        for m in chunk:
            store.complete("t", [(m.id, m.idempotency_key, None)], route="r")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(complete, [messages[i::4] for i in range(4)]))
    seqs = [m.confirmed_seq for m in store.delivered_since("r", 0, 500)]
    assert seqs == list(range(1, 121))
    store.close()
