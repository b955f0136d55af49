"""Orders -> Lago through the hub against the sandbox with injected faults: exactly one billing effect each."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import doubles
import pytest
from lago_connector_env import LagoTestEnv, make_orders, run_hub, write_config

from lead2cash.adapters.lago import prorated_cents
from lead2cash.canonical_model import Order
from lead2cash.demo.environment import order_of
from lead2cash.hub import Hub

CI_ORDERS = int(os.environ.get("LEAD2CASH_LAGO_ORDERS", "300"))


def _expected(orders: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per subscription external id its amount, per order its one-off total, per customer its invoices."""
    subs: dict[str, int] = {}
    one_off: dict[str, int] = {}
    per_customer: Counter[str] = Counter()
    for raw in orders:
        order = Order.model_validate(raw)
        for line in order.recurring_lines:
            subs[f"{order.id}:{line.id}"] = line.net_amount.to_minor_units()
        if order.one_time_lines:
            one_off[order.id] = sum(line.net_amount.to_minor_units() for line in order.one_time_lines)
            per_customer[order.customer.id] += 1
    return subs, one_off, dict(per_customer)


@pytest.mark.slow
def test_orders_bill_exactly_once_through_503_429_and_lost_invoice_responses(
    lago: LagoTestEnv, tmp_path: Path
) -> None:
    orders = make_orders(CI_ORDERS, prefix="ACC", seed=11)
    # BHD (3 decimals, like KWD) is not a currency Lago accepts: the KWD catalogue's prices, relabelled.
    bhd = json.loads(
        json.dumps(make_orders(3, prefix="BHD", seed=12, currencies=("KWD",)))
        .replace('"KWD"', '"BHD"')
        .replace('"KW"', '"BH"')
    )
    doubles.memory_system("mem", {}).records.extend([*orders, *bhd])
    flaky = {"error_rate": 0.3, "error_statuses": [503, 429], "retry_after_s": 0}
    lago.faults(
        {
            "*": flaky,
            "invoices.create": {**flaky, "commit_then_drop_rate": 0.3},
            "invoices.update": {**flaky, "commit_then_drop_rate": 0.1},
            "subscriptions.create": {**flaky, "commit_then_drop_rate": 0.1},
        }
    )
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    started = time.perf_counter()
    try:
        assert run_hub(hub, timeout=120)
    finally:
        injected = lago.admin.get("/faults").json()["injected"]
        lago.faults({})
    elapsed = time.perf_counter() - started
    print(f"\n{CI_ORDERS} orders billed in {elapsed:.1f}s with faults {injected}")
    assert injected.get("invoices.create:commit_then_drop", 0) > 0
    assert injected.get("invoices.create:503", 0) + injected.get("invoices.create:429", 0) > 0

    effects = lago.effects()
    subs, one_off, per_customer = _expected(orders)
    customers = {o["customer"]["id"] for o in orders}
    assert {k: v for k, v in effects["customer.create"].items() if k.startswith("ACC-")} == dict.fromkeys(
        customers, 1
    )
    assert {k: v for k, v in effects["subscription.create"].items() if k.startswith("ACC-")} == dict.fromkeys(
        subs, 1
    )
    assert {k: v for k, v in effects["invoice.create"].items() if k.startswith("ACC-")} == per_customer
    # The metadata is written by deliveries that reconcile (in doubt here, after a fault), never twice;
    # a first delivery the ledger vouches for leaves the invoice marked by its fees only.
    metadata = effects.get("invoice.metadata", {})
    for order_id in one_off:
        assert metadata.get(f"lead2cash_key=order:{order_id}:v1", 0) <= 1
        assert metadata.get(f"lead2cash_order={order_id}", 0) <= 1
    assert metadata, "no delivery reconciled: the faults were not felt"

    # Exact amounts: each invoice bills the order's one-time lines, each subscription its line's price.
    billed = {}
    for listed in lago.invoices(invoice_type="one_off"):
        invoice = lago.api.get(f"/invoices/{listed['lago_id']}").json()["invoice"]
        order_id = order_of(invoice)  # its metadata, or the order marker of its fees
        if order_id and order_id.startswith("ACC-"):
            assert order_id not in billed, f"order {order_id} invoiced twice"
            billed[order_id] = invoice["fees_amount_cents"]
    assert billed == one_off
    for external_id, cents in list(subs.items())[:40]:
        sub = lago.api.get(f"/subscriptions/{external_id}").json()["subscription"]
        assert sub["plan_amount_cents"] == cents

    # BHD is no Lago currency: a permanent failure with Lago's field errors, nothing half-billed.
    dead = hub.store.dlq_list("bill")
    assert {d.idempotency_key for d in dead} == {f"order:{o['id']}:v1" for o in bhd}
    for d in dead:
        assert d.error_class == "permanent"
        assert "currency" in d.error_message and "value_is_invalid" in d.error_message
    assert not any(k.startswith("BHD-") for k in effects.get("customer.create", {}))
    assert hub.store.count_messages("bill", "delivered") == CI_ORDERS
    hub.close()


