"""A cutover after a rollback re-creates the migrated subscriptions as ``<contract>~N`` through the effect
ledger: a crash (keys left ``sent``, before or after Lago applied the call) and a rerun never create a
subscription twice, even one that has ended by itself since; contracts that ended by the cutover's day are
not re-created, and their last period is left to the legacy system unless Lago billed it."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from pathlib import Path

import httpx

from lead2cash.connectors.lago import LagoClient
from lead2cash.migration.cutover import recreate, recreation_plan
from lead2cash.migration.ids import contract_of, cutover_of, subscription_id
from lead2cash.migration.load import CENSUS_BATCH, TARGET, _route, status
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.server import SandboxCluster
from lead2cash.store.schema import effects
from lead2cash.store.store import EffectState, Store


def test_ids_map_back_to_contracts() -> None:
    assert subscription_id("LC1", 1) == "LC1" and subscription_id("LC1", 3) == "LC1~3"
    assert contract_of("LC1~3") == "LC1" and contract_of("LC1") == "LC1" and contract_of("A~B") == "A~B"
    assert cutover_of("LC1~3") == 3 and cutover_of("LC1") == 1


def _old(ext: str, ending: str | None = None, cents: int = 1000) -> dict[str, object]:
    return {
        "external_id": ext,
        "external_customer_id": "C1",
        "plan_code": "PLAT-BASE__EUR",
        "billing_time": "anniversary",
        "subscription_at": "2025-06-10T00:00:00Z",
        "plan_amount_cents": cents,
        "plan_amount_currency": "EUR",
        "ending_at": ending,
    }


def test_plan_leaves_the_contracts_ended_by_the_cutover_to_the_legacy_system() -> None:
    old = {
        "K1~2": _old("K1~2", cents=1234),  # open; the price corrected in Lago is kept
        "K2": _old("K2", "2026-04-10T23:59:59Z"),  # ended while Lago billed it (before the rollback)
        "K3": _old("K3", "2026-04-25T23:59:59Z"),  # ended after the rollback
        "K4": _old("K4", "2026-04-27T23:59:59Z"),  # ended after the rollback
        "K5": _old("K5", "2026-06-30T23:59:59Z"),  # ends after the cutover
        "K7": _old("K7", "2026-05-01T23:59:59Z"),  # ends on the cutover's day: Lago refuses that ending_at
        "K8": _old("K8", "2026-05-02T23:59:59Z"),  # ends the day after: Lago takes it
        "K9": _old("K9", "2026-01-20T23:59:59Z"),  # ended long before the first cutover (1 April)
    }
    billed_thru = {"K1": dt.date(2026, 4, 10), "K2": dt.date(2026, 4, 11), "K3": dt.date(2026, 4, 5)}
    bodies, skipped, left = recreation_plan(
        old,
        ["K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8", "K9"],
        {"K1": "K1~2"},
        3,
        dt.date(2026, 5, 1),
        billed_thru,
        dt.date(2026, 4, 1),
    )
    assert [b["external_id"] for b in bodies] == ["K1~3", "K5~3", "K8~3"]
    assert bodies[0]["plan_overrides"] == {"amount_cents": 1234, "amount_currency": "EUR"}
    assert "ending_at" not in bodies[0] and bodies[1]["ending_at"] == "2026-06-30T23:59:59Z"
    assert skipped == {"ended": 5, "absent": 1}
    # Lago billed K2's last period (to its end); the others' last periods are the legacy system's, K9's
    # billed by it before the first cutover.
    assert left == {"K3": dt.date(2026, 4, 26), "K4": dt.date(2026, 4, 28), "K7": dt.date(2026, 5, 2)}


def test_rerun_after_a_crash_creates_no_second_subscription(tmp_path: Path) -> None:
    lago = LagoSandbox(seed=3, seed_size=0)
    cluster = SandboxCluster(systems=[lago], state_dir=Path(tempfile.mkdtemp()))
    cluster.start_in_thread()
    store = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        base = cluster.base_url("lago")
        http = httpx.Client(verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)))
        http.post(base + "/__sandbox/lago/clock", json={"to": "2026-05-01"}).raise_for_status()
        bodies = [
            {
                "external_customer_id": "C1",
                "external_id": subscription_id(k, 2),
                "plan_code": "PLAT-BASE__EUR",
                "billing_time": "anniversary",
                "subscription_at": "2025-06-10T00:00:00Z",
                "plan_overrides": {"amount_cents": 1000, "amount_currency": "EUR"},
                **({"ending_at": "2026-05-03T23:59:59Z"} if k == "B" else {}),
            }
            for k in ("A", "B", "C")
        ]

        async def run(items: list[dict[str, object]]) -> object:
            client = LagoClient(base + "/api/v1", lago.api_key, ca_bundle=str(cluster.ca_bundle))
            try:
                await client.upsert_customer({"external_id": "C1", "name": "C1", "currency": "EUR"})
                return await recreate(client, store, "legacy", items, 2, rate=500)
            finally:
                await client.aclose()

        # C's key was marked sent and the process died before the call reached Lago.
        store.effects_reserve(TARGET, _route("legacy"), [("subscription:C~2", -2)])
        store.effects_mark(TARGET, ["subscription:C~2"], EffectState.SENT)
        first = asyncio.run(run(bodies[:2]))
        assert first.created == 2  # type: ignore[attr-defined]
        # A and B were created, then the process died before confirming them; B has ended by itself since.
        with store.engine.begin() as conn:  # effects_mark never downgrades a confirmed key
            conn.execute(
                effects.update()
                .where(effects.c.idempotency_key.in_(["subscription:A~2", "subscription:B~2"]))
                .values(state=EffectState.SENT.value)
            )
        http.post(base + "/__sandbox/lago/clock", json={"to": "2026-05-05"}).raise_for_status()
        assert lago.store.subscriptions["B~2"].status == "terminated"
        again = asyncio.run(run(bodies))
        assert (again.created, again.found_by_lookup, again.failures) == (1, 2, [])  # type: ignore[attr-defined]
        third = asyncio.run(run(bodies))
        assert third.already_done == 3 and third.created == 0  # type: ignore[attr-defined]
        for ext in ("A~2", "B~2", "C~2"):
            assert lago.store.effects.count("subscription.create", ext) == 1, ext
    finally:
        store.close()
        cluster.stop()


def test_status_shows_cutover_one_and_hides_the_census(tmp_path: Path) -> None:
    """Cutover N's subscriptions are batch -N in the ledger; the load's census of Lago's own customers
    shares the ledger and is no batch at all, so ``migrate status`` must not mistake the one for the other."""
    store = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        route = _route("legacy")
        store.effects_reserve(
            TARGET, route, [("census:legacy", CENSUS_BATCH), ("existing:legacy:C9", CENSUS_BATCH)]
        )
        store.effects_reserve(TARGET, route, [("customer:C1", 0), ("subscription:A~1", -1)])
        store.effects_mark(TARGET, ["subscription:A~1"], EffectState.CONFIRMED)
        assert status(store, "legacy") == [
            {"batch": -1, "reserved": 0, "sent": 0, "confirmed": 1},
            {"batch": 0, "reserved": 1, "sent": 0, "confirmed": 0},
        ]
    finally:
        store.close()
