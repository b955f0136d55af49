"""The legacy system's own billing run, with its own documented rules (vectorised, deterministic).

The legacy system bills every active contract on its bill dates (``NEXT_BILL_DT`` and each anniversary after
it), in advance of nothing: the line of a bill date covers the period that ends on it, as Lago's anniversary
billing does after the migration. Its rules differ from Lago's the way real billing systems differ:

- **cut-off**: the legacy run of cycle ``YYYY-MM`` bills the dates after the 25th of the month before up to
  the 25th of the month (``CUTOFF_DAY``); Lago's cycle is the calendar month. A bill date on the 26th to the
  28th falls into the next legacy cycle (a *timing* difference).
- **proration**: a period cut short by the contract's end (``END_DT``, inclusive) is prorated by 30-day
  months (``price x days / (30 x months)``); Lago prorates by the period's actual days.
- **minimum charge**: a prorated line below ``MINIMUM_CHARGE_PCT`` of the plan's list price is raised to it.
- **tax**: rounded down per line at the account country's rate, the invoice's tax being the sum of its
  lines; Lago rounds half up once per invoice.
- **price overrides**: the contract's own ``PRICE_AMT`` (a negotiated price) wins over the catalogue price.

A cutover is the legacy system's ``MIGRFLAG`` table: one row per event (``M`` migrated: the legacy run
stops billing the account from ``EFF_DT``; ``A`` active again: it resumes from ``EFF_DT``), with who, when
and why. The event that applies to a line is the last one on or before the day the line fell due, its
``period_end``: the bill date, or, for the short last period of an ended contract, the day after the end
(the day Lago bills that period, as its subscription ends; the legacy run bills it later, at its next bill
date). Two dates on the contract, empty unless a cutover set them, hand single contracts over:

- ``BILL_THRU_DT``, set by a rollback: the new engine billed this contract's periods ending on or before
  it, so the legacy run bills none of them, whatever ``MIGRFLAG`` says;
- ``KEEP_THRU_DT``, set by a cutover that leaves a contract's last period to the legacy system (the
  contract ended before the new engine could take it back): the legacy run bills the periods ending on or
  before it although the account is migrated.
 ``plant_mapping_errors`` corrupts a migration's mapped contracts the way a wrong mapping does (a
plan mapped to the wrong price, a discount lost) and returns the ground truth.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from lead2cash.sandbox.legacy.generator import (
    COUNTRY_NAMES,
    CURRENCY_SYMBOLS,
    EXPONENT,
    LIST_PRICES,
    RATE_PLANS,
    TAX_RATE_PCT,
)

CUTOFF_DAY = 25
MINIMUM_CHARGE_PCT = 20
HANDOVER_COLUMNS = {"BILL_THRU_DT": "billed_thru", "KEEP_THRU_DT": "keep_thru"}
MIGRFLAG_SCHEMA = {
    "CUST_NO": pl.String,
    "STAT": pl.String,
    "EFF_DT": pl.String,
    "BY_USR": pl.String,
    "AT_TS": pl.String,
    "REASON": pl.String,
}
LINE_SCHEMA = {
    "invoice_id": pl.String,
    "customer_id": pl.String,
    "contract_id": pl.String,
    "segment": pl.String,
    "plan": pl.String,
    "currency": pl.String,
    "period_start": pl.Date,
    "period_end": pl.Date,
    "bill_date": pl.Date,
    "cycle": pl.String,
    "quantity": pl.Int64,
    "unit_price": pl.Int64,
    "amount": pl.Int64,
    "tax_rate_bp": pl.Int64,
    "tax": pl.Int64,
    "days": pl.Int64,
    "full_days": pl.Int64,
}
_SYMBOL = {s: cur for cur, symbols in CURRENCY_SYMBOLS.items() for s in symbols}
_COUNTRY = {name: iso for iso, names in COUNTRY_NAMES.items() for name in names}
_MONTHS = {code: months for code, (_, months, _) in RATE_PLANS.items()}
_PRODUCT = {code: product for code, (product, _, _) in RATE_PLANS.items()}


def parse_amount(col: str, exponent: pl.Expr) -> pl.Expr:
    """Legacy amount text (``1234.50``, ``1,234.50``, ``1.234,50``, padded) -> minor units; null if malformed."""
    t = pl.col(col).str.strip_chars()
    eu = t.str.contains(r",\d{1,3}$") & ~t.str.contains(r"\.\d{1,3}$")
    norm = pl.when(eu).then(t.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
    norm = norm.otherwise(t.str.replace_all(",", "", literal=True))
    ok = norm.str.contains(r"^-?\d+(\.\d+)?$")
    whole = norm.str.extract(r"^-?(\d+)", 1).cast(pl.Int64, strict=False)
    frac = norm.str.extract(r"\.(\d+)$", 1).fill_null("")
    frac_minor = (frac + pl.lit("000")).str.slice(0, exponent).cast(pl.Int64, strict=False).fill_null(0)
    sign = pl.when(norm.str.starts_with("-")).then(-1).otherwise(1)
    minor = sign * (whole * pl.lit(10).pow(exponent) + frac_minor)
    return pl.when(ok).then(minor).otherwise(None)


def cycle_bounds(cycle: str) -> tuple[dt.date, dt.date]:
    """The legacy cycle ``YYYY-MM``: bill dates in (25th of the month before, 25th of the month]."""
    year, month = (int(x) for x in cycle.split("-"))
    prev = dt.date(year - (month == 1), 12 if month == 1 else month - 1, CUTOFF_DAY)
    return prev + dt.timedelta(days=1), dt.date(year, month, CUTOFF_DAY)


def _cycle_of(bill: pl.Expr) -> pl.Expr:
    shifted = pl.when(bill.dt.day() > CUTOFF_DAY).then(bill.dt.offset_by("1mo")).otherwise(bill)
    return shifted.dt.strftime("%Y-%m")


def contracts(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The contracts the legacy run can bill, parsed with the legacy system's own reading of its columns."""
    cust = tables["CUSTMAST"].select(
        pl.col("CUST_NO").str.strip_chars().alias("customer_id"),
        pl.col("CTRY_NM").str.strip_chars().replace_strict(_COUNTRY, default=None).alias("segment"),
    )
    contract = tables["CONTRACT"]
    handover = [
        (
            pl.col(c).str.strip_chars().str.strptime(pl.Date, "%Y%m%d", strict=False)
            if c in contract.columns
            else pl.lit(None, pl.Date)
        ).alias(name)
        for c, name in HANDOVER_COLUMNS.items()
    ]
    k = contract.select(
        pl.col("CONTR_NO").str.strip_chars().alias("contract_id"),
        pl.col("CUST_NO").str.strip_chars().alias("customer_id"),
        pl.col("PLAN_CD").str.strip_chars().alias("plan_code"),
        pl.col("CURR_CD").str.strip_chars().replace_strict(_SYMBOL, default=None).alias("currency"),
        pl.col("PRICE_AMT"),
        pl.col("START_DT").str.strptime(pl.Date, "%Y%m%d", strict=False).alias("start_on"),
        pl.col("END_DT").str.strip_chars().str.strptime(pl.Date, "%Y%m%d", strict=False).alias("end_on"),
        pl.col("NEXT_BILL_DT").str.strptime(pl.Date, "%Y%m%d", strict=False).alias("next_bill"),
        *handover,
    )
    k = k.filter(pl.col("plan_code").is_in(list(RATE_PLANS)) & pl.col("currency").is_not_null())
    k = k.with_columns(
        pl.col("currency").replace_strict(EXPONENT, return_dtype=pl.Int64).alias("_exp"),
        pl.col("plan_code").replace_strict(_MONTHS, return_dtype=pl.Int64).alias("months"),
        pl.col("plan_code").replace_strict(_PRODUCT).alias("plan"),
    )
    k = k.with_columns(parse_amount("PRICE_AMT", pl.col("_exp")).alias("price")).drop("PRICE_AMT", "_exp")
    list_price = pl.DataFrame(
        [(p, c, v) for p, prices in LIST_PRICES.items() for c, v in prices.items()],
        schema={"plan_code": pl.String, "currency": pl.String, "list_price": pl.Int64},
        orient="row",
    )
    k = k.join(list_price, on=["plan_code", "currency"], how="left")
    return k.join(cust.unique("customer_id", keep="first"), on="customer_id", how="inner").filter(
        pl.col("price") > 0
    )