def test_unsupported_currency_is_refused_before_any_call(lago: LagoTestEnv, tmp_path: Path) -> None:
    kwd = make_orders(2, prefix="UNS", seed=3, currencies=("KWD",))
    doubles.memory_system("mem", {}).records.extend(kwd)
    system = lago.system_config(unsupported_currencies=["kwd"])
    hub = Hub.from_files([write_config(tmp_path, system)], configure_logs=False)
    assert run_hub(hub, timeout=30)
    dead = hub.store.dlq_list("bill")
    assert len(dead) == 2
    assert all("currency KWD is not supported by this Lago" in d.error_message for d in dead)
    assert hub.systems["lago"].client.calls == 0  # type: ignore[attr-defined]
    hub.close()


def _deliver(hub: Hub) -> None:
    assert run_hub(hub, timeout=30)


def _subs(lago: LagoTestEnv, customer: str, status: str = "active") -> dict[str, dict[str, Any]]:
    data = lago.api.get(
        "/subscriptions", params={"external_customer_id": customer, "status[]": status, "per_page": 100}
    ).json()
    return {s["external_id"]: s for s in data["subscriptions"]}


def test_changes_after_billing_are_reconciled_or_dead_lettered(lago: LagoTestEnv, tmp_path: Path) -> None:
    """Quantity up replaces the subscription, a removed line terminates it, a changed one-time line or a
    reopened deal with an issued invoice is dead-lettered with the reason (a credit note is needed)."""
    system = doubles.memory_system("mem", {})
    base = {
        "id": "CHG-1",
        "customer": {"id": "CHG-ACC", "name": "Change Corp", "billing_address": {"country": "DE"}},
        "currency": "EUR",
        "order_date": "2026-01-01",
        "status": "won",
        "lines": [
            {"id": "CHG-1-a", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
             "billing_period": "monthly", "quantity": "1", "unit_price": {"amount": "459.00", "currency": "EUR"}},
            {"id": "CHG-1-b", "product_code": "SEAT-ADD", "product_name": "Seats", "kind": "recurring",
             "billing_period": "monthly", "quantity": "10", "unit_price": {"amount": "27.50", "currency": "EUR"}},
        ],
    }  # fmt: skip
    no_invoice = {**base}
    path = write_config(tmp_path, lago.system_config())
    hub = Hub.from_files([path], configure_logs=False)
    system.records.append(no_invoice)
    _deliver(hub)
    assert set(_subs(lago, "CHG-ACC")) == {"CHG-1:CHG-1-a", "CHG-1:CHG-1-b"}
    assert _subs(lago, "CHG-ACC")["CHG-1:CHG-1-b"]["plan_amount_cents"] == 27500

    # v2: 12 seats instead of 10 -> the seat subscription is replaced at the new price.
    v2 = {**base, "version": 2, "lines": [base["lines"][0], {**base["lines"][1], "quantity": "12"}]}
    system.records.append(v2)
    _deliver(hub)
    assert set(_subs(lago, "CHG-ACC")) == {"CHG-1:CHG-1-a"}
    old = _subs(lago, "CHG-ACC", "terminated")["CHG-1:CHG-1-b"]
    # Lago bills the old one through its termination day; the replacement starts the day after.
    [(replacement_id, replacement)] = _subs(lago, "CHG-ACC", "pending").items()
    assert replacement_id == "CHG-1:CHG-1-b@v2" and replacement["plan_amount_cents"] == 33000
    next_day = date.fromisoformat(old["terminated_at"][:10]) + timedelta(days=1)
    assert replacement["subscription_at"] == f"{next_day.isoformat()}T00:00:00Z"

    # v3: the seat line is removed -> its subscription is terminated; a one-time line is added -> invoiced.
    onboarding = {"id": "CHG-1-c", "product_code": "ONB-STD", "product_name": "Onboarding",
                  "kind": "one_time", "quantity": "1", "unit_price": {"amount": "2300.00", "currency": "EUR"}}  # fmt: skip
    v3 = {**base, "version": 3, "lines": [base["lines"][0], onboarding]}
    system.records.append(v3)
    _deliver(hub)
    assert set(_subs(lago, "CHG-ACC")) == {"CHG-1:CHG-1-a"}
    [invoice] = lago.invoices(external_customer_id="CHG-ACC", invoice_type="one_off")
    assert invoice["fees_amount_cents"] == 230000
    assert hub.store.dlq_count("bill") == 0

    # v4: the one-time line's quantity changes after its invoice was finalized -> dead letter, no guess.
    v4 = {**base, "version": 4, "lines": [base["lines"][0], {**onboarding, "quantity": "2"}]}
    system.records.append(v4)
    _deliver(hub)
    [dead] = hub.store.dlq_list("bill")
    assert dead.idempotency_key == "order:CHG-1:v4"
    assert "credit note" in dead.error_message and invoice["number"] in dead.error_message
    assert len(lago.invoices(external_customer_id="CHG-ACC", invoice_type="one_off")) == 1

    # v5: the deal is reopened -> its subscriptions end; the issued invoice is a "credit note needed"
    # dead letter (on_reversal_invoice: dead_letter).
    v5 = {**v3, "version": 5, "status": "open"}
    system.records.append(v5)
    _deliver(hub)
    reopened = [d for d in hub.store.dlq_list("bill") if d.idempotency_key == "order:CHG-1:v5"]
    assert len(reopened) == 1 and "is open" in reopened[0].error_message
    assert (
        "credit note is needed" in reopened[0].error_message
        and invoice["number"] in reopened[0].error_message
    )
    assert _subs(lago, "CHG-ACC") == {} and _subs(lago, "CHG-ACC", "pending") == {}
    hub.close()


