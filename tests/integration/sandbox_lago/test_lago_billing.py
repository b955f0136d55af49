"""The Lago sandbox over sockets: upserts, one-off invoices, metadata lookup, invoice lifecycle, exact
amounts, commit-then-drop, throttling and the billing clock."""

from __future__ import annotations

import calendar
import uuid
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest

from lead2cash.sandbox.lago import LagoSandbox, plan_code_for
from lead2cash.sandbox.lago.store import LagoError


def cents(amount: str, exponent: int) -> int:
    return int(Decimal(amount).scaleb(exponent).quantize(Decimal(1), ROUND_HALF_UP))


def one_off(env, customer: str, currency: str, fees: list[dict]) -> httpx.Response:
    return env.api.post(
        "/invoices", json={"invoice": {"external_customer_id": customer, "currency": currency, "fees": fees}}
    )


def test_wrong_or_missing_key_is_401(lago_env) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": ""}):
        response = lago_env.api.get("/customers", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"status": 401, "error": "Unauthorized"}


def test_customer_post_is_an_upsert_by_external_id(lago_env) -> None:
    external_id = lago_env.customer(name="First name")
    again = lago_env.api.post(
        "/customers", json={"customer": {"external_id": external_id, "name": "Renamed"}}
    )
    fetched = lago_env.api.get(f"/customers/{external_id}").json()["customer"]
    assert again.json()["customer"]["lago_id"] == fetched["lago_id"]
    assert fetched["name"] == "Renamed" and fetched["currency"] == "EUR"
    effects = lago_env.effects()
    assert effects["customer.create"][external_id] == 1
    assert effects["customer.update"][external_id] == 1
    listed = lago_env.api.get("/customers", params={"per_page": 100}).json()["customers"]
    assert [c["external_id"] for c in listed].count(external_id) == 1


def test_invoice_totals_are_exact_in_minor_units(lago_env) -> None:
    eur = lago_env.customer("EUR", "DE")
    invoice = one_off(lago_env, eur, "EUR", [
        {"add_on_code": "ONB-STD", "units": "2", "unit_amount_cents": cents("2300.00", 2)},
        {"add_on_code": "TRN-DAY", "units": "1.5", "unit_amount_cents": cents("1100.00", 2)},
    ]).json()["invoice"]  # fmt: skip
    assert [f["amount_cents"] for f in invoice["fees"]] == [460000, 165000]
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"]) == (625000, 118750)
    assert invoice["total_amount_cents"] == 743750

    jpy = lago_env.customer("JPY", "JP")
    invoice = one_off(lago_env, jpy, "JPY", [
        {"add_on_code": "TRN-DAY", "unit_amount_cents": 175000},
        {"add_on_code": "HW-GW", "units": "1", "unit_amount_cents": 4401},
    ]).json()["invoice"]  # fmt: skip
    # 10 % of 179,401 yen is 17,940.1: rounded once, on the invoice, to whole yen.
    assert (invoice["fees_amount_cents"], invoice["taxes_amount_cents"]) == (179401, 17940)
    assert invoice["total_amount_cents"] == 197341 and invoice["currency"] == "JPY"

    kwd = lago_env.customer("KWD", "KW")
    invoice = one_off(lago_env, kwd, "KWD", [
        {"add_on_code": "HW-GW", "units": "3", "unit_amount_cents": cents("107.125", 3), "tax_codes": ["DE_VAT_19"]},
    ]).json()["invoice"]  # fmt: skip
    assert invoice["fees_amount_cents"] == 321375  # 321.375 KWD in fils
    assert invoice["taxes_amount_cents"] == 61061  # 19 % = 61,061.25 fils
    assert invoice["total_amount_cents"] == 321375 + 61061
    for inv in (invoice,):
        assert (
            inv["total_amount_cents"]
            == sum(f["amount_cents"] for f in inv["fees"]) + inv["taxes_amount_cents"]
        )