def _status_at(flags: pl.DataFrame | None, lines: pl.DataFrame) -> pl.Series:
    """Whether the account is billed by the legacy system on the day each line fell due (its
    ``period_end``): the last MIGRFLAG event on or before it."""
    if flags is None or flags.height == 0:
        return pl.Series([True] * lines.height)
    ev = (
        flags.select(
            pl.col("CUST_NO").str.strip_chars().alias("customer_id"),
            pl.col("EFF_DT").str.strptime(pl.Date, "%Y%m%d").alias("due"),
            (pl.col("STAT") == "A").alias("_active"),
            pl.int_range(pl.len()).alias("_seq"),
        )
        .sort("due", "_seq")
        # Two events of one account on one day (a rollback back to the cutover's day): the later one holds.
        .unique(["customer_id", "due"], keep="last", maintain_order=True)
    )
    probe = lines.select(
        "customer_id", pl.col("period_end").alias("due"), pl.int_range(pl.len()).alias("_row")
    ).sort("due")
    joined = probe.join_asof(
        ev.drop("_seq"), on="due", by="customer_id", strategy="backward", check_sortedness=False
    )  # both sorted by date, so within each account too
    return joined.sort("_row")["_active"].fill_null(True)


def bill(
    tables: dict[str, pl.DataFrame], cycles: list[str], *, flags: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Invoice lines of the legacy runs of ``cycles`` (``YYYY-MM``), in ``LINE_SCHEMA``."""
    if flags is None:
        flags = tables.get("MIGRFLAG")
    k = contracts(tables)
    bounds = [cycle_bounds(c) for c in cycles]
    first, last = min(b[0] for b in bounds), max(b[1] for b in bounds)
    horizon = int(((last - first).days // 28) + 2)
    steps = pl.DataFrame({"_k": np.arange(horizon + 13, dtype=np.int64)})
    lines = k.join(steps, how="cross").with_columns(
        pl.col("next_bill")
        .dt.offset_by(pl.format("{}mo", pl.col("_k") * pl.col("months")))
        .alias("bill_date")
    )
    lines = lines.filter(pl.col("bill_date").is_between(first, last))
    lines = lines.with_columns(
        pl.col("bill_date").dt.offset_by(pl.format("-{}mo", pl.col("months"))).alias("period_start"),
        _cycle_of(pl.col("bill_date")).alias("cycle"),
    ).filter(pl.col("cycle").is_in(cycles))
    # A contract's end (inclusive) cuts its last period short; a period after the end is not billed.
    ends = pl.col("end_on").is_not_null() & (pl.col("end_on") < pl.col("bill_date") - pl.duration(days=1))
    lines = lines.filter(~(pl.col("end_on").is_not_null() & (pl.col("end_on") < pl.col("period_start"))))
    lines = lines.with_columns(
        pl.when(ends)
        .then(pl.col("end_on") + pl.duration(days=1))
        .otherwise(pl.col("bill_date"))
        .alias("period_end"),
        ((pl.col("bill_date") - pl.col("period_start")).dt.total_days()).alias("full_days"),
    ).with_columns((pl.col("period_end") - pl.col("period_start")).dt.total_days().alias("days"))
    partial = pl.col("days") < pl.col("full_days")
    basis = pl.col("months") * 30
    prorated = (pl.col("price") * pl.col("days") * 2 + basis) // (basis * 2)  # half up, 30-day months
    minimum = pl.col("list_price") * MINIMUM_CHARGE_PCT // 100
    amount = pl.when(partial).then(pl.max_horizontal(prorated, minimum)).otherwise(pl.col("price"))
    rate = pl.col("segment").replace_strict(TAX_RATE_PCT, default=0, return_dtype=pl.Int64)
    lines = lines.with_columns(amount.alias("amount"), (rate * 100).alias("tax_rate_bp"))
    lines = lines.with_columns((pl.col("amount") * pl.col("tax_rate_bp") // 10_000).alias("tax"))  # down
    # The handover dates of single contracts win over the account's MIGRFLAG: what the new engine billed is
    # never billed again, what was left to the legacy system is billed by it.
    kept = pl.col("keep_thru").is_not_null() & (pl.col("period_end") <= pl.col("keep_thru"))
    lines = lines.with_columns(pl.Series("_flag", _status_at(flags, lines)))
    lines = lines.filter(
        (pl.col("_flag") | kept)
        & (pl.col("billed_thru").is_null() | (pl.col("period_end") > pl.col("billed_thru")))
    )
    inv = pl.format(
        "L{}-{}", pl.col("customer_id"), pl.col("bill_date").dt.strftime("%Y%m%d")
    )  # one invoice per account and bill date
    return lines.select(
        inv.alias("invoice_id"),
        "customer_id",
        "contract_id",
        pl.col("segment").fill_null("??"),
        "plan",
        "currency",
        "period_start",
        "period_end",
        "bill_date",
        "cycle",
        pl.lit(1, pl.Int64).alias("quantity"),
        pl.col("price").alias("unit_price"),
        "amount",
        "tax_rate_bp",
        "tax",
        "days",
        "full_days",
    ).sort("customer_id", "contract_id", "period_start")


def as_if_never_migrated(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The tables without MIGRFLAG and the contracts' handover dates: what the legacy run would bill had no
    cutover happened (every period due)."""
    out = {k: v for k, v in tables.items() if k != "MIGRFLAG"}
    out["CONTRACT"] = out["CONTRACT"].drop(list(HANDOVER_COLUMNS), strict=False)
    return out


def bill_cycle(tables: dict[str, pl.DataFrame], cycle: str) -> pl.DataFrame:
    """The legacy run of one cycle ``YYYY-MM``."""
    return bill(tables, [cycle])


def read_tables(directory: Path) -> dict[str, pl.DataFrame]:
    """The legacy tables of an export directory (``<TABLE>.parquet``), MIGRFLAG included when present."""
    tables = {}
    for name in ("CUSTMAST", "CONTRACT", "MIGRFLAG"):
        path = directory / f"{name}.parquet"
        if path.exists():
            tables[name] = pl.read_parquet(path)
    return tables


def flag_customers(
    directory: Path, customers: list[str], status: str, effective: dt.date, by: str, reason: str, at: str
) -> int:
    """Append MIGRFLAG events (``M`` stop billing, ``A`` resume) for ``customers`` from ``effective``."""
    if status not in ("M", "A"):
        raise ValueError(f"unknown MIGRFLAG status {status!r}")
    path = directory / "MIGRFLAG.parquet"
    old = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=MIGRFLAG_SCHEMA)
    new = pl.DataFrame(
        {
            "CUST_NO": customers,
            "STAT": [status] * len(customers),
            "EFF_DT": [effective.strftime("%Y%m%d")] * len(customers),
            "BY_USR": [by] * len(customers),
            "AT_TS": [at] * len(customers),
            "REASON": [reason] * len(customers),
        },
        schema=MIGRFLAG_SCHEMA,
    )
    tmp = path.with_suffix(".tmp")
    pl.concat([old, new]).write_parquet(tmp)
    tmp.replace(path)
    return new.height


