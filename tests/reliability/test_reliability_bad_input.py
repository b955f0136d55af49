"""Scenario 4, bad input, through the real route mappers of the hub built on the shipped config with the
three sandboxes.

Hypothesis breaks Salesforce Opportunity records (the shape the Salesforce source yields, read from the
sandbox) and Lago invoice webhook bodies (read from the Lago sandbox after a real billing run): missing,
wrong-typed, oversized, unicode-edge and negative values. Each bad record is submitted mixed with good
ones in one batch (``RouteRuntime.submit``, what every trigger calls). Pass criteria: the hub never raises,
every bad record is a dead letter whose reason names the field, every good record of the same batch is
delivered to the target system. Malformed bodies at the web app get a clean 4xx (or, signed but
unreadable, an acknowledgement that adds nothing), and malformed SOAP responses a transient error.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile_soap import hostile_soap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import hmac_b64, inbox_census, report, size

from lead2cash.demo.environment import CONFIG_DIR, LeadToCash
from lead2cash.hub import Hub
from lead2cash.routes.route import RouteRuntime

EXAMPLES = size(40, 400)
BILLING = "won-opportunity-to-billing"
LEDGER = "posted-invoice-to-ledger"


# ---------------------------------------------------------------------------------------------- mutations
@dataclass(frozen=True)
class Mutation:
    """A change to one record, and the field its dead letter must name (None: the record stays good)."""

    name: str
    apply: Callable[[dict[str, Any]], None]
    field: str | None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(record: dict[str, Any]) -> None:
        node: Any = record
        *parents, last = path.split(".")
        for part in parents:
            node = node["records"][int(part[1:])] if part.startswith("#") else node[part]
        if value is _DROP:
            node.pop(last, None)
        else:
            node[last] = value

    return apply


_DROP = object()
LINE = "OpportunityLineItems.#0"
PRODUCT = f"{LINE}.PricebookEntry.Product2"
WRONG_TYPES = st.one_of(
    st.booleans(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers())
)
NOT_A_NUMBER = st.text(min_size=1, max_size=30).filter(lambda t: not _numeric(t))
# Text a person could type: every Unicode category but lone surrogates, which no UTF-8 system can store.
_PRINTABLE = st.characters(blacklist_categories=("Cs",))  # type: ignore[arg-type]
UNICODE = st.text(_PRINTABLE, min_size=1, max_size=60).filter(lambda t: t.strip() != "")
EDGES = st.sampled_from(
    [
        "\u202eevil\u202c",
        "\x00nul",
        "Zoë \u0301\u0301\u0301",
        "😀🏳️‍🌈",
        "\ufeffbom",
        "a\u200bb",
        "\U0010fffd",
        "Ǆǅǆ",
        "x" * 120,
    ]
)


def _numeric(text: str) -> bool:
    try:
        return Decimal(text.strip()).is_finite() if text.strip() else False
    except ArithmeticError:
        return False


@st.composite
def sf_mutations(draw: st.DrawFn) -> Mutation:
    path: str
    field: str
    bad: Any
    value: Any
    kind = draw(
        st.sampled_from(["missing", "wrong_type", "oversized", "negative", "unicode_bad", "unicode_ok"])
    )
    if kind == "missing":
        path, field = draw(
            st.sampled_from(
                [
                    ("Id", "Id"),
                    ("CloseDate", "CloseDate"),
                    ("CurrencyIsoCode", "CurrencyIsoCode"),
                    ("Account", "Account"),
                    ("Account.Name", "Name"),
                    ("OpportunityLineItems", "OpportunityLineItems"),
                    (f"{LINE}.Id", "Id"),
                    (f"{LINE}.Quantity", "Quantity"),
                    (f"{LINE}.UnitPrice", "UnitPrice"),
                ]
            )
        )
        return Mutation(f"missing {path}", _set(path, _DROP), field)
    if kind == "wrong_type":
        path, field, bad = draw(
            st.sampled_from(
                [
                    ("Id", "Id", WRONG_TYPES.filter(lambda v: v not in (None, {}, []))),
                    ("CloseDate", "CloseDate", st.one_of(WRONG_TYPES, st.text(max_size=20))),
                    ("CurrencyIsoCode", "CurrencyIsoCode", st.one_of(WRONG_TYPES, st.integers())),
                    ("IsWon", "IsWon", st.one_of(st.text(max_size=5), st.integers())),
                    (
                        "Account",
                        "Account",
                        st.one_of(st.text(max_size=5), st.integers(), st.lists(st.none())),
                    ),
                    (
                        "OpportunityLineItems",
                        "OpportunityLineItems",
                        st.one_of(st.text(min_size=1), st.integers()),
                    ),
                    (f"{LINE}.Quantity", "Quantity", st.one_of(WRONG_TYPES, NOT_A_NUMBER)),
                    (f"{LINE}.UnitPrice", "UnitPrice", st.one_of(WRONG_TYPES, NOT_A_NUMBER)),
                    (f"{LINE}.Discount", "Discount", st.one_of(WRONG_TYPES, NOT_A_NUMBER)),
                    (f"{LINE}.ServiceDate", "ServiceDate", st.one_of(WRONG_TYPES, NOT_A_NUMBER)),
                    (
                        f"{PRODUCT}.ProductCode",
                        "ProductCode",
                        st.one_of(
                            st.lists(st.text(), min_size=1), st.dictionaries(st.text(), st.text(), min_size=1)
                        ),
                    ),
                ]
            )
        )
        value = draw(bad)
        if path == "CloseDate" and isinstance(value, str):
            value = value + "-not-a-date"
        if path == "Account" and value in ([], 0, ""):
            value = "x"
        if path == "OpportunityLineItems" and value == 0:
            value = 1
        if path == "IsWon" and isinstance(value, int) and not isinstance(value, bool):
            value = value if value not in (0,) else 2
        return Mutation(f"wrong type {path}={str(value)[:30]!r}", _set(path, value), field)
    if kind == "oversized":
        path, field, bad = draw(
            st.sampled_from(
                [
                    (f"{LINE}.Quantity", "quantity", st.integers(min_value=10**9 + 1, max_value=10**40)),
                    (f"{LINE}.UnitPrice", "UnitPrice", st.integers(min_value=10**15, max_value=10**60)),
                    (
                        f"{LINE}.Discount",
                        "Discount",
                        st.decimals(min_value=Decimal("100.01"), max_value=Decimal(10**9), places=2),
                    ),
                    ("CurrencyIsoCode", "CurrencyIsoCode", st.integers(4, 200_000).map(lambda n: "X" * n)),
                    ("Account.Name", "name", st.integers(10_001, 200_000).map(lambda n: "N" * n)),
                    ("Name", "name", st.integers(10_001, 200_000).map(lambda n: "O" * n)),
                ]
            )
        )
        value = draw(bad)
        return Mutation(f"oversized {path} ({len(str(value))} chars)", _set(path, value), field)
    if kind == "negative":
        path, field = draw(
            st.sampled_from(
                [
                    (f"{LINE}.Quantity", "Quantity"),
                    (f"{LINE}.UnitPrice", "UnitPrice"),
                    (f"{LINE}.Discount", "Discount"),
                ]
            )
        )
        value = draw(st.decimals(max_value=Decimal("-0.01"), min_value=Decimal(-(10**9)), places=2))
        return Mutation(f"negative {path}={value}", _set(path, str(value)), field)
    if kind == "unicode_bad":
        # Lone surrogates (valid in JSON text, not in UTF-8) and blank names are refused with the field.
        path = draw(st.sampled_from(["Account.Name", "Name"]))
        value = draw(st.sampled_from(["a\ud800b", "\udfff", "   ", "\t\n"]))
        if path == "Name" and value.strip() == "":
            value = "\ud83d"  # a blank opportunity name is allowed (Name is optional in the mapping)
        field = "Name" if value.strip() == "" else "name"
        return Mutation(f"unicode {path}={value!r}", _set(path, value), field)
    path = draw(st.sampled_from(["Account.Name", "Name", "Account.BillingCity", "Account.BillingStreet"]))
    value = draw(st.one_of(EDGES, UNICODE))
    return Mutation(f"unicode {path}={value[:20]!r}", _set(path, value), None)


@st.composite
def lago_mutations(draw: st.DrawFn) -> Mutation:
    path: str
    field: str
    bad: Any
    value: Any
    kind = draw(st.sampled_from(["missing", "wrong_type", "oversized", "negative", "unicode_bad"]))
    inv = "invoice"
    if kind == "missing":
        path, field = draw(
            st.sampled_from(
                [
                    (f"{inv}.currency", "currency"),
                    (f"{inv}.issuing_date", "issuing_date"),
                    (f"{inv}.customer", "external_id"),
                    (f"{inv}.customer.external_id", "external_id"),
                    (f"{inv}.fees", "amount_cents"),
                ]
            )
        )
        return Mutation(f"missing {path}", _set(path, _DROP), field)
    if kind == "wrong_type":
        path, field, bad = draw(
            st.sampled_from(
                [
                    (f"{inv}.lago_id", "lago_id", WRONG_TYPES.filter(lambda v: v not in ({}, []))),
                    (f"{inv}.currency", "currency", st.one_of(WRONG_TYPES, st.text(max_size=8))),
                    (
                        f"{inv}.payment_status",
                        "payment_status",
                        st.one_of(WRONG_TYPES, st.text(min_size=1, max_size=8)),
                    ),
                    (f"{inv}.issuing_date", "issuing_date", st.one_of(WRONG_TYPES, NOT_A_NUMBER)),
                    (
                        f"{inv}.total_amount_cents",
                        "total_amount_cents",
                        st.one_of(st.text(max_size=8), st.floats(), st.lists(st.none())),
                    ),
                    (
                        f"{inv}.fees",
                        "fees",
                        st.one_of(
                            st.text(min_size=1, max_size=8), st.integers(), st.lists(st.text(), min_size=1)
                        ),
                    ),
                    (
                        f"{inv}.customer",
                        "customer",
                        st.one_of(st.text(max_size=5), st.integers(), st.lists(st.none(), min_size=1)),
                    ),
                    (
                        f"{inv}.coupons_amount_cents",
                        "coupons_amount_cents",
                        st.one_of(st.text(min_size=1, max_size=8), st.floats().filter(lambda f: f != 0)),
                    ),
                ]
            )
        )
        value = draw(bad)
        if field == "currency" and isinstance(value, str) and value.strip().upper() in _CURRENCIES:
            value = value + "Z"
        if field == "payment_status" and value in ("pending", "succeeded", "failed"):
            value = value + "?"
        if field == "issuing_date" and isinstance(value, str):
            value = value + "-not-a-date"
        if field == "lago_id" and value in (False, 0):
            value = True
        return Mutation(f"wrong type {path}={str(value)[:30]!r}", _set(path, value), field)
    if kind == "oversized":
        path, field, bad = draw(
            st.sampled_from(
                [
                    (
                        f"{inv}.fees.#0.amount_cents",
                        "amount",
                        st.integers(min_value=10**17, max_value=10**40),
                    ),
                    (f"{inv}.number", "number", st.integers(10_001, 100_000).map(lambda n: "N" * n)),
                    (f"{inv}.currency", "currency", st.integers(4, 100_000).map(lambda n: "E" * n)),
                ]
            )
        )
        return Mutation(f"oversized {path}", _lago_set(path, draw(bad)), field)
    if kind == "negative":
        path, field = draw(
            st.sampled_from(
                [
                    (f"{inv}.total_amount_cents", "total_amount_cents"),
                    (f"{inv}.fees.#0.amount_cents", "amount_cents"),
                    (f"{inv}.coupons_amount_cents", "amount_cents"),
                ]
            )
        )
        return Mutation(f"negative {path}", _lago_set(path, draw(st.integers(-(10**9), -1))), field)
    value = draw(st.sampled_from(["a\ud800b", "\udfff"]))
    return Mutation(f"unicode customer.name={value!r}", _set(f"{inv}.customer.name", value), "name")


_CURRENCIES = {"USD", "EUR", "GBP", "JPY", "CHF", "KWD"}


def _lago_set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Like ``_set``, for paths through Lago's plain lists (``fees.#0``)."""

    def apply(record: dict[str, Any]) -> None:
        node: Any = record
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part[1:])] if part.startswith("#") else node[part]
        node[last] = value

    return apply


