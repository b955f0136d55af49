"""Parallel-run reconciliation of two billing systems' invoice lines (Polars, vectorised, exact minor units).

Both sides come as invoice lines in one shape (``LINES``): the legacy run's export and the new engine's
invoices flattened per fee. A line is the billing of one contract (subscription) for one period, so lines
are matched on ``contract_id`` + ``period_start`` (the n-th line of a key on one side with the n-th on the
other: a period billed twice shows as an extra line). Each side brings the cycles around the one reconciled,
so a line billed in another cycle because of a different cut-off is found there (a *timing* difference), not
missing. Every difference gets one cause, the first that applies, and the evidence that names it:

``missing_in_new`` / ``extra_in_new``: the line exists on one side only; ``currency``; ``quantity``;
``proration``: a period cut short, prorated differently (legacy 30-day months against actual days);
``price``: another plan or unit price (a wrong mapping, a lost discount, an override not carried) or another
amount for a full period; ``tax``: another tax rate; ``rounding``: same rate, tax differs by its rounding
(per line against per invoice); ``timing``: same money, another bill date or cycle.

Accuracy is the share of compared lines that agree or whose difference a documented rule explains (the
``explained`` causes of the configuration); ``match_rate`` the share that agree exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from lead2cash.canonical_model.currency import MINOR_UNITS

LINES: dict[str, Any] = {
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
CAUSES = (
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
COMPARED = (
    "plan",
    "currency",
    "quantity",
    "unit_price",
    "amount",
    "tax_rate_bp",
    "tax",
    "bill_date",
    "cycle",
)


@dataclass
class BillingConfig:
    threshold: Decimal = Decimal("0.995")
    tolerance: dict[str, int] = field(default_factory=lambda: {"*": 0})  # minor units per currency
    explained: tuple[str, ...] = ("proration", "rounding", "timing")
    cutover_runs: int = 3  # cutover: the last N billing runs must pass
    rollback_window_days: int = 30
    extra: dict[str, Any] = field(default_factory=dict)


def load_config(path: Path) -> BillingConfig:
    """``config/migration/reconcile.yaml``: ``billing`` (threshold, tolerance, explained) and ``cutover``."""
    data = yaml.safe_load(path.read_text()) or {}
    billing = data.get("billing") or {}
    cutover = data.get("cutover") or {}
    unknown = set(billing.get("explained") or ()) - set(CAUSES)
    if unknown:
        raise ValueError(f"{path}: billing.explained: unknown causes {sorted(unknown)}")
    return BillingConfig(
        threshold=Decimal(str(billing.get("threshold", "0.995"))),
        tolerance={str(k): int(v) for k, v in (billing.get("tolerance") or {"*": 0}).items()},
        explained=tuple(billing.get("explained") or ("proration", "rounding", "timing")),
        cutover_runs=int(cutover.get("runs", 3)),
        rollback_window_days=int(cutover.get("rollback_window_days", 30)),
        extra=data,
    )


SEED = 20_260_101
LOW_CARDINALITY = ("segment", "cycle")


def _hash(columns: Sequence[str], seed: int) -> pl.Expr:
    return pl.reduce(
        lambda acc, h: acc ^ h, [pl.col(c).cast(LINES[c]).hash(seed + i) for i, c in enumerate(columns)]
    )


# Lines per read: a Parquet row group as Polars writes them. Read batch by batch, a side's peak memory is
# one batch's columns (a streamed scan of the whole file held about 150 MiB more at a million lines, for no
# gain in time).
BATCH = 125_000


def _batches(lines: pl.LazyFrame | pl.DataFrame) -> list[pl.LazyFrame]:
    """One side in slices of ``BATCH`` lines, each with its lines' row numbers ``_i``."""
    lf = lines.lazy()
    total = lf.select(pl.len()).collect().item()
    return [lf.slice(at, BATCH).with_row_index("_i", offset=at) for at in range(0, max(total, 1), BATCH)]


