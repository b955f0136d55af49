"""A deal lost on the last day of its subscription's billing period, with ``on_reversal_subscriptions:
period_end``: Lago refuses an ``ending_at`` that is not after its today (422 ``invalid_date``, as
lago-api's Subscriptions::ValidateService), so the subscription is terminated that day instead, which bills
the same days; no dead letter. A module of its own: it moves its sandbox's clock, which only moves forward."""

from __future__ import annotations

import calendar
from datetime import date
from pathlib import Path

import doubles
from lago_connector_env import LagoTestEnv, run_hub, write_config

from lead2cash.hub import Hub


def test_a_deal_lost_on_the_last_day_of_its_period_ends_that_day(lago: LagoTestEnv, tmp_path: Path) -> None:
    system = doubles.memory_system("mem", {})
    today = date.fromisoformat(lago.admin.get("/lago/clock").json()["today"])
    line = {"id": "LST-1-a", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
            "billing_period": "monthly", "quantity": "1", "unit_price": {"amount": "459.00", "currency": "EUR"},
            "service_start": today.isoformat()}  # fmt: skip
    order = {
        "id": "LST-1",
        "customer": {"id": "LST-ACC", "name": "Last Day AG", "billing_address": {"country": "DE"}},
        "currency": "EUR",
        "order_date": today.isoformat(),
        "status": "won",
        "lines": [line],
    }
    options = {"on_reversal_subscriptions": "period_end"}
    hub = Hub.from_files(
        [write_config(tmp_path, lago.system_config(), target_options=options)], configure_logs=False
    )
    system.records.append(order)
    assert run_hub(hub, timeout=30)
    [sub] = lago.api.get("/subscriptions", params={"external_customer_id": "LST-ACC"}).json()["subscriptions"]
    last_day = date.fromisoformat(sub["current_billing_period_ending_at"][:10])
    if last_day != today:
        r = lago.admin.post("/lago/clock", json={"to": f"{last_day.isoformat()}T12:00:00Z"})
        assert r.status_code == 200, r.text
    # Lago itself refuses the period's end as ending_at on that day: the case the hub must handle.
    refused = lago.api.put(
        f"/subscriptions/{sub['external_id']}",
        json={"subscription": {"ending_at": sub["current_billing_period_ending_at"]}},
    )
    assert refused.status_code == 422 and refused.json()["error_details"] == {"ending_at": ["invalid_date"]}
    system.records.append({**order, "version": 2, "status": "lost"})
    assert run_hub(hub, timeout=30)
    assert hub.store.dlq_count("bill") == 0
    gone = lago.api.get(
        "/subscriptions", params={"external_customer_id": "LST-ACC", "status[]": "terminated"}
    ).json()["subscriptions"]
    assert [s["external_id"] for s in gone] == [sub["external_id"]]
    assert gone[0]["terminated_at"][:10] == last_day.isoformat()
    assert last_day.day == calendar.monthrange(last_day.year, last_day.month)[1]  # calendar billing
    hub.close()