@pytest.mark.parametrize(
    ("currency", "accepted"),
    [("KWD", True), ("JOD", True), ("BHD", False), ("OMR", False), ("TND", False), ("XYZ", False)],
)
def test_currencies_follow_lagos_accepted_list_not_its_openapi_enum(currency: str, accepted: bool) -> None:
    # Lago validates against Currencies::ACCEPTED_CURRENCIES (lago-api, app/models/concerns/currencies.rb),
    # which has KWD and JOD; its OpenAPI Currency enum lists neither. BHD, OMR and TND are on neither.
    sandbox = LagoSandbox(seed=3, seed_size=0)
    sandbox.store.emit = lambda *_: None
    if accepted:
        assert sandbox.store.upsert_customer({"external_id": "k", "currency": currency}).currency == currency
    else:
        with pytest.raises(LagoError) as refused:
            sandbox.store.upsert_customer({"external_id": "k", "currency": currency})
        assert refused.value.body()["error_details"] == {"currency": ["value_is_invalid"]}


def test_a_lago_that_refuses_a_currency_is_simulated_with_unsupported_currencies() -> None:
    sandbox = LagoSandbox(seed=3, seed_size=0, unsupported_currencies=("KWD",))
    sandbox.store.emit = lambda *_: None
    with pytest.raises(LagoError) as refused:
        sandbox.store.upsert_customer({"external_id": "k", "currency": "KWD"})
    assert refused.value.body()["error_details"] == {"currency": ["value_is_invalid"]}


def test_metadata_lookup_finds_the_invoice_by_idempotency_key(lago_env) -> None:
    customer = lago_env.customer()
    key = f"deal-{uuid.uuid4().hex[:8]}"
    invoice = one_off(lago_env, customer, "EUR", [{"add_on_code": "ONB-STD", "unit_amount_cents": 230000}])
    lago_id = invoice.json()["invoice"]["lago_id"]
    updated = lago_env.api.put(
        f"/invoices/{lago_id}", json={"invoice": {"metadata": [{"key": "lead2cash_key", "value": key}]}}
    ).json()["invoice"]
    assert [(m["key"], m["value"]) for m in updated["metadata"]] == [("lead2cash_key", key)]
    one_off(lago_env, customer, "EUR", [{"add_on_code": "TRN-DAY", "unit_amount_cents": 110000}])

    found = lago_env.api.get("/invoices", params={"metadata[lead2cash_key]": key}).json()
    assert [i["lago_id"] for i in found["invoices"]] == [lago_id]
    assert found["meta"]["total_count"] == 1
    unkeyed = lago_env.api.get(
        "/invoices", params={"external_customer_id": customer, "metadata[lead2cash_key]": ""}
    ).json()["invoices"]
    assert len(unkeyed) == 1 and unkeyed[0]["lago_id"] != lago_id
    assert lago_env.effects()["invoice.metadata"][f"lead2cash_key={key}"] == 1