def _fingerprints(lines: pl.LazyFrame | pl.DataFrame, cycle: str, scope: pl.Series | None) -> pl.DataFrame:
    """Pass 1, one side: per line its row number ``_i``, ``_k`` (a 64-bit hash of contract and period
    start), ``_fp`` (a hash of the compared columns), ``_in`` (billed in ``cycle``) and its segment. Only
    these narrow columns are kept: the scan reads just the columns they need."""
    # Each column hashed with a seed of its own and the hashes xor-ed: as collision-free as one hash of the
    # row (64 bits either way) and half the cost of hashing a struct of the columns.
    key = _hash(["contract_id", "period_start"], SEED + len(COMPARED))
    fp = _hash(COMPARED, SEED)
    narrow = [
        "_i",
        key.alias("_k"),
        fp.alias("_fp"),
        (pl.col("cycle") == cycle).fill_null(False).alias("_in"),
        pl.col("segment").cast(pl.Categorical),
    ]
    parts = []
    for part in _batches(lines):
        if scope is not None:
            part = part.filter(pl.col("contract_id").is_in(scope.implode()))
        parts.append(part.select(narrow).collect())
    return pl.concat(parts)


def _nth_line(df: pl.DataFrame) -> pl.DataFrame:
    """A period billed twice is a line of its own: the first line of a key keeps its hash on both sides,
    the n-th (n > 0) gets a hash of its own, so it meets the other side's n-th line of that key."""
    n = pl.int_range(pl.len()).over("_k")
    return df.with_columns(
        pl.when(n > 0).then(pl.struct("_k", n).hash(SEED)).otherwise(pl.col("_k")).alias("_k")
    )


def _rows(lines: pl.LazyFrame | pl.DataFrame, index: pl.Series) -> pl.DataFrame:
    """Pass 2, one side: the whole lines at row numbers ``index``. One scan, not batches: the reader applies
    the row filter as it decodes, so only the wanted lines are held (and it costs a quarter less CPU)."""
    cols = [pl.col(c).cast(t) for c, t in LINES.items()]
    return (
        lines.lazy()
        .with_row_index("_i")
        .filter(pl.col("_i").is_in(index.implode()))
        .select("_i", *cols)
        .collect()
    )


def _side(rows: pl.DataFrame, keys: pl.DataFrame, prefix: str) -> pl.LazyFrame:
    out = rows.lazy().join(keys.lazy().select("_i", "_k"), on="_i", how="inner").drop("_i")
    return out.rename({c: f"{prefix}{c}" for c in LINES})


def classify(joined: pl.LazyFrame, cfg: BillingConfig) -> pl.LazyFrame:
    """Adds ``cause`` (null: the lines agree within the tolerance) to matched ``l_``/``n_`` lines."""
    has_l, has_n = pl.col("l_amount").is_not_null(), pl.col("n_amount").is_not_null()
    cur = pl.coalesce("l_currency", "n_currency")
    default = cfg.tolerance.get("*", 0)
    tol = cur.replace_strict(cfg.tolerance, default=default, return_dtype=pl.Int64)

    def off(name: str) -> pl.Expr:
        return (pl.col(f"l_{name}") - pl.col(f"n_{name}")).abs() > tol

    def ne(name: str) -> pl.Expr:
        return pl.col(f"l_{name}").ne_missing(pl.col(f"n_{name}"))

    partial = (pl.col("l_days") < pl.col("l_full_days")).fill_null(False) | (
        pl.col("n_days") < pl.col("n_full_days")
    ).fill_null(False)
    full = ~partial
    cause = (
        pl.when(~has_n)
        .then(pl.lit("missing_in_new"))
        .when(~has_l)
        .then(pl.lit("extra_in_new"))
        .when(ne("currency"))
        .then(pl.lit("currency"))
        .when(ne("quantity"))
        .then(pl.lit("quantity"))
        .when(partial & off("amount"))
        .then(pl.lit("proration"))
        .when(ne("plan") | (full & off("unit_price").fill_null(False)) | off("amount"))
        .then(pl.lit("price"))
        .when(ne("tax_rate_bp"))
        .then(pl.lit("tax"))
        .when(off("tax"))
        .then(pl.lit("rounding"))
        .when(ne("bill_date") | ne("cycle"))
        .then(pl.lit("timing"))
        .otherwise(None)
    )
    collision = has_l & has_n & (ne("contract_id") | ne("period_start"))
    return joined.with_columns(
        cause.alias("cause"),
        collision.alias("_collision"),
        pl.coalesce("l_contract_id", "n_contract_id").alias("contract_id"),
        pl.coalesce("l_period_start", "n_period_start").alias("period_start"),
        pl.coalesce("l_customer_id", "n_customer_id").alias("customer_id"),
        pl.coalesce("l_segment", "n_segment").fill_null("??").alias("segment"),
        cur.alias("currency"),
        # Amounts in two currencies have no difference to state: the cause says which currencies.
        pl.when(ne("currency") & has_l & has_n)
        .then(None)
        .otherwise(pl.col("n_amount").fill_null(0) - pl.col("l_amount").fill_null(0))
        .alias("delta"),
        pl.when(ne("currency") & has_l & has_n)
        .then(None)
        .otherwise(pl.col("n_tax").fill_null(0) - pl.col("l_tax").fill_null(0))
        .alias("tax_delta"),
    )


