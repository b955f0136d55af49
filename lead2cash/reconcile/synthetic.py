"""A generated pair of billing exports (legacy, new) with planted differences and their ground truth.

Vectorised (numpy draws, Polars columns): a million lines take seconds. Every line not planted is the same
on both sides; each planted line differs by exactly one cause, the way the two engines' rules or a wrong
migration mapping make it differ. Used by ``bench/reconcile.py`` and the classification tests.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from lead2cash.reconcile.billing import LINES

PLANTS = (
    "missing_in_new",
    "extra_in_new",
    "currency",
    "quantity",
    "proration",
    "price",
    "tax",
    "rounding",
    "timing",
)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD")
SEGMENT = {"USD": "US", "EUR": "DE", "GBP": "GB", "JPY": "JP", "KWD": "KW"}
RATE_BP = {"USD": 0, "EUR": 1900, "GBP": 2000, "JPY": 1000, "KWD": 0}
PLANS = ("PLAT-BASE", "SEAT-ADD", "SUPP-PREM", "PLAT-PRO")


def pair(
    lines: int, cycle: str = "2026-01", seed: int = 11, rate: float = 0.002
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``lines`` legacy lines of ``cycle`` and the new engine's, ``rate`` of them planted per cause.
    Returns (legacy, new, truth: contract_id, period_start, cause)."""
    rng = np.random.default_rng(seed)
    n = lines
    year, month = (int(x) for x in cycle.split("-"))
    first = np.datetime64(dt.date(year, month, 1), "D")
    cur_idx = rng.integers(0, len(CURRENCIES), n)
    cur = np.array(CURRENCIES)[cur_idx]
    rate_bp = np.array([RATE_BP[c] for c in CURRENCIES])[cur_idx]
    price = rng.integers(10, 5000, n) * 100  # whole units
    bill_day = rng.integers(0, 25, n)
    bill = first + bill_day.astype("timedelta64[D]")
    full_days = np.full(n, 31, np.int64)
    start = bill - full_days.astype("timedelta64[D]")
    kind = rng.choice(len(PLANTS) + 1, n, p=[*([rate] * len(PLANTS)), 1 - rate * len(PLANTS)])
    planted = {c: kind == i for i, c in enumerate(PLANTS)}
    days = full_days.copy()
    pro = planted["proration"]
    days[pro] = rng.integers(3, 28, int(pro.sum()))
    l_amount = np.where(pro, (price * days * 2 + 30) // 60, price)
    n_amount = np.where(pro, (price * days * 2 + full_days) // (full_days * 2), price)
    n_amount = np.where(pro & (n_amount == l_amount), n_amount + 1, n_amount)
    n_unit = price.copy()
    pr = planted["price"]
    n_unit[pr] = price[pr] * 100 // (100 - rng.integers(5, 31, int(pr.sum())))  # a discount lost
    n_amount[pr] = n_unit[pr]
    qty = np.ones(n, np.int64)
    n_qty = np.where(planted["quantity"], 2, 1)
    n_amount = np.where(planted["quantity"], l_amount * 2, n_amount)
    l_tax = l_amount * rate_bp // 10_000
    n_rate = np.where(planted["tax"], np.where(rate_bp == 0, 1600, rate_bp - 300), rate_bp)
    n_tax = (n_amount * n_rate + 5000) // 10_000
    n_tax = np.where(
        planted["rounding"],
        l_tax + 1,
        np.where(pro | pr | planted["quantity"] | planted["tax"], n_tax, l_tax),
    )
    n_cur = np.where(planted["currency"], np.array(CURRENCIES)[(cur_idx + 1) % len(CURRENCIES)], cur)
    n_bill = np.where(planted["timing"], bill + np.timedelta64(1, "D"), bill)
    ids = pl.Series(np.arange(1, n + 1))
    contract = pl.format("K{}", ids.cast(pl.String).str.zfill(9))
    customer = pl.format("C{}", (ids // 2 + 1).cast(pl.String).str.zfill(8))
    plan = pl.Series(list(PLANS)).gather(rng.integers(0, len(PLANS), n))
    cyc = pl.Series([cycle] * n)
    base = pl.DataFrame(
        {"contract_id": pl.select(contract).to_series(), "customer_id": pl.select(customer).to_series()}
    )
    common = {
        "contract_id": base["contract_id"],
        "customer_id": base["customer_id"],
        "segment": pl.Series(cur).replace_strict(SEGMENT),
        "plan": plan,
        "period_start": pl.Series(start).cast(pl.Date),
        "cycle": cyc,
        "full_days": full_days,
    }
    legacy = pl.DataFrame(
        {
            **common,
            "invoice_id": "L" + base["customer_id"],
            "currency": pl.Series(cur),
            "period_end": pl.Series(start + days.astype("timedelta64[D]")).cast(pl.Date),
            "bill_date": pl.Series(bill).cast(pl.Date),
            "quantity": qty,
            "unit_price": price,
            "amount": l_amount,
            "tax_rate_bp": rate_bp,
            "tax": l_tax,
            "days": days,
        }
    )
    new = pl.DataFrame(
        {
            **common,
            "invoice_id": "N" + base["customer_id"],
            "currency": pl.Series(n_cur),
            "period_end": pl.Series(start + days.astype("timedelta64[D]")).cast(pl.Date),
            "bill_date": pl.Series(n_bill).cast(pl.Date),
            "quantity": n_qty,
            "unit_price": n_unit,
            "amount": n_amount,
            "tax_rate_bp": n_rate,
            "tax": n_tax,
            "days": days,
        }
    )
    extra = planted["extra_in_new"]
    new = pl.concat(
        [
            new.filter(~pl.Series(planted["missing_in_new"])),
            new.filter(pl.Series(extra)).with_columns(pl.col("contract_id").str.replace("^K", "X")),
        ]
    )
    legacy = legacy.select(list(LINES))
    new = new.select(list(LINES))
    truth = pl.DataFrame(
        {
            "contract_id": base["contract_id"],
            "period_start": common["period_start"],
            "cause": pl.Series(np.array([*PLANTS, ""])[kind]),
        }
    ).filter(pl.col("cause") != "")
    truth = truth.with_columns(
        pl.when(pl.col("cause") == "extra_in_new")
        .then(pl.col("contract_id").str.replace("^K", "X"))
        .otherwise(pl.col("contract_id"))
        .alias("contract_id")
    )
    return legacy, new, truth