def set_contract_dates(directory: Path, column: str, dates: dict[str, dt.date]) -> int:
    """Sets a handover date (``BILL_THRU_DT`` or ``KEEP_THRU_DT``) on the contracts of ``dates``; a date never
    moves back (a later rollback or cutover only extends what was handed over)."""
    if column not in HANDOVER_COLUMNS:
        raise ValueError(f"unknown handover column {column!r}")
    path = directory / "CONTRACT.parquet"
    k = pl.read_parquet(path)
    if column not in k.columns:
        k = k.with_columns(pl.lit("", pl.String).alias(column))
    new = pl.DataFrame(
        {"_no": list(dates), "_new": [d.strftime("%Y%m%d") for d in dates.values()]},
        schema={"_no": pl.String, "_new": pl.String},
    )
    k = k.with_columns(pl.col("CONTR_NO").str.strip_chars().alias("_no")).join(new, on="_no", how="left")
    old = pl.col(column).str.strip_chars()
    k = k.with_columns(
        pl.when(pl.col("_new").is_not_null() & ((old == "") | (pl.col("_new") > old)))
        .then(pl.col("_new"))
        .otherwise(pl.col(column))
        .alias(column)
    ).drop("_no", "_new")
    tmp = path.with_suffix(".tmp")
    k.write_parquet(tmp)
    tmp.replace(path)
    return new.height