MONEY_COLUMNS = ("l_amount", "n_amount", "l_unit_price", "n_unit_price", "l_tax", "n_tax")


def _in_major_units(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Adds ``_m_<column>`` for each money column: its amount in minor units written in the currency's
    major unit (406300 KWD -> ``406.300 KWD``), by integer arithmetic on the ISO 4217 digits; a currency
    outside ISO 4217 keeps its minor units, said so. The digits are looked up once per line."""
    cur = pl.col("currency")
    rows = rows.with_columns(
        cur.replace_strict(dict(MINOR_UNITS), default=None, return_dtype=pl.Int64).alias("_digits"),
        cur.replace_strict({c: 10**d for c, d in MINOR_UNITS.items()}, default=None, return_dtype=pl.Int64)
        .alias("_scale"),
    )  # fmt: skip
    digits, scale = pl.col("_digits"), pl.col("_scale")

    def major(amount: str) -> pl.Expr:
        a = pl.col(amount)
        sign = pl.when(a < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        whole = (a.abs() // scale).cast(pl.String)
        number = (
            pl.when(digits == 0)
            .then(sign + whole)
            .otherwise(sign + whole + "." + (a.abs() % scale).cast(pl.String).str.zfill(digits))
        )
        return (
            pl.when(digits.is_null())
            .then(pl.format("{} minor units of {}", a, cur))
            .otherwise(pl.format("{} {}", number, cur))
            .alias(f"_m_{amount}")
        )

    return rows.with_columns(major(c) for c in MONEY_COLUMNS)


def _major(amount: str) -> pl.Expr:
    return pl.col(f"_m_{amount}")


def _rate(bp: str) -> pl.Expr:
    """A tax rate in basis points as a percentage: 1900 -> ``19.00%``."""
    r = pl.col(bp)
    return pl.format("{}.{}%", r // 100, (r % 100).cast(pl.String).str.zfill(2))


def _evidence() -> pl.Expr:
    c = pl.col("cause")
    la, na = _major("l_amount"), _major("n_amount")
    return (
        pl.when(c == "missing_in_new")
        .then(pl.format("legacy {} billed {} on {}; the new engine has no line", "l_invoice_id", la, "l_bill_date"))
        .when(c == "extra_in_new")
        .then(pl.format("new {} billed {} on {}; the legacy run has no line", "n_invoice_id", na, "n_bill_date"))
        .when(c == "currency")
        .then(pl.format("legacy in {}, new in {}", "l_currency", "n_currency"))
        .when(c == "quantity")
        .then(pl.format("quantity legacy {}, new {}", "l_quantity", "n_quantity"))
        .when(c == "proration")
        .then(
            pl.format(
                "period {} to {}: legacy {} for {} of {} days (30-day months, minimum charge), new {} for {} days (actual days)",
                "period_start", "l_period_end", la, "l_days", "l_full_days", na, "n_days",
            )
        )
        .when(c == "price")
        .then(
            pl.format(
                "plan legacy {} new {}; unit price legacy {} new {}; amount legacy {} new {}",
                "l_plan", "n_plan", _major("l_unit_price"), _major("n_unit_price"), la, na,
            )
        )
        .when(c == "tax")
        .then(
            pl.format(
                "tax rate legacy {}, new {}: tax {} against {}",
                _rate("l_tax_rate_bp"), _rate("n_tax_rate_bp"), _major("l_tax"), _major("n_tax"),
            )
        )
        .when(c == "rounding")
        .then(
            pl.format(
                "same rate {} on {}: tax legacy {} (per line, rounded down), new {} (per invoice, half up)",
                _rate("l_tax_rate_bp"), la, _major("l_tax"), _major("n_tax"),
            )
        )
        .when(c == "timing")
        .then(pl.format("billed legacy {} (cycle {}), new {} (cycle {})", "l_bill_date", "l_cycle", "n_bill_date", "n_cycle"))
    )  # fmt: skip


@dataclass
class Result:
    cycle: str
    compared: int
    agreeing: int
    explained: int
    accuracy: Decimal
    match_rate: Decimal
    threshold: Decimal
    by_cause: dict[str, int]
    by_segment: list[dict[str, Any]]
    differences: pl.DataFrame
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step, for the bench
    explained_causes: tuple[str, ...] = ()  # the configuration's: counted as accurate

    @property
    def passed(self) -> bool:
        return self.accuracy >= self.threshold

    def summary(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "compared": self.compared,
            "agreeing": self.agreeing,
            "explained": self.explained,
            "accuracy": str(self.accuracy),
            "match_rate": str(self.match_rate),
            "threshold": str(self.threshold),
            "passed": self.passed,
            "differences": self.differences.height,
            "by_cause": self.by_cause,
            "by_segment": self.by_segment,
        }


def ratio(num: int, den: int) -> Decimal:
    return (Decimal(num) / Decimal(den)).quantize(Decimal("0.000001")) if den else Decimal(1)


def reconcile(
    legacy: pl.LazyFrame | pl.DataFrame,
    new: pl.LazyFrame | pl.DataFrame,
    cycle: str,
    cfg: BillingConfig,
    scope: pl.Series | None = None,
) -> Result:
    """Pass 1 reads both sides' fingerprints (row number, key hash, hash of the compared columns): a line
    whose key and fingerprint the other side has agrees and is only counted. Pass 2 reads the other lines
    whole, matches them by key and classifies every difference with its evidence. ``Result.phases`` has
    each step's seconds."""
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    lf, nf = _fingerprints(legacy, cycle, scope), _fingerprints(new, cycle, scope)
    distinct = pl.collect_all([df.lazy().select(pl.col("_k").n_unique()) for df in (lf, nf)])
    lf, nf = (
        df if d.item() == df.height else _nth_line(df) for df, d in zip((lf, nf), distinct, strict=True)
    )
    phase("read_fingerprints")
    # A line agrees when the other side has a line with the same key and fingerprint: two hash look-ups
    # (no full join of the million lines); only the lines that do not agree are joined, by key.
    lf, nf = (df.with_columns((pl.col("_k") ^ pl.col("_fp")).alias("_h")) for df in (lf, nf))
    l_same, n_same = (
        s.to_series()
        for s in pl.collect_all(
            [
                lf.lazy().select(pl.col("_h").is_in(nf["_h"].implode())),
                nf.lazy().select(pl.col("_h").is_in(lf["_h"].implode())),
            ]
        )
    )
    agree = lf.lazy().filter(l_same & pl.col("_in"))
    # An agreeing line counts in the legacy line's segment, or the new one's when the legacy has none.
    unsegmented = (
        agree.filter(pl.col("segment").is_null())
        .select("_k")
        .join(nf.lazy().select("_k", "segment"), on="_k", how="left")
    )
    counted, cand = pl.collect_all(
        [
            pl.concat(
                [
                    agree.filter(pl.col("segment").is_not_null()).group_by("segment").len("n"),
                    unsegmented.group_by("segment").len("n"),
                ]
            )
            .group_by(pl.col("segment").cast(pl.String).fill_null("??"))
            .agg(pl.col("n").sum()),
            lf.lazy()
            .filter(~l_same)
            .join(nf.lazy().filter(~n_same), on="_k", how="full", coalesce=True, suffix="_n")
            .filter(pl.col("_in").fill_null(False) | pl.col("_in_n").fill_null(False))
            .select("_k", "_i", "_i_n"),
        ]
    )
    phase("join")
    l_rows, n_rows = _rows(legacy, cand["_i"].drop_nulls()), _rows(new, cand["_i_n"].drop_nulls())
    phase("read_rows")
    left, right = _side(l_rows, lf, "l_"), _side(n_rows, nf, "n_")
    rows = classify(
        cand.lazy().select("_k").join(left, on="_k", how="left").join(right, on="_k", how="left"), cfg
    )
    rows = (
        _in_major_units(rows)
        .with_columns(_evidence().alias("evidence"))
        .drop("_digits", "_scale", *(f"_m_{c}" for c in MONEY_COLUMNS))
        .collect()
    )
    if rows["_collision"].any():
        raise RuntimeError("two line keys hashed alike: nothing can be concluded from this run")
    ok = pl.col("cause").is_null()
    explained = pl.col("cause").is_in(list(cfg.explained))
    seg2 = rows.group_by("segment").agg(
        pl.len().alias("n2"), ok.sum().alias("ok2"), (ok | explained).sum().alias("good2")
    )
    seg_all = (
        counted.join(seg2, on="segment", how="full", coalesce=True)
        .fill_null(0)
        .select(
            "segment",
            (pl.col("n") + pl.col("n2")).alias("compared"),
            (pl.col("n") + pl.col("ok2")).alias("agreeing"),
            (pl.col("n") + pl.col("good2")).alias("good"),
        )
    )
    diffs = (
        rows.filter(~ok)
        .select(
            "cause",
            "customer_id",
            "segment",
            "contract_id",
            "period_start",
            "currency",
            pl.col("l_amount").alias("legacy_amount"),
            pl.col("n_amount").alias("new_amount"),
            "delta",
            pl.col("l_tax").alias("legacy_tax"),
            pl.col("n_tax").alias("new_tax"),
            "tax_delta",
            pl.col("l_invoice_id").alias("legacy_invoice"),
            pl.col("n_invoice_id").alias("new_invoice"),
            pl.col("l_bill_date").alias("legacy_bill_date"),
            pl.col("n_bill_date").alias("new_bill_date"),
            "evidence",
        )
        .sort("cause", "customer_id", "contract_id", "period_start")
    )
    compared = int(seg_all["compared"].sum())
    agreeing = int(seg_all["agreeing"].sum())
    good = int(seg_all["good"].sum())
    by_cause = {c: int(n) for c, n in diffs.group_by("cause").len().sort("cause").iter_rows()}
    by_segment = [
        {
            "segment": s,
            "compared": int(n),
            "accuracy": str(ratio(int(g), int(n))),
            "match_rate": str(ratio(int(a), int(n))),
        }
        for s, n, a, g in seg_all.sort("segment")
        .select("segment", "compared", "agreeing", "good")
        .iter_rows()
    ]
    phase("classify")
    return Result(
        cycle, compared, agreeing, good - agreeing, ratio(good, compared), ratio(agreeing, compared), cfg.threshold,
        by_cause, by_segment, diffs, phases, cfg.explained,
    )  # fmt: skip