def test_finalize_void_and_payment_status(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    customer = lago_env.customer()
    paid = one_off(lago_env, customer, "EUR", [{"add_on_code": "HW-GW", "unit_amount_cents": 32999}])
    paid_id = paid.json()["invoice"]["lago_id"]
    assert paid.json()["invoice"]["status"] == "finalized"
    assert paid.json()["invoice"]["number"].count("-") == 3  # ORG-XXXX-customer-sequence

    update = lago_env.api.put(f"/invoices/{paid_id}", json={"invoice": {"payment_status": "succeeded"}})
    assert update.json()["invoice"]["payment_status"] == "succeeded"
    refused = lago_env.api.post(f"/invoices/{paid_id}/void", json={})
    assert refused.status_code == 405 and refused.json()["code"] == "not_voidable"

    other = one_off(lago_env, customer, "EUR", [{"add_on_code": "HW-GW", "unit_amount_cents": 32999}])
    other_id = other.json()["invoice"]["lago_id"]
    voided = lago_env.api.post(f"/invoices/{other_id}/void", json={})
    assert voided.json()["invoice"]["status"] == "voided"
    # Only drafts can be finalized; Lago looks the id up among drafts, hence a 404.
    assert lago_env.api.put(f"/invoices/{other_id}/finalize").json()["code"] == "invoice_not_found"

    listed = lago_env.api.get(
        "/invoices", params=[("external_customer_id", customer), ("payment_statuses[]", "succeeded")]
    ).json()["invoices"]
    assert [i["lago_id"] for i in listed] == [paid_id]
    assert (
        lago_env.api.get("/invoices", params={"external_customer_id": customer, "status": "voided"}).json()[
            "invoices"
        ][0]["lago_id"]
        == other_id
    )

    lago_env.drain()
    types = [r.body for r in lago_env.receiver.accepted(hooks)]
    kinds = [httpx.Response(200, content=b).json()["webhook_type"] for b in types]
    assert kinds.count("invoice.one_off_created") == 2
    assert "invoice.payment_status_updated" in kinds and "invoice.voided" in kinds


def test_credit_note_amounts_follow_the_fee_taxes(lago_env) -> None:
    customer = lago_env.customer("GBP", "GB")
    invoice = one_off(lago_env, customer, "GBP", [{"add_on_code": "TRN-DAY", "unit_amount_cents": 95000}])
    inv = invoice.json()["invoice"]
    note = lago_env.api.post("/credit_notes", json={"credit_note": {
        "invoice_id": inv["lago_id"], "reason": "order_change",
        "items": [{"fee_id": inv["fees"][0]["lago_id"], "amount_cents": 33333}]}})  # fmt: skip
    body = note.json()["credit_note"]
    assert body["sub_total_excluding_taxes_amount_cents"] == 33333
    assert body["taxes_amount_cents"] == 6667  # 20 % of 333.33 = 66.666
    assert body["total_amount_cents"] == body["credit_amount_cents"] == 40000
    too_much = lago_env.api.post("/credit_notes", json={"credit_note": {
        "invoice_id": inv["lago_id"], "items": [{"fee_id": inv["fees"][0]["lago_id"], "amount_cents": 70000}]}})  # fmt: skip
    assert too_much.status_code == 422
    assert (
        lago_env.api.get(f"/credit_notes/{body['lago_id']}").json()["credit_note"]["number"] == body["number"]
    )
    assert lago_env.effects()["credit_note.create"][inv["lago_id"]] == 1


def test_commit_then_drop_on_invoice_create_is_one_effect(lago_env) -> None:
    customer = lago_env.customer()
    lago_env.admin.put("/faults", json={"rules": {"invoices.create": {"commit_then_drop_rate": 1.0}}})
    try:
        with pytest.raises(httpx.TransportError):
            one_off(lago_env, customer, "EUR", [{"add_on_code": "ONB-STD", "unit_amount_cents": 230000}])
    finally:
        lago_env.admin.put("/faults", json={"rules": {}})
    # The caller resolves the unknown outcome by looking before retrying: the write is there.
    existing = lago_env.api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    assert len(existing) == 1 and existing[0]["fees_amount_cents"] == 230000
    assert lago_env.effects()["invoice.create"][customer] == 1
    faults = lago_env.admin.get("/faults").json()
    assert faults["injected"]["invoices.create:commit_then_drop"] >= 1


def test_injected_429_and_503_carry_retry_headers_and_apply_nothing(lago_env) -> None:
    customer_id = f"it-{uuid.uuid4().hex[:8]}"
    for status in (429, 503):
        lago_env.admin.put("/faults", json={"rules": {"customers.create": {
            "error_rate": 1.0, "error_statuses": [status], "retry_after_s": 2}}})  # fmt: skip
        try:
            response = lago_env.api.post("/customers", json={"customer": {"external_id": customer_id}})
        finally:
            lago_env.admin.put("/faults", json={"rules": {}})
        assert response.status_code == status
        assert response.headers["Retry-After"] == "2"
        if status == 429:
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert response.headers["X-RateLimit-Reset"] == "2"
    assert lago_env.api.get(f"/customers/{customer_id}").status_code == 404
    lago_env.admin.put("/faults", json={"rules": {"customers.get": {"expire_session_rate": 1.0}}})
    try:
        expired = lago_env.api.get(f"/customers/{customer_id}")
    finally:
        lago_env.admin.put("/faults", json={"rules": {}})
    assert expired.status_code == 401 and expired.json() == {"status": 401, "error": "Unauthorized"}


def _month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def test_clock_advance_bills_calendar_periods_in_arrears(lago_env, hooks) -> None:
    lago_env.endpoint(hooks, event_types=["invoice.created"])
    customer = lago_env.customer("EUR", "DE")
    today = date.fromisoformat(lago_env.admin.get("/lago/clock").json()["today"])
    start = today + timedelta(days=1)
    plan = plan_code_for("PLAT-BASE", "EUR")
    created = lago_env.api.post("/subscriptions", json={"subscription": {
        "external_customer_id": customer, "plan_code": plan, "external_id": f"{customer}-sub",
        "billing_time": "calendar", "subscription_at": f"{start.isoformat()}T00:00:00Z"}})  # fmt: skip
    assert created.json()["subscription"]["status"] == "pending"
    same = lago_env.api.post("/subscriptions", json={"subscription": {
        "external_customer_id": customer, "plan_code": plan, "external_id": f"{customer}-sub"}})  # fmt: skip
    assert same.json()["subscription"]["lago_id"] == created.json()["subscription"]["lago_id"]

    first_boundary = _month_after(start)
    second_boundary = _month_after(first_boundary)
    advanced = lago_env.admin.post("/lago/clock", json={"to": second_boundary.isoformat()}).json()
    assert len(advanced["invoices"]) == 2

    invoices = lago_env.api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    by_date = sorted(invoices, key=lambda i: i["issuing_date"])
    days_in_month = calendar.monthrange(start.year, start.month)[1]
    used = (first_boundary - start).days
    prorated = int((Decimal(45900) * used / days_in_month).quantize(Decimal(1), ROUND_HALF_UP))
    assert [i["fees_amount_cents"] for i in by_date] == [prorated, 45900]
    assert [i["issuing_date"] for i in by_date] == [first_boundary.isoformat(), second_boundary.isoformat()]
    assert all(i["status"] == "finalized" and i["invoice_type"] == "subscription" for i in by_date)
    assert by_date[1]["taxes_amount_cents"] == 8721  # 19 % of 459.00 EUR

    periods = lago_env.effects()["invoice.subscription_period"]
    assert periods[f"{customer}-sub:{start.isoformat()}"] == 1
    assert periods[f"{customer}-sub:{first_boundary.isoformat()}"] == 1
    # Advancing again within the period bills nothing twice.
    again = lago_env.admin.post("/lago/clock", json={"days": 1}).json()
    assert customer not in {lago_env.api.get(f"/invoices/{i}").json()["invoice"]["customer"]["external_id"]
                            for i in again["invoices"]}  # fmt: skip

    lago_env.drain()
    received = [httpx.Response(200, content=r.body).json() for r in lago_env.receiver.accepted(hooks)]
    ours = [r for r in received if r["invoice"]["customer"]["external_id"] == customer]
    assert [r["webhook_type"] for r in ours] == ["invoice.created", "invoice.created"]

    terminated = lago_env.api.delete(f"/subscriptions/{customer}-sub")
    assert terminated.json()["subscription"]["status"] == "terminated"
    assert lago_env.api.get(f"/subscriptions/{customer}-sub").status_code == 404
    kept = lago_env.api.get(f"/subscriptions/{customer}-sub", params={"status": "terminated"})
    assert kept.json()["subscription"]["terminated_at"] is not None


def test_anniversary_billing_and_subscription_errors(lago_env) -> None:
    customer = lago_env.customer("USD", "US")
    today = date.fromisoformat(lago_env.admin.get("/lago/clock").json()["today"])
    start = today if today.day <= 28 else _month_after(today)  # an anchor day every month has
    body = {"external_customer_id": customer, "plan_code": plan_code_for("SUPP-PREM", "USD"),
            "external_id": f"{customer}-anniv", "billing_time": "anniversary",
            "subscription_at": f"{start.isoformat()}T00:00:00Z"}  # fmt: skip
    assert lago_env.api.post("/subscriptions", json={"subscription": body}).status_code == 200
    mismatch = {**body, "external_id": f"{customer}-eur", "plan_code": plan_code_for("SUPP-PREM", "EUR")}
    refused = lago_env.api.post("/subscriptions", json={"subscription": mismatch})
    assert refused.status_code == 422 and refused.json()["error_details"] == {
        "currency": ["currencies_does_not_match"]
    }
    unknown = lago_env.api.post("/subscriptions", json={"subscription": {**body, "plan_code": "NOPE"}})
    assert unknown.json() == {"status": 404, "error": "Not Found", "code": "plan_not_found"}

    quarter_end = date(start.year + (start.month + 2) // 12, (start.month + 2) % 12 + 1, start.day)
    lago_env.admin.post("/lago/clock", json={"to": quarter_end.isoformat()})
    invoices = lago_env.api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    assert [(i["fees_amount_cents"], i["issuing_date"]) for i in invoices] == [
        (150000, quarter_end.isoformat())
    ]
    assert lago_env.effects()["subscription.create"][f"{customer}-anniv"] == 1


def test_terminate_options_and_a_price_override_on_update(lago_env) -> None:
    """``on_termination_invoice=skip`` ends a subscription with no invoice for the unbilled part; an unknown
    option value is refused (the spec's enums); ``plan_overrides.amount_cents`` on update sets the price."""
    customer = lago_env.customer("USD", "US")
    body = {"external_customer_id": customer, "plan_code": plan_code_for("PLAT-BASE", "USD"),
            "external_id": f"{customer}-skip"}  # fmt: skip
    assert lago_env.api.post("/subscriptions", json={"subscription": body}).status_code == 200
    updated = lago_env.api.put(
        f"/subscriptions/{customer}-skip", json={"subscription": {"plan_overrides": {"amount_cents": 12300}}}
    )
    assert updated.json()["subscription"]["plan_amount_cents"] == 12300
    bad = lago_env.api.delete(f"/subscriptions/{customer}-skip", params={"on_termination_invoice": "later"})
    assert bad.status_code == 422 and "on_termination_invoice" in bad.json()["error_details"]
    lago_env.admin.post("/lago/clock", json={"days": 3})
    before = lago_env.api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    done = lago_env.api.delete(
        f"/subscriptions/{customer}-skip",
        params={"on_termination_invoice": "skip", "on_termination_credit_note": "skip"},
    )
    sub = done.json()["subscription"]
    assert sub["status"] == "terminated" and sub["on_termination_invoice"] == "skip"
    after = lago_env.api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    assert len(after) == len(before)
    # lago-api's update takes the only subscription of an external id whatever its status (GET and DELETE
    # look among the active ones unless told): the terminated one is renamed, not a 404.
    renamed = lago_env.api.put(f"/subscriptions/{customer}-skip", json={"subscription": {"name": "Old"}})
    assert renamed.status_code == 200 and renamed.json()["subscription"]["status"] == "terminated"
    assert renamed.json()["subscription"]["name"] == "Old"
    assert lago_env.api.get(f"/subscriptions/{customer}-skip").status_code == 404


def test_an_ending_at_not_after_today_or_the_start_is_refused(lago_env) -> None:
    """As Lago's Subscriptions::ValidateService#valid_ending_at?: the end's date must be after today's and
    after the start's; otherwise 422 ``ending_at: invalid_date`` and nothing is created."""
    customer = lago_env.customer("EUR", "DE")
    today = date.fromisoformat(lago_env.admin.get("/lago/clock").json()["today"])
    plan = plan_code_for("PLAT-BASE", "EUR")

    def create(ext: str, ending: date, start: date | None = None) -> httpx.Response:
        body = {"external_customer_id": customer, "plan_code": plan, "external_id": f"{customer}-{ext}",
                "billing_time": "anniversary", "ending_at": f"{ending.isoformat()}T23:59:59Z",
                "subscription_at": f"{(start or today - timedelta(days=40)).isoformat()}T00:00:00Z"}  # fmt: skip
        return lago_env.api.post("/subscriptions", json={"subscription": body})

    for ext, ending, start in (
        ("past", today - timedelta(days=3), None),
        ("today", today, None),
        ("before-start", today + timedelta(days=5), today + timedelta(days=9)),
        ("on-start", today + timedelta(days=9), today + timedelta(days=9)),
    ):
        refused = create(ext, ending, start)
        assert refused.status_code == 422, (ext, refused.text)
        assert refused.json() == {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {"ending_at": ["invalid_date"]},
        }
        assert lago_env.api.get(f"/subscriptions/{customer}-{ext}").status_code == 404
    assert lago_env.effects().get("subscription.create", {}).get(f"{customer}-past") is None
    accepted = create("tomorrow", today + timedelta(days=1))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["subscription"]["ending_at"].startswith((today + timedelta(days=1)).isoformat())


def test_an_ending_at_set_on_update_is_checked_as_on_create(lago_env) -> None:
    """Lago's Subscriptions::UpdateService runs the same ValidateService before changing anything: an
    ``ending_at`` whose date is not after today's and after the start's (the one given, else the
    subscription's) is refused with 422 ``ending_at: invalid_date``, and the subscription is left as it was;
    null clears the end."""
    customer = lago_env.customer("EUR", "DE")
    today = date.fromisoformat(lago_env.admin.get("/lago/clock").json()["today"])
    plan = plan_code_for("PLAT-BASE", "EUR")

    def create(ext: str, start: date) -> str:
        body = {"external_customer_id": customer, "plan_code": plan, "external_id": f"{customer}-{ext}",
                "billing_time": "anniversary", "subscription_at": f"{start.isoformat()}T00:00:00Z"}  # fmt: skip
        created = lago_env.api.post("/subscriptions", json={"subscription": body})
        assert created.status_code == 200, created.text
        return f"{customer}-{ext}"

    def update(external_id: str, **changes: object) -> httpx.Response:
        status = "pending" if external_id.endswith("-pending") else "active"
        body = {"subscription": changes}
        return lago_env.api.put(f"/subscriptions/{external_id}", params={"status": status}, json=body)

    def refused(response: httpx.Response, *fields: str) -> None:
        assert response.status_code == 422, response.text
        assert response.json() == {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {f: ["invalid_date"] for f in fields},
        }

    def end(day: date) -> str:
        return f"{day.isoformat()}T23:59:59Z"

    active = create("active", today - timedelta(days=40))
    for ending in (today - timedelta(days=3), today):
        refused(update(active, name="Renamed", ending_at=end(ending)), "ending_at")
    sub = lago_env.api.get(f"/subscriptions/{active}").json()["subscription"]
    assert sub["ending_at"] is None and sub["name"] != "Renamed"  # nothing changed
    pending = create("pending", today + timedelta(days=9))
    refused(update(pending, ending_at=end(today + timedelta(days=5))), "ending_at")  # before its start
    refused(update(pending, ending_at=end(today + timedelta(days=9))), "ending_at")  # on its start
    refused(
        update(pending, subscription_at="not a date", ending_at=end(today + timedelta(days=20))),
        "subscription_at",
        "ending_at",
    )
    # The start given in the same update is the one the end must follow.
    moved = update(pending, subscription_at=f"{(today + timedelta(days=2)).isoformat()}T00:00:00Z",
                   ending_at=end(today + timedelta(days=5)))  # fmt: skip
    assert moved.status_code == 200, moved.text
    accepted = update(active, ending_at=end(today + timedelta(days=1)))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["subscription"]["ending_at"].startswith((today + timedelta(days=1)).isoformat())
    cleared = update(active, ending_at=None)
    assert cleared.status_code == 200 and cleared.json()["subscription"]["ending_at"] is None, cleared.text


def test_fees_are_listed_with_the_specs_filters_and_pages(lago_env) -> None:
    """``GET /fees`` (FeesPaginated): the fees of every invoice, filtered on customer, subscription, type,
    currency and creation time, paged by ``meta.next_page``; a subscription fee is created with its invoice."""
    customer = lago_env.customer("EUR", "DE")
    today = date.fromisoformat(lago_env.admin.get("/lago/clock").json()["today"])
    plan = plan_code_for("PLAT-BASE", "EUR")
    for n in range(2):
        created = lago_env.api.post("/subscriptions", json={"subscription": {
            "external_customer_id": customer, "plan_code": plan, "external_id": f"{customer}-s{n}",
            "billing_time": "calendar", "subscription_at": f"{today.isoformat()}T00:00:00Z"}})  # fmt: skip
        assert created.status_code == 200, created.text
    one_off(lago_env, customer, "EUR", [{"add_on_code": "ONB-STD", "units": "1", "unit_amount_cents": 1000}])
    first, second = _month_after(today), _month_after(_month_after(today))
    lago_env.admin.post("/lago/clock", json={"to": (second + timedelta(days=3)).isoformat()})

    def fees(**params: object) -> list[dict]:
        out, page = [], 1
        while page:
            data = lago_env.api.get("/fees", params={**params, "page": page}).json()
            out += data["fees"]
            page = data["meta"]["next_page"]
        return out

    mine = fees(external_customer_id=customer, per_page=3)
    assert len(mine) == 5  # 2 subscriptions x 2 periods, 1 add-on
    assert {f["item"]["type"] for f in mine} == {"subscription", "add_on"}
    subs = fees(external_customer_id=customer, fee_type="subscription", per_page=100)
    assert len(subs) == 4 and all(f["external_customer_id"] == customer for f in subs)
    one = fees(external_subscription_id=f"{customer}-s1", per_page=100)
    assert {f["external_subscription_id"] for f in one} == {f"{customer}-s1"} and len(one) == 2
    # Each subscription fee was created by the billing run of its period, on the period's last boundary.
    invoices = {i["lago_id"]: i for i in lago_env.api.get(
        "/invoices", params={"external_customer_id": customer, "per_page": 100}).json()["invoices"]}  # fmt: skip
    for fee in subs:
        assert fee["created_at"][:10] == invoices[fee["lago_invoice_id"]]["issuing_date"]
    late = fees(external_customer_id=customer, fee_type="subscription",
                created_at_from=f"{second.isoformat()}T00:00:00Z", per_page=100)  # fmt: skip
    assert len(late) == 2 and {f["created_at"][:10] for f in late} == {second.isoformat()}
    early = fees(external_customer_id=customer, fee_type="subscription",
                 created_at_to=f"{first.isoformat()}T23:59:59Z", per_page=100)  # fmt: skip
    assert {f["created_at"][:10] for f in early} == {first.isoformat()}
    assert fees(external_customer_id=customer, currency="USD", per_page=100) == []


def test_a_listing_read_page_by_page_is_computed_once_and_sees_a_write_between_pages(
    lago_env, monkeypatch
) -> None:
    customer = lago_env.customer()
    for cents in (1000, 2000, 3000):
        one_off(lago_env, customer, "EUR", [{"add_on_code": "HW-GW", "unit_amount_cents": cents}])
    store = lago_env.sandbox.store
    computed = []
    original = type(store).list_invoices

    def counted(self, query):
        computed.append(dict(query))
        return original(self, query)

    monkeypatch.setattr(type(store), "list_invoices", counted)
    params = {"external_customer_id": customer, "per_page": 1}

    def page(n: int) -> dict:
        response = lago_env.api.get("/invoices", params={**params, "page": n})
        assert response.status_code == 200, response.text
        return response.json()

    first = page(1)
    numbers = [first["invoices"][0]["number"]] + [page(n)["invoices"][0]["number"] for n in (2, 3)]
    assert len(set(numbers)) == 3 and first["meta"]["total_count"] == 3
    assert len(computed) == 1  # pages 2 and 3 reuse the listing of page 1
    one_off(lago_env, customer, "EUR", [{"add_on_code": "HW-GW", "unit_amount_cents": 4000}])
    assert page(2)["meta"]["total_count"] == 4 and len(computed) == 2  # a write in between: computed again