def test_reopened_order_without_invoice_terminates_its_subscriptions(
    lago: LagoTestEnv, tmp_path: Path
) -> None:
    system = doubles.memory_system("mem", {})
    [order] = make_orders(1, prefix="REO", seed=4)
    order["lines"] = [
        {"id": "REO-a", "product_code": "SUPP-PREM", "product_name": "Support", "kind": "recurring",
         "billing_period": "quarterly", "quantity": "1", "unit_price": {"amount": "1500.00", "currency": "USD"},
         "service_start": "2026-03-01"},
    ]  # fmt: skip
    order["currency"] = "USD"
    order["customer"]["currency"] = "USD"
    order["customer"]["billing_address"]["country"] = "US"
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    system.records.append(order)
    _deliver(hub)
    customer = order["customer"]["id"]
    pending = _subs(lago, customer, "pending")
    assert set(pending) == {f"{order['id']}:REO-a"}  # starts on its service date, in the future
    assert pending[f"{order['id']}:REO-a"]["subscription_at"] == "2026-03-01T00:00:00Z"
    system.records.append({**order, "version": 2, "status": "lost"})
    _deliver(hub)
    assert _subs(lago, customer, "pending") == {} and _subs(lago, customer) == {}
    assert hub.store.dlq_count("bill") == 0
    hub.close()