# ---------------------------------------------------------------------------------------------- fresh records
def fresh_opportunity(template: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A new deal of the same account (new Opportunity and line ids): a new effect when delivered."""
    record = copy.deepcopy(template)
    suffix = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=9))
    record["Id"] = f"006Dy{suffix}IAA"
    for i, line in enumerate(record["OpportunityLineItems"]["records"]):
        line["Id"] = f"00kDy{suffix[:8]}{i}IAA"
    record["_probe"] = uuid.uuid4().hex
    return record


def fresh_invoice(template: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(template)
    invoice = record["invoice"]
    invoice["lago_id"] = str(uuid.uuid4())
    invoice["number"] = f"RELI-{uuid.uuid4().hex[:10].upper()}"
    record["_probe"] = uuid.uuid4().hex
    return record


def _dead_letters_by_probe(route: RouteRuntime) -> dict[str, Any]:
    out = {}
    for d in route.store.dlq_list(route.name, None, 100_000):
        try:
            probe = json.loads(d.original_payload).get("_probe")
        except ValueError:
            continue
        if probe:
            out[probe] = d
    return out


def _check_batch(
    route: RouteRuntime, good: list[dict[str, Any]], bad: list[tuple[dict[str, Any], Mutation]]
) -> None:
    """One batch through the route's mapper: bad ones dead-lettered naming the field, good ones queued."""
    batch: list[Mapping[str, Any]] = [*good, *(record for record, _ in bad)]
    random.Random(len(batch)).shuffle(batch)
    before = route.store.count_messages(route.name)
    accepted = route.submit(list(batch))  # must not raise, whatever the batch holds
    expect_ok = len(good) + sum(1 for _, m in bad if m.field is None)
    assert accepted == expect_ok, (accepted, expect_ok, [m.name for _, m in bad])
    assert route.store.count_messages(route.name) == before + expect_ok
    dead = _dead_letters_by_probe(route)
    for record, mutation in bad:
        letter = dead.get(record["_probe"])
        if mutation.field is None:
            assert letter is None, f"{mutation.name}: a good record was dead-lettered: {letter.error_message}"
            continue
        assert letter is not None, f"{mutation.name}: not dead-lettered"
        assert letter.stage == "mapping"
        reason = letter.error_message
        assert mutation.field.lower() in reason.lower(), (
            f"{mutation.name}: reason does not name the field: {reason}"
        )
        assert len(reason) < 1000, f"{mutation.name}: the reason echoes the input ({len(reason)} chars)"
    for record in good:
        assert record["_probe"] not in dead


# ---------------------------------------------------------------------------------------------- the test
@pytest.fixture()
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=9, seed_size=30)
    yield environment
    environment.close()


