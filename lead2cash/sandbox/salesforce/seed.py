"""Deterministic seed data: accounts in the catalogue's countries, the catalogue's products and prices,
and ``seed_size`` opportunities in every stage with 1-4 line items each.

Everything except the timestamps is a function of the seed; timestamps are laid out backwards from the
start of the current UTC day so date literals such as LAST_N_DAYS match seeded rows. Records are written
in batches of five that share one SystemModstamp, the way bulk loads stamp them, so watermark tie-breaks
are exercised from the first poll.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from faker import Faker

from lead2cash.sandbox.catalog import COUNTRY_BY_CURRENCY, CURRENCIES, PRODUCTS
from lead2cash.sandbox.salesforce.schema import OBJECTS, STAGES
from lead2cash.sandbox.salesforce.store import UTC, Record, Store, line_total

LOCALES = {"US": "en_US", "DE": "de_DE", "GB": "en_GB", "JP": "ja_JP", "KW": "en_US"}
COUNTRY_NAMES = {
    "US": "United States",
    "DE": "Germany",
    "GB": "United Kingdom",
    "JP": "Japan",
    "KW": "Kuwait",
}
KW_CITIES = (
    ("Kuwait City", "Al Asimah"),
    ("Hawalli", "Hawalli"),
    ("Salmiya", "Hawalli"),
    ("Al Ahmadi", "Al Ahmadi"),
    ("Al Jahra", "Al Jahra"),
    ("Al Farwaniyah", "Al Farwaniyah"),
)
PERIODS = {"monthly": "Monthly", "quarterly": "Quarterly", "yearly": "Yearly"}
BATCH = 5  # records per shared SystemModstamp
DISCOUNTS = (None, None, None, Decimal("5"), Decimal("10"), Decimal("15"))


class Seeder:
    def __init__(
        self, store: Store, seed: int, anchor: dt.datetime, currencies: tuple[str, ...] = CURRENCIES
    ) -> None:
        self.store = store
        self.currencies = currencies
        self.rng = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        for i, (country, locale) in enumerate(sorted(LOCALES.items())):
            f = Faker(locale)
            f.seed_instance(seed * 31 + i)
            self.fakers[country] = f
        self.anchor = anchor
        self.tick = 0

    def stamp(self, n: int) -> dt.datetime:
        """Seconds back from the anchor, one step per batch of records (older rows first)."""
        return self.anchor - dt.timedelta(seconds=self.total_batches - n // BATCH)

    def insert(self, obj_name: str, values: dict[str, Any], stamp: dt.datetime) -> Record:
        obj = OBJECTS[obj_name]
        rec: Record = {f: None for f in obj.fields}
        rec.update(values)
        rec["Id"] = self.store.minter.mint(obj.key_prefix)
        rec["IsDeleted"] = False
        rec["CreatedDate"] = rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
        self.store.tables[obj_name][rec["Id"]] = rec
        self.store._index(obj, rec, None)
        return rec

    def run(self, seed_size: int) -> None:
        n_accounts = max(3, seed_size // 4)
        self.total_batches = (seed_size + 4 * n_accounts + 200) // BATCH + 10
        first = self.anchor - dt.timedelta(seconds=self.total_batches + 1)
        pricebook = self.insert(
            "Pricebook2", {"Name": "Standard Price Book", "IsActive": True, "IsStandard": True}, first
        )
        entries: dict[tuple[str, str], Record] = {}
        for product in PRODUCTS:
            p = self.insert(
                "Product2",
                {
                    "Name": product.name,
                    "ProductCode": product.code,
                    "Family": product.family,
                    "IsActive": True,
                    "Billing_Type__c": "Recurring" if product.recurring else "One-Time",
                    "Billing_Period__c": PERIODS.get(product.interval or ""),
                    "CurrencyIsoCode": "USD",
                    "Lead2Cash_Key__c": product.code,
                },
                first,
            )
            for currency in CURRENCIES:
                entries[(product.code, currency)] = self.insert(
                    "PricebookEntry",
                    {
                        "Pricebook2Id": pricebook["Id"],
                        "Product2Id": p["Id"],
                        "Name": product.name,
                        "ProductCode": product.code,
                        "UnitPrice": Decimal(product.prices[currency]),
                        "IsActive": True,
                        "UseStandardPrice": False,
                        "CurrencyIsoCode": currency,
                    },
                    first,
                )
        counter = 0
        accounts: list[Record] = []
        for i in range(n_accounts):
            currency = self.currencies[i % len(self.currencies)]
            country = COUNTRY_BY_CURRENCY[currency]
            fake = self.fakers[country]
            if country == "KW":
                city, state = self.rng.choice(KW_CITIES)
                street = (
                    f"Block {self.rng.randint(1, 12)}, Street {self.rng.randint(1, 120)}, "
                    f"Building {self.rng.randint(1, 60)}"
                )
                postal = f"{self.rng.randint(10000, 99999)}"
            else:
                city, street, postal = fake.city(), fake.street_address(), fake.postcode()
                state_provider = {"US": "state_abbr", "JP": "prefecture", "DE": "state"}.get(country)
                state = getattr(fake, state_provider)() if state_provider else None
            stamp = self.stamp(counter)
            counter += 1
            account = self.insert(
                "Account",
                {
                    "Name": fake.company(),
                    "Type": "Customer - Direct" if i % 3 else "Prospect",
                    "BillingStreet": street,
                    "BillingCity": city,
                    "BillingState": state,
                    "BillingPostalCode": postal,
                    "BillingCountry": COUNTRY_NAMES[country],
                    "CurrencyIsoCode": currency,
                },
                stamp,
            )
            accounts.append(account)
            self.insert(
                "Contact",
                {
                    "AccountId": account["Id"],
                    "FirstName": fake.first_name(),
                    "LastName": fake.last_name(),
                    "Email": f"billing{i}@{fake.domain_name()}"
                    if country != "JP"
                    else f"billing{i}@example.jp",
                    "CurrencyIsoCode": currency,
                },
                stamp,
            )
        stages = list(STAGES)
        today = self.anchor.date()
        for i in range(seed_size):
            account = accounts[self.rng.randrange(len(accounts))]
            currency = account["CurrencyIsoCode"]
            stage = stages[i % len(stages)]
            probability, closed, won = STAGES[stage]
            close_date = today + dt.timedelta(
                days=self.rng.randint(-120, -1) if closed else self.rng.randint(1, 180)
            )
            stamp = self.stamp(counter)
            counter += 1
            codes = self.rng.sample(PRODUCTS, self.rng.randint(1, 4))
            opp = self.insert(
                "Opportunity",
                {
                    "AccountId": account["Id"],
                    "Name": f"{account['Name']} - {codes[0].name}",
                    "StageName": stage,
                    "Probability": Decimal(probability),
                    "CloseDate": close_date,
                    "IsClosed": closed,
                    "IsWon": won,
                    "LastStageChangeDate": stamp,
                    "CurrencyIsoCode": currency,
                    "Pricebook2Id": pricebook["Id"],
                },
                stamp,
            )
            total = Decimal(0)
            for product in codes:
                entry = entries[(product.code, currency)]
                quantity = Decimal(self.rng.choice((1, 1, 1, 2, 3, 5, 10, 25)))
                discount = self.rng.choice(DISCOUNTS)
                price = entry["UnitPrice"]
                line = line_total(quantity, price, discount, currency)
                total += line
                self.insert(
                    "OpportunityLineItem",
                    {
                        "OpportunityId": opp["Id"],
                        "PricebookEntryId": entry["Id"],
                        "Product2Id": entry["Product2Id"],
                        "Name": f"{opp['Name']} {product.name}",
                        "ProductCode": product.code,
                        "Quantity": quantity,
                        "UnitPrice": price,
                        "ListPrice": price,
                        "Discount": discount,
                        "TotalPrice": line,
                        "ServiceDate": close_date,
                        "Service_End_Date__c": (
                            close_date.replace(year=close_date.year + 1) - dt.timedelta(days=1)
                            if product.recurring and not (close_date.month == 2 and close_date.day == 29)
                            else None
                        ),
                        "CurrencyIsoCode": currency,
                    },
                    stamp,
                )
            opp["Amount"] = total


def seed_store(store: Store, seed: int, seed_size: int, currencies: tuple[str, ...] = CURRENCIES) -> None:
    """``currencies``: the accounts' (and so the deals') currencies, in turn; price book entries exist for
    every catalogue currency regardless."""
    unknown = set(currencies) - set(CURRENCIES)
    if unknown or not currencies:
        raise ValueError(f"currencies must be a non-empty subset of {CURRENCIES}, got {currencies}")
    anchor = dt.datetime.combine(store.clock.today(), dt.time(), UTC)
    Seeder(store, seed, anchor, tuple(currencies)).run(seed_size)
