"""Vectorised generator of the legacy billing database (numpy draws, Polars columns, no Python row loop).

Tables (legacy names): CUSTMAST (accounts with contact, address, tax id, open balance), CONTRACT
(subscriptions with rate plan, per-customer price, billing cycle, next-bill date), RATEPLAN, INVHDR and
INVLINE (invoice history with taxes), PAYMENT, GLBAL (the ledger's open balance per currency: the control
total a migration must reconcile to).

Every defect is injected into records chosen at random at its rate, at most one defect per record, and
named in the manifest (TABLE, RECORD_ID, DEFECT). Amounts are integers of minor units until they are
written out as text, so the control totals are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

AS_OF = dt.date(2026, 1, 1)  # the legacy system's business date: the cut-over day (Lago sandbox's clock)

# Per-record rates (of the table the defect lives in).
DEFECT_RATES: dict[str, float] = {
    "duplicate_customer": 0.01,
    "invalid_email": 0.01,
    "invalid_phone": 0.01,
    "bad_tax_id": 0.01,
    "damaged_encoding": 0.01,
    "orphan_contract": 0.004,
    "overlapping_contract": 0.004,
    "nonpositive_price": 0.004,
    "unknown_plan_code": 0.004,
    "currency_mismatch": 0.004,
    "future_dated": 0.004,
    "invoice_total_mismatch": 0.005,
    "malformed_amount": 0.003,
}
DEFECT_CLASSES = tuple(DEFECT_RATES)
_CUSTOMER_DEFECTS = ("invalid_email", "invalid_phone", "bad_tax_id", "damaged_encoding")
_CONTRACT_DEFECTS = ("nonpositive_price", "unknown_plan_code", "currency_mismatch", "future_dated")

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD")
CURRENCY_WEIGHTS = (0.4, 0.3, 0.15, 0.1, 0.05)
EXPONENT = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}
COUNTRY = {"USD": "US", "EUR": "DE", "GBP": "GB", "JPY": "JP", "KWD": "KW"}
TAX_RATE_PCT = {"US": 0, "DE": 19, "GB": 20, "JP": 10, "KW": 0}
COUNTRY_NAMES = {
    "US": ("UNITED STATES", "USA", "U.S.A.", "UNITED STATES OF AMERICA"),
    "DE": ("GERMANY", "DEUTSCHLAND", "FED. REP. GERMANY"),
    "GB": ("UNITED KINGDOM", "GREAT BRITAIN", "U.K.", "ENGLAND"),
    "JP": ("JAPAN", "NIPPON"),
    "KW": ("KUWAIT", "STATE OF KUWAIT"),
}
CURRENCY_SYMBOLS = {
    "USD": ("$", "US$", "USD"),
    "EUR": ("€", "EUR"),
    "GBP": ("£", "GBP"),
    "JPY": ("¥", "YEN", "JPY"),
    "KWD": ("KD", "KWD"),
}
# Legacy rate-plan code -> (Lago product, months per period, legacy cycle letter).
RATE_PLANS = {
    "PLATBAS": ("PLAT-BASE", 1, "M"),
    "PLATPRO": ("PLAT-PRO", 12, "A"),
    "SEATADD": ("SEAT-ADD", 1, "M"),
    "SUPPPRM": ("SUPP-PREM", 3, "Q"),
}
LIST_PRICES = {  # the catalogue's prices in minor units
    "PLATBAS": {"USD": 49900, "EUR": 45900, "GBP": 39900, "JPY": 72000, "KWD": 152500},
    "PLATPRO": {"USD": 1198800, "EUR": 1099000, "GBP": 958800, "JPY": 1780000, "KWD": 3660000},
    "SEATADD": {"USD": 2990, "EUR": 2750, "GBP": 2390, "JPY": 4400, "KWD": 9125},
    "SUPPPRM": {"USD": 150000, "EUR": 139000, "GBP": 119000, "JPY": 220000, "KWD": 458750},
}
RETIRED_PLANS = ("PLATOLD",)  # in RATEPLAN, mapped to nothing
UNKNOWN_PLANS = ("PLATOLD", "XMAS2019", "LEGACY01")
TAX_ID_PATTERNS = {  # what a valid tax id looks like per country (the validator's rule too)
    "US": r"^\d{2}-\d{7}$",
    "DE": r"^DE\d{9}$",
    "GB": r"^GB\d{9}$",
    "JP": r"^T\d{13}$",
    "KW": r"^\d{12}$",
}

_FIRST = (
    "ACME", "NORDWIND", "BLUE", "SUMMIT", "GLOBAL", "PACIFIC", "ATLAS", "ORION", "VERTEX", "HARBOR",
    "MÜLLER", "KÖNIG", "GRÜN", "BÄCKER", "CAFÉ", "FRANÇOIS", "PEÑA", "ÅSTRÖM", "HÉLÈNE", "LÖWE",
)  # fmt: skip
_SECOND = (
    "TRADING", "SYSTEMS", "LOGISTICS", "FOODS", "MOTORS", "ENERGY", "DESIGN", "HOLDINGS", "PARTNERS",
    "ANALYTICS", "MEDIA", "LABS", "WERKE", "SERVICES", "RETAIL", "CAPITAL",
)  # fmt: skip
_SUFFIX = {
    "US": ("INC", "LLC", "CORP"),
    "DE": ("GMBH", "AG", "KG"),
    "GB": ("LTD", "PLC"),
    "JP": ("KK", "CO LTD"),
    "KW": ("WLL", "KSCC"),
}
_CITIES = {
    "US": ("NEW YORK", "CHICAGO", "AUSTIN", "SEATTLE", "BOSTON"),
    "DE": ("BERLIN", "MÜNCHEN", "KÖLN", "HAMBURG", "DÜSSELDORF"),
    "GB": ("LONDON", "LEEDS", "BRISTOL", "MANCHESTER"),
    "JP": ("TOKYO", "OSAKA", "NAGOYA"),
    "KW": ("KUWAIT CITY", "HAWALLI", "SALMIYA"),
}
_STREETS = ("MAIN ST", "HAUPTSTRASSE", "HIGH STREET", "STATION RD", "MARKET SQ", "PARK AVE")
_LOCAL_PARTS = ("billing", "accounts", "finance", "ap", "invoices")
_BAD_EMAILS = ("billing.example.com", "ap@@example.com", "finance@example", "accounts@ example.com", "n/a")
_BAD_TAX_IDS = ("", "DE12345", "XX-0000", "TBD", "000")
_BAD_AMOUNTS = ("N/A", "12.34.56", "1O0.00", "#VALUE!")


def _ascii(word: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()


def mojibake(text: str) -> str:
    """UTF-8 bytes read as Windows-1252: what a Latin-1 legacy export does to ``MÜLLER`` (``MÃœLLER``)."""
    return text.encode("utf-8").decode("cp1252")


@dataclass
class LegacyDatabase:
    tables: dict[str, pl.DataFrame]
    manifest: pl.DataFrame  # TABLE, RECORD_ID, DEFECT
    seed: int
    customers: int
    stats: dict[str, int] = field(default_factory=dict)


def _pick(rng: np.random.Generator, n: int, choices: tuple[str, ...] | list[str]) -> pl.Series:
    return pl.Series(list(choices), dtype=pl.String).gather(rng.integers(0, len(choices), n))


def _prefixed(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return pl.select(
        pl.lit(prefix) + pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    ).to_series()


def _ymd(days: np.ndarray) -> pl.Series:
    """Days since the epoch -> ``YYYYMMDD`` text."""
    return pl.Series(days.astype("datetime64[D]")).dt.strftime("%Y%m%d")


def _amounts(minor: np.ndarray, exponents: np.ndarray, style: np.ndarray, euro: np.ndarray) -> pl.Series:
    """Minor units as legacy text: plain ``1234.50``, US ``1,234.50``, European ``1.234,50`` (EUR rows),
    right-aligned in 14 columns. Currencies without decimals are always plain (``72000``)."""
    df = pl.DataFrame({"m": minor.astype(np.int64), "e": exponents.astype(np.int64), "s": style, "eu": euro})
    a = pl.col("m").abs()
    scale = pl.lit(10).pow(pl.col("e"))
    ip = a // scale
    fp = (a % scale).cast(pl.String).str.zfill(pl.col("e"))
    grouped = pl.when((ip >= 1000) & (ip < 1_000_000)).then(
        (ip // 1000).cast(pl.String) + pl.lit("\x00") + (ip % 1000).cast(pl.String).str.zfill(3)
    )
    plain_ip = ip.cast(pl.String)
    sign = pl.when(pl.col("m") < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    us = grouped.otherwise(plain_ip).str.replace("\x00", ",", literal=True) + "." + fp
    eu = grouped.otherwise(plain_ip).str.replace("\x00", ".", literal=True) + "," + fp
    plain = plain_ip + "." + fp
    text = (
        pl.when(pl.col("e") == 0)
        .then(plain_ip)
        .when(pl.col("s") == 1)
        .then(us)
        .when((pl.col("s") == 2) & pl.col("eu"))
        .then(eu)
        .otherwise(plain)
    )
    out = pl.when(pl.col("s") == 3).then((sign + text).str.pad_start(14)).otherwise(sign + text)
    return df.select(out.alias("a")).to_series()


def _add_months(days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Days since epoch plus whole months (days of month are <= 28 here, so no clamping)."""
    d = days.astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    dom = (d - month).astype(np.int64)
    return ((month + months.astype("timedelta64[M]")).astype("datetime64[D]") + dom).astype(np.int64)