def test_per_plan_grouping_sums_lines_of_one_plan(lago: LagoTestEnv, tmp_path: Path) -> None:
    system = doubles.memory_system("mem", {})
    line = {"product_code": "SEAT-ADD", "product_name": "Seats", "kind": "recurring", "billing_period": "monthly",
            "unit_price": {"amount": "23.90", "currency": "GBP"}}  # fmt: skip
    order = {
        "id": "GRP-1",
        "customer": {"id": "GRP-ACC", "name": "Group Ltd", "billing_address": {"country": "GB"}},
        "currency": "GBP",
        "order_date": "2026-01-01",
        "lines": [{**line, "id": "GRP-1-a", "quantity": "3"}, {**line, "id": "GRP-1-b", "quantity": "2",
                  "discount_percent": "10"}],
    }  # fmt: skip
    system.records.append(order)
    path = write_config(tmp_path, lago.system_config(), target_options={"subscriptions": "per_plan"})
    hub = Hub.from_files([path], configure_logs=False)
    _deliver(hub)
    subs = _subs(lago, "GRP-ACC")
    assert list(subs) == ["GRP-1:SEAT-ADD__GBP"]
    assert subs["GRP-1:SEAT-ADD__GBP"]["plan_amount_cents"] == 7170 + 4302  # 3 x 23.90 + 2 x 23.90 less 10 %
    assert Decimal(subs["GRP-1:SEAT-ADD__GBP"]["plan_amount_cents"]) == Decimal("11472")
    hub.close()