def test_bad_records_are_dead_lettered_naming_the_field_and_good_ones_delivered(env: LeadToCash) -> None:
    hub = env.hub
    billing, ledger = hub.routes[BILLING], hub.routes[LEDGER]
    rng = random.Random(4)
    counts = {"salesforce_bad": 0, "salesforce_good": 0, "lago_bad": 0, "lago_good": 0}
    good_ids: set[str] = set()
    good_numbers: set[str] = set()
    templates: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(mutations=st.lists(sf_mutations(), min_size=1, max_size=4), goods=st.integers(1, 2))
    def salesforce_batches(mutations: list[Mutation], goods: int) -> None:
        good = [fresh_opportunity(rng.choice(templates), rng) for _ in range(goods)]
        bad = []
        for mutation in mutations:
            record = fresh_opportunity(rng.choice(templates), rng)
            mutation.apply(record)
            bad.append((record, mutation))
        _check_batch(billing, good, bad)
        counts["salesforce_good"] += goods + sum(1 for m in mutations if m.field is None)
        counts["salesforce_bad"] += sum(1 for m in mutations if m.field is not None)
        good_ids.update(r["Id"] for r in good)
        good_ids.update(r["Id"] for r, m in bad if m.field is None)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(mutations=st.lists(lago_mutations(), min_size=1, max_size=4), goods=st.integers(1, 2))
    def lago_batches(mutations: list[Mutation], goods: int) -> None:
        good = [fresh_invoice(rng.choice(invoices)) for _ in range(goods)]
        bad = []
        for mutation in mutations:
            record = fresh_invoice(rng.choice(invoices))
            mutation.apply(record)
            bad.append((record, mutation))
        _check_batch(ledger, good, bad)
        counts["lago_good"] += goods
        counts["lago_bad"] += len(mutations)
        good_numbers.update(r["invoice"]["number"] for r in good)

    async def scenario() -> None:
        nonlocal templates, invoices
        env.close_won(6)
        # Real records as the Salesforce source yields them, and real invoices of a billing run.
        assert await hub.run_until_idle(timeout=120, routes=[BILLING])
        templates = [dict(r) for r in (await billing.source.read(None, 100)).records]  # type: ignore[union-attr]
        finalized = [i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized"]
        assert templates and finalized
        invoices = [
            {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": i} for i in finalized
        ]

        salesforce_batches()
        lago_batches()
        assert await hub.run_until_idle(timeout=180, routes=[BILLING, LEDGER])
        await hub.aclose_systems()

    asyncio.run(scenario())

    # Every good record of every batch was delivered: an order billed in Lago, an invoice posted in SAP.
    delivered_orders = {json.loads(m.payload)["id"] for m in hub.store.messages_for(BILLING, "delivered")}
    assert good_ids <= delivered_orders, sorted(good_ids - delivered_orders)[:5]
    posted = set(env.effects("sap")["journal_entry.post"])
    assert {n for n in good_numbers if not any(k.endswith(f":{n}") for k in posted)} == set()
    delivery_dead = [d for d in hub.store.dlq_list(None, None, 100_000) if d.stage == "delivery"]
    assert delivery_dead == [], [d.error_message for d in delivery_dead][:5]
    report("4-bad-input", examples_per_source=EXAMPLES, **counts, crashes=0, good_lost=0)


# ---------------------------------------------------------------------------------------------- malformed bodies
def test_malformed_webhook_bodies_get_a_clean_answer_and_add_nothing(env: LeadToCash) -> None:
    hub = env.hub
    hook = f"http://127.0.0.1:{env.web_port}/webhooks/lago"
    key = env.lago.signer.hmac_key
    bodies = {
        "not json": b"{this is not json",
        "truncated": b'{"webhook_type": "invoice.created", "invoice": {"lago_id": "x"',
        "json array": b"[1, 2, 3]",
        "json string": b'"invoice.created"',
        "invalid utf-8": b'{"webhook_type": "\xff\xfe"}',
        "nul bytes": b"\x00" * 64,
        "xml": b"<?xml version='1.0'?><invoice/>",
        "empty": b"",
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    }

    async def scenario() -> dict[str, tuple[int, int]]:
        await hub.start()
        out: dict[str, tuple[int, int]] = {}
        try:
            async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
                for _ in range(100):
                    try:
                        if (await client.get(f"http://127.0.0.1:{env.web_port}/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                before = inbox_census(hub.store)
                for name, body in bodies.items():
                    unsigned = await client.post(hook, content=body)
                    signed = await client.post(
                        hook,
                        content=body,
                        headers={"X-Lago-Signature": hmac_b64(key, body), "X-Lago-Unique-Key": f"bad-{name}"},
                    )
                    out[name] = (unsigned.status_code, signed.status_code)
                assert (await client.get(f"http://127.0.0.1:{env.web_port}/health")).status_code == 200
                after = inbox_census(hub.store)
        finally:
            await hub.stop()
            await hub.aclose_systems()
        # Signed deliveries leave a receipt (so Lago's retries are recognised), nothing else.
        assert after["messages"] == before["messages"] and after["dead_letters"] == before["dead_letters"]
        return out

    results = asyncio.run(scenario())
    for name, (unsigned, signed) in results.items():
        assert unsigned == 401, (name, unsigned)
        # Genuinely signed but unreadable: acknowledged (Lago would otherwise retry it for days), ignored.
        assert 200 <= signed < 300 or 400 <= signed < 500, (name, signed)


def test_malformed_soap_responses_end_in_transient_errors_not_crashes(
    env: LeadToCash, tmp_path: Path
) -> None:
    """The ledger route with SAP's SOAP endpoint replaced by a hostile server: every malformed answer is a
    transient error (retried, then dead-lettered with a clear reason), the hub keeps going."""
    template = json.loads(env.systems_file.read_text())
    invoices: list[dict[str, Any]] = []

    async def bill() -> None:
        env.close_won(3)
        assert await env.hub.run_until_idle(timeout=120, routes=[BILLING])
        await env.hub.aclose_systems()

    asyncio.run(bill())
    invoices = [i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized"]
    assert invoices
    with hostile_soap() as base:
        paths = ["/garbage", "/truncated", "/html", "/empty", "/xxe"]
        template["systems"]["sap"]["soap"] = {"journal_entry_post": f"{base}/garbage", "timeout": "5s"}
        template["state"]["url"] = f"sqlite:///{tmp_path / 'soap-state.db'}"
        template["web"]["enabled"] = False
        routes = tmp_path / "ledger-only.yaml"
        routes.write_text(
            json.dumps(
                {
                    "routes": [
                        {
                            "name": f"ledger{p.replace('/', '-')}",
                            "source": {
                                "system": "lago",
                                "object": "invoices",
                                "trigger": {"type": "webhook"},
                                "options": {"consumer": f"hostile{p.replace('/', '-')}"},
                            },
                            "mapping": {"adapter": "lago.invoice", "entity": "Invoice"},
                            "target": {"system": f"sap{p.replace('/', '_')}", "action": "journal_entry.post"},
                            "idempotency_key": "invoice:{invoice_number}",
                            "retry": {
                                "attempts": 2,
                                "initial_backoff": "10ms",
                                "max_backoff": "20ms",
                                "jitter": "0s",
                            },
                        }
                        for p in paths
                    ]
                }
            )
        )
        for p in paths:
            sap = copy.deepcopy(template["systems"]["sap"])
            sap["soap"]["journal_entry_post"] = f"{base}{p}"
            template["systems"][f"sap{p.replace('/', '_')}"] = sap
        systems = tmp_path / "systems-hostile.yaml"
        systems.write_text(json.dumps(template))
        hub = Hub.from_files([systems, CONFIG_DIR / "mappings.yaml", routes], configure_logs=False)
        try:

            async def run() -> bool:
                for name in hub.routes:
                    hub.routes[name].submit(
                        [
                            {
                                "webhook_type": "invoice.created",
                                "object_type": "invoice",
                                "invoice": invoices[0],
                            }
                        ]
                    )
                ok = await hub.run_until_idle(timeout=60)
                await hub.aclose_systems()
                return ok

            assert asyncio.run(run())
            letters = {d.route: d for d in hub.store.dlq_list(None, None, 100)}
            for p in paths:
                letter = letters[f"ledger{p.replace('/', '-')}"]
                assert letter.stage == "delivery" and letter.error_class == "exhausted", (
                    p,
                    letter.error_class,
                )
                assert "soap" in letter.error_message.lower() or "xml" in letter.error_message.lower(), (
                    letter.error_message
                )
                assert "root:" not in letter.error_message
        finally:
            hub.close()
    report("4-malformed-soap", responses=len(paths), transient=len(paths), crashes=0)
