"""A plan or add-on Lago does not know: the dead letter names the code, so the operator knows what to add."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import doubles
from lago_connector_env import ONE_TIME, RECURRING, LagoTestEnv, make_orders, run_hub, write_config
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.hub import Hub


def test_plan_and_add_on_not_found_name_the_code(lago: LagoTestEnv, tmp_path: Path) -> None:
    orders = make_orders(6, prefix="NF", seed=11, currencies=("USD",))
    recurring = next(o for o in orders if any(line["kind"] == "recurring" for line in o["lines"]))
    one_time = next(
        o for o in orders if o is not recurring and any(line["kind"] == "one_time" for line in o["lines"])
    )
    for line in recurring["lines"]:
        if line["kind"] == "recurring":
            line["product_code"] = "GHOST-PLAN"
    for line in one_time["lines"]:
        if line["kind"] == "one_time":
            line["product_code"] = "GHOST-ADDON"
    doubles.memory_system("mem", {}).records.extend([recurring, one_time])
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    try:
        assert run_hub(hub, timeout=30)
        reasons = {d.idempotency_key.split(":")[1]: d.error_message for d in hub.store.dlq_list("bill")}
    finally:
        hub.close()
    assert "plan_not_found" in reasons[recurring["id"]], reasons
    assert "plan_code=GHOST-PLAN__USD" in reasons[recurring["id"]], reasons
    assert "add_on_not_found" in reasons[one_time["id"]], reasons
    assert "add_on_code=GHOST-ADDON" in reasons[one_time["id"]], reasons


def _order(prefix: str, recurring_code: str) -> dict[str, Any]:
    """A USD order of a new customer: one recurring line (product ``recurring_code``) and one one-time
    line of the catalogue."""
    [order] = make_orders(1, prefix=prefix, seed=3, currencies=("USD",))
    plan, addon = RECURRING[0], ONE_TIME[0]
    order["lines"] = [
        {"id": f"{prefix}-R", "product_code": recurring_code, "product_name": plan.name, "kind": "recurring",
         "billing_period": plan.interval, "quantity": "1",
         "unit_price": {"amount": plan.prices["USD"], "currency": "USD"}, "service_start": "2026-01-01"},
        {"id": f"{prefix}-O", "product_code": addon.code, "product_name": addon.name, "kind": "one_time",
         "quantity": "1", "unit_price": {"amount": addon.prices["USD"], "currency": "USD"}},
    ]  # fmt: skip
    return order


def test_an_unmapped_recurring_line_bills_nothing_of_the_order(lago: LagoTestEnv, tmp_path: Path) -> None:
    """The plan table has no entry for the recurring line's product (and no ``_default``): the order is
    refused whole before its first effect: no customer, no subscription, no one-off invoice."""
    order = _order(f"UNM{uuid.uuid4().hex[:5]}", "UNMAPPED-PLAN")
    doubles.memory_system("mem", {}).records.append(order)
    path = write_config(tmp_path, lago.system_config())
    table = ", ".join(f'{p.code}: "{{product_code}}__{{currency}}"' for p in RECURRING)
    path.write_text(path.read_text().replace('_default: "{product_code}__{currency}"', table))
    before = lago.effects()
    hub = Hub.from_files([path], configure_logs=False)
    try:
        assert run_hub(hub, timeout=30)
        [dead] = hub.store.dlq_list("bill")
    finally:
        hub.close()
    assert "no Lago plan mapped for product 'UNMAPPED-PLAN'" in (dead.error_message or "")
    assert lago.effects() == before  # not one write reached Lago
    assert lago.invoices(external_customer_id=order["customer"]["id"]) == []


def test_a_subscription_refused_at_its_call_leaves_no_invoice_and_names_the_partial_state(
    lago: LagoTestEnv, tmp_path: Path
) -> None:
    """The catalogue check passes, then Lago refuses the subscription itself (422 at the call): the
    one-off invoice is not issued (subscriptions go first), and the dead letter says what the order
    holds in Lago. Replayed once Lago accepts it, the order is billed whole, the invoice once."""
    order = _order(f"REF{uuid.uuid4().hex[:5]}", RECURRING[0].code)
    customer = order["customer"]["id"]
    doubles.memory_system("mem", {}).records.append(order)
    path = write_config(tmp_path, lago.system_config())
    lago.faults({"subscriptions.create": {"error_rate": 1.0, "error_statuses": [422]}})
    hub = Hub.from_files([path], configure_logs=False)
    try:
        assert run_hub(hub, timeout=30)
        [dead] = hub.store.dlq_list("bill")
    finally:
        hub.close()
        lago.faults({})
    reason = dead.error_message or ""
    assert "partly billed in Lago: subscriptions made none, terminated none" in reason, reason
    assert "its one-off invoice: not issued" in reason, reason
    assert lago.invoices(external_customer_id=customer) == []

    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), str(dead.id)])
    assert replayed.exit_code == 0, replayed.output
    [invoice] = lago.invoices(external_customer_id=customer)
    assert invoice["invoice_type"] == "one_off"
    subs = lago.api.get("/subscriptions", params={"external_customer_id": customer}).json()["subscriptions"]
    assert [s["external_id"] for s in subs] == [f"{order['id']}:{order['lines'][0]['id']}"]