def plan_cancellations(tables: dict[str, pl.DataFrame], cycle: str, rate: float, seed: int) -> list[str]:
    """Ends a share of the open monthly contracts inside the month ``cycle`` (a customer cancelling:
    ``END_DT`` set between the month's 2nd day and two days before the bill date, so both systems bill a
    short last period). Mutates ``tables["CONTRACT"]``; returns the contracts ended."""
    rng = np.random.default_rng(seed)
    k = tables["CONTRACT"]
    nxt = k["NEXT_BILL_DT"].str.strptime(pl.Date, "%Y%m%d", strict=False)
    year, month = (int(x) for x in cycle.split("-"))
    month_start = dt.date(year, month, 1)
    eligible = (
        (nxt >= month_start + dt.timedelta(days=5))
        & (nxt <= dt.date(year, month, CUTOFF_DAY))
        & k["PLAN_CD"].is_in(["PLATBAS", "SEATADD"])
        & (k["END_DT"].str.strip_chars().is_in(["", "99991231"]))
    ).fill_null(False)
    pick = eligible.to_numpy() & (rng.random(k.height) < rate)
    room = np.maximum(
        (
            nxt.fill_null(month_start).to_numpy().astype("datetime64[D]") - np.datetime64(month_start, "D")
        ).astype(np.int64)
        - 2,
        2,
    )
    end = np.datetime64(month_start, "D") + (1 + (rng.random(k.height) * (room - 1)).astype(np.int64)).astype(
        "timedelta64[D]"
    )
    end_txt = pl.select(
        pl.when(pl.Series(pick)).then(pl.Series(end).dt.strftime("%Y%m%d")).otherwise(k["END_DT"])
    ).to_series()
    tables["CONTRACT"] = k.with_columns(END_DT=end_txt)
    return k["CONTR_NO"].filter(pl.Series(pick)).str.strip_chars().to_list()