def test_a_new_customers_first_order_costs_three_round_trips(lago: LagoTestEnv, tmp_path: Path) -> None:
    """Customer upsert and the catalogue check go out together, then the subscriptions, then the one-off
    invoice (only once every subscription stands: a subscription refused at its call leaves no invoice that
    makes the deal look billed): three waves of calls on the deal's path, timed from the connector's own
    calls with 150 ms added to each answer. Before them, once per process, the customer census (the highest
    ``sequential_id``: the listing's first and last page); the customer Lago creates above it is new, so
    Lago holds nothing of its orders and the reads (and the invoice's metadata) are not needed."""
    orders = [
        o
        for o in make_orders(12, prefix="WAVE", seed=31)
        if any(line["kind"] == "recurring" for line in o["lines"])
        and any(line["kind"] == "one_time" for line in o["lines"])
    ][:1]
    assert orders, "the catalogue gave no order with both kinds of line"
    doubles.memory_system("mem", {}).records.extend(orders)
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    client = hub.systems["lago"].client  # type: ignore[attr-defined]
    calls: list[tuple[str, float, float]] = []
    original = client.request

    async def timed(method: str, path: str, operation: str, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await original(method, path, operation, *args, **kwargs)
        finally:
            calls.append((operation, started, time.monotonic()))

    client.request = timed
    lago.faults({"*": {"latency_ms": 150}})
    try:
        assert run_hub(hub, timeout=30)
    finally:
        lago.faults({})
    hub.close()
    # A wave is the calls that start before any call of the wave ends.
    calls.sort(key=lambda c: c[1])
    waves: list[list[str]] = []
    wave_end = float("-inf")
    for operation, started, ended in calls:
        if started >= wave_end:
            waves.append([])
            wave_end = ended
        else:
            wave_end = min(wave_end, ended)
        waves[-1].append(operation)
    assert [sorted(set(w)) for w in waves] == [
        ["customers.list"],  # once per process
        ["customers.list"],
        # The catalogue check (plans and add-ons exist) rides with the first wave, once per code.
        ["add_ons.get", "customers.create", "plans.get"],
        ["subscriptions.create"],
        ["invoices.create"],
    ], waves


@pytest.mark.parametrize("reversal", ["lost", "emptied"])
def test_reversal_policies_period_end_and_credit_note(
    lago: LagoTestEnv, tmp_path: Path, reversal: str
) -> None:
    """A billed deal lost (or still won with every line removed) with ``on_reversal_subscriptions:
    period_end`` and ``on_reversal_invoice: credit_note``: its subscription ends with its current period,
    its one-off invoice gets one credit note for its whole amount (not two, however often the reversed deal
    is delivered), and no dead letter."""
    system = doubles.memory_system("mem", {})
    acc, oid = ("REV-ACC", "REV-1") if reversal == "lost" else ("REV-ACC-E", "REV-2")
    order = {
        "id": oid,
        "customer": {"id": acc, "name": "Reversal AG", "billing_address": {"country": "DE"}},
        "currency": "EUR",
        "order_date": "2026-01-01",
        "status": "won",
        "lines": [
            {"id": "REV-1-a", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
             "billing_period": "monthly", "quantity": "1", "unit_price": {"amount": "459.00", "currency": "EUR"}},
            {"id": "REV-1-b", "product_code": "ONB-STD", "product_name": "Onboarding", "kind": "one_time",
             "quantity": "1", "unit_price": {"amount": "2300.00", "currency": "EUR"}},
        ],
    }  # fmt: skip
    options = {"on_reversal_subscriptions": "period_end", "on_reversal_invoice": "credit_note"}
    hub = Hub.from_files(
        [write_config(tmp_path, lago.system_config(), target_options=options)], configure_logs=False
    )
    system.records.append(order)
    _deliver(hub)
    [invoice] = lago.invoices(external_customer_id=acc, invoice_type="one_off")
    change: dict[str, Any] = {"status": "lost"} if reversal == "lost" else {"lines": []}
    system.records.append({**order, "version": 2, **change})
    system.records.append({**order, "version": 3, **change, "name": "Lost for good"})
    _deliver(hub)
    assert hub.store.dlq_count("bill") == 0
    [sub] = _subs(lago, acc).values()
    assert sub["ending_at"] == sub["current_billing_period_ending_at"] is not None
    notes = [
        n
        for n in lago.api.get("/credit_notes", params={"external_customer_id": acc}).json()["credit_notes"]
        if n["lago_invoice_id"] == invoice["lago_id"]
    ]
    assert len(notes) == 1 and notes[0]["reason"] == "order_cancellation"
    assert notes[0]["sub_total_excluding_taxes_amount_cents"] == invoice["fees_amount_cents"] == 230000
    assert lago.effects()["credit_note.create"][invoice["lago_id"]] == 1
    hub.close()


def test_an_unknown_bill_order_option_is_a_config_error(lago: LagoTestEnv, tmp_path: Path) -> None:
    from lead2cash.config.errors import ConfigError

    path = write_config(tmp_path, lago.system_config(), target_options={"on_reversal": "credit_note"})
    with pytest.raises(ConfigError, match="on_reversal"):
        Hub.from_files([path], configure_logs=False)


def test_a_deal_won_again_is_billed_again_from_the_day_it_was_won_again(
    lago: LagoTestEnv, tmp_path: Path
) -> None:
    """Won, lost (ended that day), won again five days later: a replacement from the day of the new win
    (the order's status_since), so the days the deal was lost are not billed. With period_end, a deal won
    again before its subscription ended keeps it: ending_at is cleared."""
    system = doubles.memory_system("mem", {})
    today = date.fromisoformat(lago.admin.get("/lago/clock").json()["today"])
    line = {"id": "AGN-1-a", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
            "billing_period": "monthly", "quantity": "1", "unit_price": {"amount": "459.00", "currency": "EUR"},
            "service_start": today.isoformat()}  # fmt: skip
    order = {
        "id": "AGN-1",
        "customer": {"id": "AGN-ACC", "name": "Again AG", "billing_address": {"country": "DE"}},
        "currency": "EUR",
        "order_date": today.isoformat(),
        "status": "won",
        "lines": [line],
    }
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    system.records.append(order)
    _deliver(hub)
    system.records.append({**order, "version": 2, "status": "lost"})
    _deliver(hub)
    assert _subs(lago, "AGN-ACC") == {}
    rewon = today + timedelta(days=5)
    system.records.append({**order, "version": 3, "status_since": f"{rewon.isoformat()}T10:00:00Z"})
    _deliver(hub)
    [(external_id, sub)] = _subs(lago, "AGN-ACC", "pending").items()
    assert external_id == "AGN-1:AGN-1-a@v3" and sub["subscription_at"] == f"{rewon.isoformat()}T00:00:00Z"
    assert hub.store.dlq_count("bill") == 0
    hub.close()

    # period_end: lost, then won again before the period ended -> the subscription simply carries on.
    system.records.clear()
    order = {**order, "id": "AGN-2", "customer": {**order["customer"], "id": "AGN-ACC2"},
             "lines": [{**line, "id": "AGN-2-a"}]}  # fmt: skip
    (tmp_path / "b").mkdir()  # a hub of its own: the memory source's checkpoint is in the state file
    path = write_config(
        tmp_path / "b", lago.system_config(), target_options={"on_reversal_subscriptions": "period_end"}
    )
    hub = Hub.from_files([path], configure_logs=False)
    system.records.append(order)
    _deliver(hub)
    system.records.append({**order, "version": 2, "status": "lost"})
    _deliver(hub)
    assert _subs(lago, "AGN-ACC2")["AGN-2:AGN-2-a"]["ending_at"] is not None
    system.records.append({**order, "version": 3, "status_since": f"{rewon.isoformat()}T10:00:00Z"})
    _deliver(hub)
    assert _subs(lago, "AGN-ACC2")["AGN-2:AGN-2-a"]["ending_at"] is None
    assert hub.store.dlq_count("bill") == 0
    hub.close()


@pytest.mark.parametrize("policy", ["prorate", "dead_letter"])
def test_a_backdated_amendment_follows_its_declared_policy(
    lago: LagoTestEnv, tmp_path: Path, policy: str
) -> None:
    """A billed line repriced from 459 to 559 with its service date moved to six days ago (the amendment is
    effective then, but those days were already billed at 459): the new price bills from tomorrow either
    way (billed days are never billed again). ``prorate`` (the default) leaves the billed days as they are;
    ``dead_letter`` also dead-letters the delivery with the difference for those days, to the minor unit,
    for finance to credit or charge. A repricing that leaves the service date where it was (the line's
    first day) is no backdated amendment."""
    system = doubles.memory_system("mem", {})
    today = date.fromisoformat(lago.admin.get("/lago/clock").json()["today"])
    acc = f"BKD-{policy}"
    effective = today - timedelta(days=6)

    def order(oid: str, amount: str, start: date, version: int) -> dict[str, Any]:
        line = {"id": f"{oid}-a", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
                "billing_period": "monthly", "quantity": "1", "unit_price": {"amount": amount, "currency": "EUR"},
                "service_start": start.isoformat()}  # fmt: skip
        return {"id": oid, "version": version, "currency": "EUR", "order_date": start.isoformat(),
                "status": "won", "lines": [line],
                "customer": {"id": acc, "name": "Backdated AG", "billing_address": {"country": "DE"}}}  # fmt: skip

    moved, kept = f"BKD-{policy}-1", f"BKD-{policy}-2"
    first = today - timedelta(days=20)
    path = write_config(tmp_path, lago.system_config(), target_options={"on_backdated_amendment": policy})
    hub = Hub.from_files([path], configure_logs=False)
    system.records.extend([order(moved, "459.00", first, 1), order(kept, "459.00", first, 1)])
    _deliver(hub)
    system.records.extend([order(moved, "559.00", effective, 2), order(kept, "559.00", first, 2)])
    _deliver(hub)
    subs = _subs(lago, acc, "pending")
    tomorrow = f"{(today + timedelta(days=1)).isoformat()}T00:00:00Z"
    assert subs[f"{moved}:{moved}-a@v2"]["subscription_at"] == tomorrow
    assert subs[f"{kept}:{kept}-a@v2"]["subscription_at"] == tomorrow
    dead = {d.idempotency_key.split(":")[1]: d.error_message or "" for d in hub.store.dlq_list("bill")}
    hub.close()
    if policy == "prorate":
        assert dead == {}
        return
    assert set(dead) == {moved}, dead

    def _first_of_next_month(day: date) -> date:
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)

    difference, day = 0, effective
    while day <= today:
        piece = min(_first_of_next_month(day) - timedelta(days=1), today)
        difference += prorated_cents(55900, day, piece) - prorated_cents(45900, day, piece)
        day = piece + timedelta(days=1)
    assert difference > 0
    reason = dead[moved]
    assert "backdated amendment needs review" in reason
    assert f"effective {effective}, billed through {today}" in reason
    assert f"difference EUR {Decimal(difference) / 100:.2f}" in reason, reason
