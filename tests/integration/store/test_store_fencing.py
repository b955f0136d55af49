"""Fencing on both backends: every ledger step and outcome is written only under the token a message was
claimed with, so a worker that stalled past its lease writes nothing once another worker claimed it."""

from __future__ import annotations

from lead2cash.store import EffectState, NewMessage, Store


def _store(url: str, ticks: list[int]) -> Store:
    store = Store(url, clock=lambda: ticks[0])
    store.enqueue("r", [NewMessage(f"k{i}", "Order", "{}", f"t{i}") for i in range(2)])
    return store


def test_each_claim_raises_the_token_and_a_stale_completion_writes_nothing(store_url: str) -> None:
    ticks = [1_000_000]
    store = _store(store_url, ticks)
    [a1, _] = store.claim("r", "A", 2, lease_ms=1_000)
    before, held = store.effects_start("T", "r", [a1])
    assert before == {} and held == {a1.id}
    ticks[0] += 5_000  # A stalls past its lease; B takes the message over
    [b1, _] = store.claim("r", "B", 2, lease_ms=1_000)
    assert b1.id == a1.id and b1.lease_token == a1.lease_token + 1

    # A resumes: its completion, retry and dead letter are all refused.
    assert (
        store.complete("T", [(a1.id, a1.idempotency_key, "A-ref")], tokens={a1.id: a1.lease_token}) == set()
    )
    assert not store.retry_later(a1.id, 1, 0, "late", token=a1.lease_token)
    assert store.dead_letter_message(a1, "permanent", "late", []) is None
    assert not store.lease_check(a1.id, a1.lease_token, "A", 1_000)
    assert store.effects_start("T", "r", [a1]) == ({}, set())
    effect = store.effect_get("T", a1.idempotency_key)
    assert effect is not None and effect.state is EffectState.SENT  # B looks it up before sending

    # B, the holder, writes; the message is delivered once, with B's reference.
    before, held = store.effects_start("T", "r", [b1])
    assert before[b1.idempotency_key].state is EffectState.SENT and held == {b1.id}
    assert store.lease_check(b1.id, b1.lease_token, "B", 1_000)
    assert store.complete("T", [(b1.id, b1.idempotency_key, "B-ref")], tokens={b1.id: b1.lease_token}) == {
        b1.id
    }
    delivered = store.get_message(b1.id)
    assert delivered is not None and delivered.status == "delivered" and delivered.target_ref == "B-ref"
    assert store.dlq_count("r") == 0
    store.close()


def test_a_lease_check_extends_the_lease_of_its_holder(store_url: str) -> None:
    ticks = [1_000_000]
    store = _store(store_url, ticks)
    [m, _] = store.claim("r", "A", 2, lease_ms=1_000)
    ticks[0] += 900
    assert store.lease_check(m.id, m.lease_token, "A", 1_000)
    ticks[0] += 900  # past the first lease, within the extended one: nobody may claim it
    assert m.id not in [x.id for x in store.claim("r", "B", 2, lease_ms=1_000)]
    # Due again for another worker only when the lease runs out, not before (no spinning on it).
    assert store.next_due_ms("r") == 1_000_000 + 900 + 1_000
    store.close()


def test_one_worker_at_a_time_holds_a_source_and_another_takes_over_when_it_expires(store_url: str) -> None:
    ticks = [1_000_000]
    store = Store(store_url, clock=lambda: ticks[0])
    first = store.source_lease("r:src", "A", 3_000)
    assert first is not None
    assert store.source_lease("r:src", "B", 3_000) is None
    ticks[0] += 2_000
    assert store.source_lease("r:src", "A", 3_000) == first  # the holder keeps it, same token
    ticks[0] += 2_000
    assert store.source_lease("r:src", "B", 3_000) is None  # A renewed 2 s ago
    ticks[0] += 1_500  # A missed its renewals (dead or stalled): B takes over with a higher token
    taken = store.source_lease("r:src", "B", 3_000)
    assert taken is not None and taken > first
    assert store.source_lease("r:src", "A", 3_000) is None
    assert store.source_lease_holders() == {"r:src": "B"}
    store.source_lease_release("B")  # a stopping hub lets the next one poll at once
    assert store.source_lease("r:src", "A", 3_000) is not None
    store.close()


def test_a_crashed_runs_source_leases_are_released_but_a_live_workers_are_kept(store_url: str) -> None:
    ticks = [1_000_000]
    store = Store(store_url, clock=lambda: ticks[0])
    assert store.source_lease("r:src", "dead", 60_000) is not None
    assert store.source_lease("q:src", "live", 60_000) is not None
    assert store.source_lease("r:src", "restarted", 60_000) is None  # a minute to wait without release
    assert store.source_leases_release_orphans({"live", "restarted"}) == 1
    assert store.source_lease("r:src", "restarted", 60_000) is not None
    assert store.source_lease("q:src", "restarted", 60_000) is None
    store.close()


def test_a_batch_read_under_a_lost_source_lease_is_not_written(store_url: str) -> None:
    ticks = [1_000_000]
    store = Store(store_url, clock=lambda: ticks[0])
    a = store.source_lease("r:src", "A", 3_000)
    assert a is not None
    ticks[0] += 5_000  # A stalls mid-read; B takes the source over and passes the newer state on
    b = store.source_lease("r:src", "B", 3_000)
    assert b is not None
    newer = [NewMessage("order:1:v2", "Order", "{}", "t2")]
    assert store.enqueue("r", newer, checkpoint=("r:src", "2"), source_fence=("r:src", "B", b))
    # A resumes with what it read before: nothing of it is written, not even its messages.
    older = [NewMessage("order:1:v1", "Order", "{}", "t1")]
    assert not store.enqueue("r", older, checkpoint=("r:src", "1"), source_fence=("r:src", "A", a))
    assert [m.idempotency_key for m in store.messages_for("r")] == ["order:1:v2"]
    assert store.checkpoint_get("r:src") == "2"
    store.close()