def plant_mapping_errors(mapped: pl.DataFrame, rate: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A wrong mapping on migrated contracts (``contract_id``, ``plan_code``, ``currency``, ``price`` in minor
    units): ``wrong_price`` (the plan mapped to another plan's list price) or ``discount_lost`` (the list price
    instead of the negotiated one). Returns the corrupted frame and the truth (contract_id, error, price,
    correct_price)."""
    rng = np.random.default_rng(seed)
    n = mapped.height
    pick = rng.random(n) < rate
    kind = np.where(rng.random(n) < 0.5, "wrong_price", "discount_lost")
    lp = pl.DataFrame(
        [(p, c, v) for p, prices in LIST_PRICES.items() for c, v in prices.items()],
        schema={"plan_code": pl.String, "currency": pl.String, "list_price": pl.Int64},
        orient="row",
    )
    other = {"PLATBAS": "SEATADD", "SEATADD": "PLATBAS", "PLATPRO": "SUPPPRM", "SUPPPRM": "PLATPRO"}
    lp_other = lp.rename({"plan_code": "other", "list_price": "other_price"})
    df = (
        mapped.with_columns(
            pl.Series("_pick", pick),
            pl.Series("_kind", kind),
            pl.col("plan_code").replace_strict(other, default=None).alias("other"),
        )
        .join(lp, on=["plan_code", "currency"], how="left")
        .join(lp_other, on=["other", "currency"], how="left")
    )
    # A lost discount only shows where there was one.
    lost = pl.col("_pick") & (pl.col("_kind") == "discount_lost") & (pl.col("list_price") != pl.col("price"))
    wrong = pl.col("_pick") & (pl.col("_kind") == "wrong_price") & pl.col("other_price").is_not_null()
    df = df.with_columns(
        pl.when(lost)
        .then(pl.lit("discount_lost"))
        .when(wrong)
        .then(pl.lit("wrong_price"))
        .otherwise(None)
        .alias("error"),
        pl.when(lost)
        .then(pl.col("list_price"))
        .when(wrong)
        .then(pl.col("other_price"))
        .otherwise(pl.col("price"))
        .alias("_new"),
    )
    truth = df.filter(pl.col("error").is_not_null()).select(
        "contract_id", "error", pl.col("_new").alias("price"), pl.col("price").alias("correct_price")
    )
    out = df.with_columns(pl.col("_new").alias("price")).select(mapped.columns)
    return out, truth