def _phone_pools(seed: int) -> tuple[dict[str, list[str]], list[str]]:
    """Valid numbers per country written the way people type them, and strings no country accepts."""
    import phonenumbers

    rng = np.random.default_rng(seed)
    formats = (
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.E164,
    )
    pools: dict[str, list[str]] = {}
    for country in COUNTRY_NAMES:
        example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.FIXED_LINE)
        assert example is not None
        national = str(example.national_number)
        pool: list[str] = []
        while len(pool) < 60:
            digits = national[:-4] + "".join(str(d) for d in rng.integers(0, 10, 4))
            number = phonenumbers.parse(f"+{example.country_code}{digits}")
            if phonenumbers.is_valid_number(number):
                pool.append(phonenumbers.format_number(number, formats[len(pool) % 3]))
        pools[country] = pool
    candidates = ["12345", "0000000", "555-CALL-NOW", "+1 555", "99 99", "TEL?", "000-000", "1"]

    def valid_anywhere(text: str) -> bool:
        for country in COUNTRY_NAMES:
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(text, country)):
                    return True
            except phonenumbers.NumberParseException:
                continue
        return False

    # Only strings no country of the extract accepts: the manifest must be the truth.
    return pools, [c for c in candidates if not valid_anywhere(c)]


def generate(customers: int, seed: int = 7, rates: Mapping[str, float] | None = None) -> LegacyDatabase:
    """The whole database for ``customers`` legacy accounts (duplicates come on top), deterministic by seed."""
    rates = {**DEFECT_RATES, **(rates or {})}
    rng = np.random.default_rng(seed)
    n = customers
    manifest: list[pl.DataFrame] = []

    def note(table: str, ids: pl.Series, defect: str) -> None:
        if len(ids):
            manifest.append(pl.DataFrame({"TABLE": table, "RECORD_ID": ids, "DEFECT": defect}))

    as_of = int(np.datetime64(AS_OF, "D").astype(np.int64))
    # ---------------------------------------------------------------- customers
    cur_idx = rng.choice(len(CURRENCIES), n, p=CURRENCY_WEIGHTS)
    currency = pl.Series(list(CURRENCIES)).gather(cur_idx)
    country = currency.replace_strict(COUNTRY)
    # One customer-level defect at most per record: a single draw over the classes.
    probs = [rates[c] for c in _CUSTOMER_DEFECTS]
    draw = rng.choice(len(probs) + 1, n, p=[*probs, 1 - sum(probs)])
    first_idx = rng.integers(0, len(_FIRST), n)
    non_ascii = np.array([any(ord(ch) > 127 for ch in w) for w in _FIRST])
    damaged = draw == _CUSTOMER_DEFECTS.index("damaged_encoding")
    # A damaged record must have something to damage: its first word is one with accents.
    accented = np.flatnonzero(non_ascii)
    first_idx[damaged] = accented[rng.integers(0, len(accented), int(damaged.sum()))]
    first = pl.Series(list(_FIRST)).gather(first_idx)
    first_bad = pl.Series([mojibake(w) for w in _FIRST]).gather(first_idx)
    second = _pick(rng, n, _SECOND)
    suffix_col = pl.Series([""] * n, dtype=pl.String)
    for iso, options in _SUFFIX.items():
        suffix_col = pl.select(
            pl.when(country == iso).then(_pick(rng, n, options)).otherwise(suffix_col)
        ).to_series()
    name = pl.select(
        pl.when(pl.Series(damaged)).then(first_bad).otherwise(first) + " " + second + " " + suffix_col
    ).to_series()
    idx = np.arange(n)
    cust_no = _prefixed("C", idx + 1, 8)
    domain = (
        pl.Series([_ascii(w) for w in _FIRST]).gather(first_idx) + "-" + second.str.to_lowercase() + ".com"
    )
    local = _pick(rng, n, _LOCAL_PARTS) + "." + pl.Series(idx + 1).cast(pl.String)
    email = local + "@" + domain
    upper = rng.random(n) < 0.3  # legacy screens upper-cased some addresses
    email = pl.select(pl.when(pl.Series(upper)).then(email.str.to_uppercase()).otherwise(email)).to_series()
    bad_email = draw == _CUSTOMER_DEFECTS.index("invalid_email")
    email = pl.select(
        pl.when(pl.Series(bad_email)).then(_pick(rng, n, _BAD_EMAILS)).otherwise(email)
    ).to_series()
    pools, invalid_phones = _phone_pools(seed)
    phone = pl.Series([""] * n, dtype=pl.String)
    phone_pick = rng.integers(0, 60, n)
    for c, pool in pools.items():
        mask = (country == c).to_numpy()
        phone = pl.select(
            pl.when(pl.Series(mask)).then(pl.Series(pool).gather(phone_pick)).otherwise(phone)
        ).to_series()
    bad_phone = draw == _CUSTOMER_DEFECTS.index("invalid_phone")
    phone = pl.select(
        pl.when(pl.Series(bad_phone)).then(_pick(rng, n, invalid_phones)).otherwise(phone)
    ).to_series()
    # Tax ids: unique per account (a bijection of the index), in each country's format.
    digits9 = pl.Series((idx * 7919 + 12345 + seed) % 1_000_000_000).cast(pl.String).str.zfill(9)
    digits12 = pl.Series((idx * 7919 + 12345 + seed) % 10**12).cast(pl.String).str.zfill(12)
    tax_id = pl.select(
        pl.when(country == "US")
        .then(digits9.str.slice(0, 2) + "-" + digits9.str.slice(2))
        .when(country == "DE")
        .then("DE" + digits9)
        .when(country == "GB")
        .then("GB" + digits9)
        .when(country == "JP")
        .then("T4" + digits12)
        .otherwise(digits12)
    ).to_series()
    bad_tax = draw == _CUSTOMER_DEFECTS.index("bad_tax_id")
    tax_id = pl.select(
        pl.when(pl.Series(bad_tax)).then(_pick(rng, n, _BAD_TAX_IDS)).otherwise(tax_id)
    ).to_series()
    country_name = pl.Series([""] * n, dtype=pl.String)
    symbol = pl.Series([""] * n, dtype=pl.String)
    city = pl.Series([""] * n, dtype=pl.String)
    for cur, iso in COUNTRY.items():
        mask = pl.Series((currency == cur).to_numpy())
        country_name = pl.select(
            pl.when(mask).then(_pick(rng, n, COUNTRY_NAMES[iso])).otherwise(country_name)
        ).to_series()
        symbol = pl.select(
            pl.when(mask).then(_pick(rng, n, CURRENCY_SYMBOLS[cur])).otherwise(symbol)
        ).to_series()
        city = pl.select(pl.when(mask).then(_pick(rng, n, _CITIES[iso])).otherwise(city)).to_series()
    created = as_of - rng.integers(400, 7000, n)
    customers_df = pl.DataFrame(
        {
            "CUST_NO": cust_no,
            "CUST_NM": name,
            "EMAIL_ADR": email,
            "PHONE_NO": phone,
            "TAX_ID": tax_id,
            "ADDR_LN1": pl.Series(rng.integers(1, 400, n)).cast(pl.String) + " " + _pick(rng, n, _STREETS),
            "CITY_NM": city,
            "ZIP_CD": pl.Series(rng.integers(10000, 99999, n)).cast(pl.String),
            "CTRY_NM": country_name,
            "CURR_CD": symbol,
            "CRT_DT": _ymd(created),
            "STAT_CD": pl.Series(["A"] * n, dtype=pl.String),
        }
    )
    for c in _CUSTOMER_DEFECTS:
        note("CUSTMAST", cust_no.filter(pl.Series(draw == _CUSTOMER_DEFECTS.index(c))), c)

    # ---------------------------------------------------------------- contracts
    # 1 or 2 contracts per account, on different plans; overlapping, orphan ones are added on top.
    plans = list(RATE_PLANS)
    per_customer = 1 + (rng.random(n) < 0.5)
    owner = np.repeat(idx, per_customer)
    m = len(owner)
    first_plan = rng.integers(0, 4, n)
    second_plan = (first_plan + 1 + rng.integers(0, 3, n)) % 4
    is_second = np.zeros(m, dtype=bool)
    starts = np.cumsum(per_customer) - per_customer
    is_second[starts[per_customer == 2] + 1] = True
    plan_idx = np.where(is_second, second_plan[owner], first_plan[owner])
    months = np.array([RATE_PLANS[p][1] for p in plans])[plan_idx]
    start = as_of - rng.integers(30, 3000, m)
    dom = start.astype("datetime64[D]") - start.astype("datetime64[D]").astype("datetime64[M]").astype(
        "datetime64[D]"
    )
    start = start - np.maximum(dom.astype(np.int64) - 27, 0)  # days 1..28: anniversaries exist every month
    c_cur = cur_idx[owner]
    list_price = np.array([[LIST_PRICES[p][c] for c in CURRENCIES] for p in plans])[plan_idx, c_cur]
    discount = np.where(rng.random(m) < 0.3, rng.integers(5, 31, m), 0)  # per-customer overrides
    exps = np.array([EXPONENT[c] for c in CURRENCIES])
    unit = 10 ** exps[c_cur]
    price = list_price * (100 - discount) // 100 // unit * unit  # whole units: exact in every currency
    price = np.where(price <= 0, list_price, price)
    probs_k = [rates[c] for c in _CONTRACT_DEFECTS]
    kdraw = rng.choice(len(probs_k) + 1, m, p=[*probs_k, 1 - sum(probs_k)])
    nonpos = kdraw == _CONTRACT_DEFECTS.index("nonpositive_price")
    price = np.where(nonpos, -price * rng.integers(0, 2, m), price)  # zero or negative
    plan_code = pl.Series(plans).gather(plan_idx)
    unknown = kdraw == _CONTRACT_DEFECTS.index("unknown_plan_code")
    plan_code = pl.select(
        pl.when(pl.Series(unknown)).then(_pick(rng, m, UNKNOWN_PLANS)).otherwise(plan_code)
    ).to_series()
    mismatch = kdraw == _CONTRACT_DEFECTS.index("currency_mismatch")
    k_cur = np.where(mismatch, (c_cur + 1 + rng.integers(0, 4, m)) % 5, c_cur)
    future = kdraw == _CONTRACT_DEFECTS.index("future_dated")
    start = np.where(future, as_of + rng.integers(30, 400, m), start)
    start = start - np.maximum(
        (start.astype("datetime64[D]") - start.astype("datetime64[D]").astype("datetime64[M]")).astype(
            np.int64
        )
        - 27,
        0,
    )
    # Overlaps: a second contract of the same plan for the same account, starting inside the first.
    overlap_src = np.flatnonzero((kdraw == len(probs_k)) & (rng.random(m) < rates["overlapping_contract"]))
    # Orphans: contracts whose account number exists nowhere.
    n_orphan = int(rng.binomial(m, rates["orphan_contract"]))
    # Copied from contracts with no defect of their own: an orphan carries one defect, its own.
    clean_k = np.flatnonzero(kdraw == len(probs_k))
    orphan_src = clean_k[rng.integers(0, len(clean_k), n_orphan)] if len(clean_k) else np.zeros(0, np.int64)
    src = np.concatenate([np.arange(m), overlap_src, orphan_src])
    total = len(src)
    kind = np.concatenate(
        [np.zeros(m, np.int8), np.ones(len(overlap_src), np.int8), np.full(n_orphan, 2, np.int8)]
    )
    start_all = start[src].copy()
    ov = kind == 1
    gap = np.maximum(as_of - start_all[ov] - 1, 1)
    start_all[ov] = start_all[ov] + 1 + (rng.random(int(ov.sum())) * (gap - 1)).astype(np.int64)
    start_all[ov] -= np.maximum(
        (
            start_all[ov].astype("datetime64[D]")
            - start_all[ov].astype("datetime64[D]").astype("datetime64[M]")
        ).astype(np.int64)
        - 27,
        0,
    )
    start_all[ov] = np.maximum(start_all[ov], start[src][ov] + 1)
    months_all = months[src]
    # Next bill: the first anniversary strictly after the business date (or after a future start).
    d = start_all.astype("datetime64[D]")
    ym = d.astype("datetime64[M]").astype(np.int64)
    as_ym = np.datetime64(AS_OF, "M").astype(np.int64)
    k = np.maximum((as_ym - ym) // months_all, 0)
    nxt = _add_months(start_all, k * months_all)
    k = np.where(nxt <= np.maximum(as_of, start_all), k + 1, k)
    nxt = _add_months(start_all, k * months_all)
    last_bill = _add_months(start_all, (k - 1) * months_all)
    owner_all = owner[src]
    cust_of = _prefixed("C", owner_all + 1, 8)
    orphan = kind == 2
    cust_of = pl.select(
        pl.when(pl.Series(orphan))
        .then(_prefixed("C", n + 10_000_000 + np.arange(total), 8))
        .otherwise(cust_of)
    ).to_series()
    contr_no = _prefixed("K", np.arange(1, total + 1), 9)
    k_cur_all = k_cur[src]
    price_all = price[src]
    style = rng.integers(0, 4, total)
    curr_names = pl.Series(list(CURRENCIES)).gather(k_cur_all)
    sym_k = pl.Series([""] * total, dtype=pl.String)
    for cur in CURRENCIES:
        sym_k = pl.select(
            pl.when(curr_names == cur).then(_pick(rng, total, CURRENCY_SYMBOLS[cur])).otherwise(sym_k)
        ).to_series()
    bad_amount = (kind == 0) & (kdraw[src] == len(probs_k)) & (rng.random(total) < rates["malformed_amount"])
    bad_amount &= ~np.isin(np.arange(total), overlap_src)  # an overlap's source keeps its one defect
    price_text = _amounts(price_all, exps[k_cur_all], style, (curr_names == "EUR").to_numpy())
    price_text = pl.select(
        pl.when(pl.Series(bad_amount)).then(_pick(rng, total, _BAD_AMOUNTS)).otherwise(price_text)
    ).to_series()
    plan_all = plan_code.gather(src)
    cycle = plan_all.replace_strict({p: v[2] for p, v in RATE_PLANS.items()}, default="M")
    end_text = pl.Series(np.where(rng.random(total) < 0.5, "99991231", "        "))
    contracts_df = pl.DataFrame(
        {
            "CONTR_NO": contr_no,
            "CUST_NO": cust_of,
            "PLAN_CD": plan_all,
            "CURR_CD": sym_k,
            "PRICE_AMT": price_text,
            "START_DT": _ymd(start_all),
            "END_DT": end_text,
            "NEXT_BILL_DT": _ymd(nxt),
            "BILL_CYC": cycle,
        }
    )
    base = kind == 0
    for c in _CONTRACT_DEFECTS:
        note("CONTRACT", contr_no.filter(pl.Series(base & (kdraw[src] == _CONTRACT_DEFECTS.index(c)))), c)
    note("CONTRACT", contr_no.filter(pl.Series(ov)), "overlapping_contract")
    note("CONTRACT", contr_no.filter(pl.Series(orphan)), "orphan_contract")
    note("CONTRACT", contr_no.filter(pl.Series(bad_amount)), "malformed_amount")

    # ---------------------------------------------------------------- invoices, lines, payments
    # The last period each started contract was billed for; lines split its amount in 1 to 3 parts.
    billed = np.flatnonzero(start_all <= as_of)
    ni = len(billed)
    inv_no = _prefixed("I", np.arange(1, ni + 1), 10)
    net = np.abs(list_price[src][billed]).astype(np.int64)
    inv_cur = k_cur_all[billed]
    iso_country = np.array([COUNTRY[c] for c in CURRENCIES])[cur_idx[owner_all[billed]]]
    rate = np.vectorize(TAX_RATE_PCT.get)(iso_country) if ni else np.zeros(0, np.int64)
    tax = net * rate // 100
    nlines = rng.integers(1, 4, ni)
    line_inv = np.repeat(np.arange(ni), nlines)
    share = rng.random(len(line_inv)) + 0.2
    share_sum = np.bincount(line_inv, weights=share, minlength=ni)
    line_amt = np.floor(net[line_inv] * share / share_sum[line_inv]).astype(np.int64)
    first_line = np.cumsum(nlines) - nlines
    line_amt[first_line] += net - np.bincount(line_inv, weights=line_amt, minlength=ni).astype(np.int64)
    bad_total = rng.random(ni) < rates["invoice_total_mismatch"]
    header_net = net + np.where(
        bad_total, rng.integers(1, 5000, ni) * np.where(rng.random(ni) < 0.5, -1, 1), 0
    )
    inv_future = rng.random(ni) < rates["future_dated"] * 0.5
    inv_future &= ~bad_total
    inv_day = np.where(inv_future, as_of + rng.integers(30, 400, ni), last_bill[billed])
    inv_exp = exps[inv_cur]
    inv_eu = (pl.Series(list(CURRENCIES)).gather(inv_cur) == "EUR").to_numpy()
    inv_style = rng.integers(0, 4, ni)
    invoices_df = pl.DataFrame(
        {
            "INV_NO": inv_no,
            "CUST_NO": cust_of.gather(billed),
            "INV_DT": _ymd(inv_day),
            "CURR_CD": sym_k.gather(billed),
            "NET_AMT": _amounts(header_net, inv_exp, inv_style, inv_eu),
            "TAX_AMT": _amounts(tax, inv_exp, inv_style, inv_eu),
            "TOT_AMT": _amounts(header_net + tax, inv_exp, inv_style, inv_eu),
        }
    )
    note("INVHDR", inv_no.filter(pl.Series(bad_total)), "invoice_total_mismatch")
    note("INVHDR", inv_no.filter(pl.Series(inv_future)), "future_dated")
    lines_df = pl.DataFrame(
        {
            "INV_NO": inv_no.gather(line_inv),
            "LINE_NO": pl.Series(np.arange(len(line_inv)) - first_line[line_inv] + 1)
            .cast(pl.String)
            .str.zfill(3),
            "CONTR_NO": contr_no.gather(billed[line_inv]),
            "LINE_DESC": plan_all.gather(billed[line_inv]).str.pad_end(12),
            "LINE_AMT": _amounts(line_amt, inv_exp[line_inv], inv_style[line_inv], inv_eu[line_inv]),
        }
    )
    paid = rng.random(ni) < 0.7
    pay_idx = np.flatnonzero(paid)
    payments_df = pl.DataFrame(
        {
            "PAY_NO": _prefixed("P", np.arange(1, len(pay_idx) + 1), 10),
            "INV_NO": inv_no.gather(pay_idx),
            "PAY_DT": _ymd(np.minimum(inv_day[pay_idx] + 14, as_of)),
            "PAY_AMT": _amounts(
                net[pay_idx] + tax[pay_idx],
                inv_exp[pay_idx],
                np.zeros(len(pay_idx), np.int64),
                inv_eu[pay_idx],
            ),
        }
    )
    # Open balance: the unpaid invoices of an account in its own currency (others are in no ledger here).
    own = (~paid) & (inv_cur == cur_idx[owner_all[billed]]) & ~orphan[billed]
    open_minor = np.bincount(owner_all[billed][own], weights=(net + tax)[own], minlength=n).astype(np.int64)

    # ---------------------------------------------------------------- duplicates (on top of n)
    n_dup = int(rng.binomial(n, rates["duplicate_customer"]))
    clean_customers = np.flatnonzero(draw == len(probs))
    originals = rng.choice(clean_customers, n_dup, replace=False) if n_dup else np.zeros(0, np.int64)
    dup_no = _prefixed("C", n + 1 + np.arange(n_dup), 8)
    orig = customers_df[originals.tolist()] if n_dup else customers_df.head(0)
    variant = rng.integers(0, 4, n_dup)
    dup_name = (
        pl.DataFrame({"nm": orig["CUST_NM"], "v": variant})
        .select(
            pl.when(pl.col("v") == 0)
            .then(pl.col("nm").str.to_titlecase())
            .when(pl.col("v") == 1)
            .then(pl.col("nm").str.replace(" ", "  ", literal=True))
            .when(pl.col("v") == 2)
            .then(pl.col("nm") + ".")
            .otherwise(pl.col("nm").str.replace(r" \S+$", ""))
        )
        .to_series()
    )
    dups = orig.with_columns(
        CUST_NO=dup_no,
        CUST_NM=dup_name,
        EMAIL_ADR=orig["EMAIL_ADR"].str.to_lowercase(),
        CRT_DT=_ymd(np.minimum(created[originals] + rng.integers(30, 300, n_dup), as_of - 1)),
    )
    note("CUSTMAST", dup_no, "duplicate_customer")
    all_open = np.concatenate([open_minor, np.zeros(n_dup, np.int64)])
    all_cur = np.concatenate([cur_idx, cur_idx[originals]])
    customers_df = pl.concat([customers_df, dups])
    cstyle = rng.integers(0, 4, n + n_dup)
    customers_df = customers_df.with_columns(OPEN_BAL=_amounts(all_open, exps[all_cur], cstyle, all_cur == 1))
    ledger = (
        pl.DataFrame({"c": pl.Series(list(CURRENCIES)).gather(all_cur), "m": all_open})
        .group_by("c")
        .agg(pl.col("m").sum())
    )
    ledger = ledger.sort("c").with_columns(
        BAL_AMT=pl.struct("c", "m").map_elements(
            lambda r: _plain(int(r["m"]), EXPONENT[r["c"]]), return_dtype=pl.String
        )
    )
    glbal = ledger.select(CURR_CD=pl.col("c"), OPEN_BAL=pl.col("BAL_AMT"))
    # Legacy CHAR columns: space padded to the column width.
    customers_df = customers_df.with_columns(
        pl.col("CUST_NM").str.pad_end(40),
        pl.col("ADDR_LN1").str.pad_end(30),
        pl.col("CITY_NM").str.pad_end(20),
        pl.col("CTRY_NM").str.pad_end(25),
        pl.col("EMAIL_ADR").str.pad_end(50),
    )
    # Shuffle rows so that duplicates do not sit at the end (a legacy table is in no useful order).
    customers_df = customers_df.sample(fraction=1.0, shuffle=True, seed=seed)
    rateplan = pl.DataFrame(
        {
            "PLAN_CD": [*RATE_PLANS, *RETIRED_PLANS],
            "PLAN_DESC": [*(v[0] for v in RATE_PLANS.values()), "PLATFORM (RETIRED 2019)"],
            "BILL_CYC": [*(v[2] for v in RATE_PLANS.values()), "M"],
        }
    )
    tables = {
        "CUSTMAST": customers_df,
        "CONTRACT": contracts_df,
        "RATEPLAN": rateplan,
        "INVHDR": invoices_df,
        "INVLINE": lines_df,
        "PAYMENT": payments_df,
        "GLBAL": glbal,
    }
    manifest_df = (
        pl.concat(manifest)
        if manifest
        else pl.DataFrame(schema={"TABLE": pl.String, "RECORD_ID": pl.String, "DEFECT": pl.String})
    )
    stats = {name: df.height for name, df in tables.items()}
    return LegacyDatabase(tables, manifest_df.sort("TABLE", "RECORD_ID"), seed, n, stats)


def _plain(minor: int, exponent: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    if exponent == 0:
        return f"{sign}{minor}"
    return f"{sign}{minor // 10**exponent}.{minor % 10**exponent:0{exponent}d}"


# ------------------------------------------------------------------------------------------- writing
def write_sql(db: LegacyDatabase, url: str, *, chunk: int = 50_000) -> None:
    """All tables into a SQL database through SQLAlchemy (every column text, as the legacy schema is),
    replacing tables of the same names. SQLite, MariaDB (pymysql) and PostgreSQL (psycopg) are tested."""
    from sqlalchemy import Column, MetaData, String, Table, create_engine

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    elif url.startswith(("mysql://", "mariadb://")):
        url = "mysql+pymysql://" + url.split("://", 1)[1]
    engine = create_engine(url)
    meta = MetaData()
    for name, df in db.tables.items():
        Table(name, meta, *(Column(col, String(60)) for col in df.columns))
    Table(
        "MANIFEST",
        meta,
        Column("TABLE_NM", String(20)),
        Column("RECORD_ID", String(20)),
        Column("DEFECT", String(40)),
    )
    try:
        meta.drop_all(engine)
        meta.create_all(engine)
        frames = {**db.tables, "MANIFEST": db.manifest.rename({"TABLE": "TABLE_NM"})}
        with engine.begin() as conn:
            for name, df in frames.items():
                table = meta.tables[name]
                for offset in range(0, df.height, chunk):
                    rows = df.slice(offset, chunk).to_dicts()
                    if rows:
                        conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def export(db: LegacyDatabase, directory: Path, formats: tuple[str, ...] = ("parquet",)) -> list[Path]:
    """Each table as ``<TABLE>.parquet`` and/or ``<TABLE>.csv``, plus ``manifest.parquet``/``.csv``."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    frames = {**db.tables, "manifest": db.manifest}
    for name, df in frames.items():
        if "parquet" in formats:
            path = directory / f"{name}.parquet"
            df.write_parquet(path)
            written.append(path)
        if "csv" in formats:
            path = directory / f"{name}.csv"
            df.write_csv(path)
            written.append(path)
    return written
