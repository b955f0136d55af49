"""Seed data from the shared catalogue: taxes, plans, add-ons, customers and a few paid invoices.

Plan convention: Lago plans carry one currency, so each recurring product gets one plan per currency,
coded ``<PRODUCT>__<CURRENCY>`` (``plan_code_for("PLAT-BASE", "EUR") == "PLAT-BASE__EUR"``). One-time
products become add-ons coded like the product, priced in USD; one-off invoices pass
``unit_amount_cents`` in the invoice currency (Lago would otherwise reuse the add-on's amount as is).
"""

from __future__ import annotations

from decimal import Decimal

from faker import Faker

from lead2cash.sandbox.catalog import COUNTRY_BY_CURRENCY, PRODUCTS, TAX_BY_COUNTRY
from lead2cash.sandbox.lago.money import to_cents
from lead2cash.sandbox.lago.store import LagoStore

ADD_ON_CURRENCY = "USD"


def plan_code_for(product_code: str, currency: str) -> str:
    return f"{product_code}__{currency}"


def seed_catalog(store: LagoStore) -> None:
    for country, (code, rate) in TAX_BY_COUNTRY.items():
        store.add_tax(code, f"{country} {rate}%", Decimal(rate), country=country)
    for product in PRODUCTS:
        if product.recurring:
            assert product.interval is not None
            for currency, price in product.prices.items():
                if currency not in store.currencies:
                    continue
                store.add_plan(
                    plan_code_for(product.code, currency),
                    product.name,
                    product.interval,
                    to_cents(price, currency),
                    currency,
                    description=f"{product.family} ({currency})",
                )
        else:
            store.add_add_on(
                product.code,
                product.name,
                to_cents(product.prices[ADD_ON_CURRENCY], ADD_ON_CURRENCY),
                ADD_ON_CURRENCY,
                description=product.family,
            )


def seed_customers(store: LagoStore, seed: int, size: int) -> None:
    """``size`` customers ``seed-cust-0001``..., currencies in turn, each with one paid one-off invoice."""
    fake = Faker()
    fake.seed_instance(seed)
    one_time = [p for p in PRODUCTS if not p.recurring]
    currencies = [c for c in COUNTRY_BY_CURRENCY if c in store.currencies]
    emit, store.emit = store.emit, lambda *_: None  # seeding sends no webhooks
    try:
        for i in range(size):
            currency = currencies[i % len(currencies)]
            company = fake.company()
            customer = store.upsert_customer(
                {
                    "external_id": f"seed-cust-{i + 1:04d}",
                    "name": company,
                    "legal_name": company,
                    "email": fake.company_email(),
                    "address_line1": fake.street_address(),
                    "city": fake.city(),
                    "zipcode": fake.postcode(),
                    "country": COUNTRY_BY_CURRENCY[currency],
                    "currency": currency,
                    "customer_type": "company",
                }
            )
            product = one_time[i % len(one_time)]
            invoice = store.create_one_off_invoice(
                {
                    "external_customer_id": customer.external_id,
                    "currency": currency,
                    "fees": [
                        {
                            "add_on_code": product.code,
                            "units": "1",
                            "unit_amount_cents": to_cents(product.prices[currency], currency),
                        }
                    ],
                }
            )
            invoice.payment_status = "succeeded"
    finally:
        store.emit = emit
    store.effects.reset()
