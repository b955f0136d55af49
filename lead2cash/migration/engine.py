"""Reading, cleansing and validating legacy tables with Polars expressions (no Python loop over rows).

What is materialised, and why: a gate's failing records (small), the duplicate keys of every customer
(five narrow columns: grouping needs them all at once), a batch of rows being cleansed. Everything else
streams: cleanse reads and writes ``batch_rows`` rows at a time, so memory does not grow with the table.
Phone numbers are normalised per distinct (number, country) pair with ``phonenumbers``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lead2cash.migration.config import Gate, MigrationConfig

AMOUNT = pl.Decimal(20, 3)
TAX_ID_PATTERNS = {
    "US": r"^\d{2}-\d{7}$",
    "DE": r"^DE\d{9}$",
    "GB": r"^GB\d{9}$",
    "JP": r"^T\d{13}$",
    "KW": r"^\d{12}$",
}
EMAIL = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
E164 = r"^\+[1-9]\d{6,14}$"
# UTF-8 read as Windows-1252 leaves "Ã" or "Â" before a second character: the signature of mojibake.
MOJIBAKE_SIGN = r"Ã.|Â.|â€"


def _mojibake_table() -> dict[str, str]:
    table = {}
    for code in range(0xA0, 0x100):
        ch = chr(code)
        try:
            table[ch.encode("utf-8").decode("cp1252")] = ch
        except UnicodeDecodeError:
            continue  # a byte Windows-1252 leaves undefined: it cannot have been produced this way
    return table


MOJIBAKE = _mojibake_table()


# ------------------------------------------------------------------------------------------- source
def legacy_frame(source: str | Path, table: str) -> pl.LazyFrame:
    """A legacy table, all text: ``<dir>/<TABLE>.parquet`` or ``.csv``, or a SQLAlchemy URL."""
    if "://" in str(source):
        from sqlalchemy import create_engine

        engine = create_engine(str(source))
        try:
            return pl.read_database(
                f"SELECT * FROM {table}",  # noqa: S608 - a table name of the mapping file
                engine,
                infer_schema_length=None,
            ).lazy()
        finally:
            engine.dispose()
    base = Path(source)
    if (base / f"{table}.parquet").exists():
        return pl.scan_parquet(base / f"{table}.parquet")
    if (base / f"{table}.csv").exists():
        return pl.scan_csv(base / f"{table}.csv", infer_schema=False)
    raise FileNotFoundError(f"legacy table {table} not found in {base} (expected {table}.parquet or .csv)")


def parse_amount(expr: pl.Expr) -> pl.Expr:
    """Legacy amount text -> Decimal: ``1234.50``, ``1,234.50``, ``1.234,50``, padded; anything else null."""
    s = expr.str.strip_chars()
    last_comma = s.str.reverse().str.find(",", literal=True)
    last_dot = s.str.reverse().str.find(".", literal=True)
    european = last_comma.is_not_null() & (last_dot.is_null() | (last_comma < last_dot))
    normal = (
        pl.when(european)
        .then(s.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
        .otherwise(s.str.replace_all(",", "", literal=True))
    )
    grouped_ok = s.str.contains(r"^-?\d{1,3}([.,]\d{3})*([.,]\d+)?$") | s.str.contains(r"^-?\d+([.,]\d+)?$")
    return pl.when(grouped_ok & normal.str.contains(r"^-?\d+(\.\d+)?$")).then(
        normal.cast(AMOUNT, strict=False)
    )


def structural(expr: pl.Expr, transforms: list[str]) -> pl.Expr:
    for t in transforms:
        if t == "trim":
            expr = expr.str.strip_chars()
        elif t == "yyyymmdd":
            stripped = expr.str.strip_chars()
            expr = pl.when(stripped != "").then(stripped.str.strptime(pl.Date, "%Y%m%d", strict=False))
        elif t == "amount":
            expr = parse_amount(expr)
    return expr


def canonical(cfg: MigrationConfig, source: str | Path, table: str) -> pl.LazyFrame:
    """A legacy table renamed and parsed per the mapping (no cleansing). Parsed fields keep their trimmed
    legacy text as ``<field>__raw`` so a value that failed to parse can be named."""
    tm = cfg.tables[table]
    lf = legacy_frame(source, tm.legacy)
    cols: list[pl.Expr] = []
    for f in tm.fields.values():
        cols.append(structural(pl.col(f.source), f.transform).alias(f.name))
        if {"yyyymmdd", "amount"} & set(f.transform) or f.value_map:
            cols.append(pl.col(f.source).str.strip_chars().alias(f"{f.name}__raw"))
    return lf.select(cols)


# ------------------------------------------------------------------------------------------- cleanse
def _e164(phone: str | None, country: str | None) -> str | None:
    import phonenumbers

    if phone is None:
        return None
    try:
        number = phonenumbers.parse(phone, country if country and len(country) == 2 else None)
    except phonenumbers.NumberParseException:
        return phone
    if not phonenumbers.is_valid_number(number):
        return phone  # left as it was: the phone gate names it
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def apply_rule(df: pl.DataFrame, column: str, rule: str, cfg: MigrationConfig) -> pl.Series:
    col = pl.col(column)
    if rule == "repair_encoding":
        return df.select(col.str.replace_many(list(MOJIBAKE), list(MOJIBAKE.values()))).to_series()
    if rule == "collapse_spaces":
        return df.select(col.str.replace_all(r"\s+", " ").str.strip_chars()).to_series()
    if rule == "lower":
        return df.select(col.str.to_lowercase()).to_series()
    if rule == "upper":
        return df.select(col.str.to_uppercase()).to_series()
    if rule == "e164":
        pairs = df.select(column, "country").unique()
        pairs = pairs.with_columns(
            pl.Series("__new", [_e164(p, c) for p, c in pairs.iter_rows()], dtype=pl.String)
        )
        return df.select(column, "country").join(pairs, on=[column, "country"], how="left", nulls_equal=True)[
            "__new"
        ]
    if rule.startswith("value_map:"):
        mapping = cfg.value_maps[rule.split(":", 1)[1]]
        return df.select(col.replace_strict(mapping, default=None, return_dtype=pl.String)).to_series()
    raise ValueError(f"unknown cleanse rule {rule}")


@dataclass
class CleanseResult:
    rows: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    merged: int = 0
    seconds: float = 0.0


def _sorted_rank(keys: pl.DataFrame) -> pl.DataFrame:
    return keys.sort("created_on", "customer_id", nulls_last=True).with_row_index("__rank")


def duplicate_map(keys: pl.DataFrame, cfg: MigrationConfig) -> pl.DataFrame:
    """(customer_id -> survivor_id) for every customer in a duplicate group; survivor is the oldest
    (``created_on``, then id). A match key takes part only when valid, so two blank or malformed tax ids
    never make two parties one."""
    df = _sorted_rank(keys).with_columns(
        __email_ok=pl.col("email").str.contains(EMAIL).fill_null(False),
        __tax_ok=_tax_ok(pl.col("tax_id"), pl.col("country")),
    )
    df = df.with_columns(__surv=pl.col("__rank"))
    groups = [list(k) for k in cfg.duplicates.get("match_keys") or [["tax_id", "country"], ["email"]]]
    for _ in range(2):  # two passes join parties linked through different keys
        for key in groups:
            valid = pl.all_horizontal(
                [
                    pl.col("__email_ok")
                    if k == "email"
                    else pl.col("__tax_ok")
                    if k == "tax_id"
                    else pl.col(k).is_not_null()
                    for k in key
                ]
            )
            df = df.with_columns(
                __surv=pl.when(valid)
                .then(pl.min_horizontal(pl.col("__surv"), pl.col("__surv").min().over(key)))
                .otherwise(pl.col("__surv"))
            )
    ids = df.select("__rank", survivor_id=pl.col("customer_id"))
    return (
        df.filter(pl.col("__surv") != pl.col("__rank"))
        .join(ids, left_on="__surv", right_on="__rank")
        .select("customer_id", "survivor_id")
    )


def _tax_ok(tax: pl.Expr, country: pl.Expr) -> pl.Expr:
    ok = pl.lit(False)
    for iso, pattern in TAX_ID_PATTERNS.items():
        ok = pl.when(country == iso).then(tax.str.contains(pattern).fill_null(False)).otherwise(ok)
    return ok


def _changes(
    table: str, ids: pl.Series, column: str, before: pl.Series, after: pl.Series, rule: str
) -> pl.DataFrame:
    b, a = before.cast(pl.String), after.cast(pl.String)
    changed = (b != a).fill_null(b.is_null() != a.is_null())
    return pl.DataFrame(
        {
            "table": table,
            "record_id": ids.filter(changed),
            "field": column,
            "before": b.filter(changed),
            "after": a.filter(changed),
            "rule": rule,
        }
    )


def _slices(lf: pl.LazyFrame, batch_rows: int) -> Iterator[pl.DataFrame]:
    offset = 0
    while True:
        df = lf.slice(offset, batch_rows).collect()
        if df.height == 0:
            return
        yield df
        offset += batch_rows


def cleanse_table(
    df: pl.DataFrame, table: str, cfg: MigrationConfig
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    tm = cfg.tables[table]
    ids = df[tm.key]
    logs: list[pl.DataFrame] = []
    # Value maps first: the phone rule needs the ISO country.
    order = sorted(tm.fields.values(), key=lambda f: 0 if f.value_map else 1)
    for f in order:
        rules = ([f"value_map:{f.value_map}"] if f.value_map else []) + f.cleanse
        for rule in rules:
            new = apply_rule(df, f.name, rule, cfg).alias(f.name)
            logs.append(_changes(table, ids, f.name, df[f.name], new, rule))
            df = df.with_columns(new)
    return df, logs


def cleanse(cfg: MigrationConfig, source: str | Path, out: Path, batch_rows: int = 200_000) -> CleanseResult:
    """Cleansed tables as ``out/<table>/part-N.parquet`` and every change in ``out/changes/``."""
    import shutil
    import time

    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    (out / "changes").mkdir(parents=True)
    result = CleanseResult()
    cust = cfg.tables["customers"]
    # The duplicate groups need every customer's keys at once: five narrow columns, cleansed as the
    # full rows will be.
    keys = (
        canonical(cfg, source, "customers")
        .select("customer_id", "created_on", "email", "tax_id", "country", "country__raw")
        .collect()
    )
    keys, _ = cleanse_table(
        keys,
        "customers",
        _subset(cfg, "customers", ["customer_id", "created_on", "email", "tax_id", "country"]),
    )
    dups = duplicate_map(keys.drop("country__raw"), cfg)
    result.merged = dups.height
    sum_fields = list(cfg.duplicates.get("sum") or [])
    part = 0
    sums: pl.DataFrame | None = None
    if sum_fields and dups.height:
        members = (
            canonical(cfg, source, "customers")
            .select(cust.key, *sum_fields)
            .join(dups.lazy(), left_on=cust.key, right_on="customer_id", how="inner")
        )
        sums = (
            members.group_by("survivor_id")
            .agg(pl.col(c).sum().alias(f"__add_{c}") for c in sum_fields)
            .collect()
        )
    for table, tm in cfg.tables.items():
        (out / table).mkdir()
        for df in _slices(canonical(cfg, source, table), batch_rows):
            df, logs = cleanse_table(df, table, cfg)
            if table == "customers" and dups.height:
                gone = df[tm.key].is_in(dups["customer_id"].implode())
                merged = df.filter(gone).join(dups, left_on=tm.key, right_on="customer_id")
                logs.append(
                    pl.DataFrame(
                        {
                            "table": table,
                            "record_id": merged[tm.key],
                            "field": "*",
                            "before": merged[tm.key],
                            "after": merged["survivor_id"],
                            "rule": "duplicates:merged_into",
                        }
                    )
                )
                df = df.filter(~gone)
                if sums is not None:
                    df = df.join(sums, left_on=tm.key, right_on="survivor_id", how="left")
                    for c in sum_fields:
                        new = (pl.col(c) + pl.col(f"__add_{c}").fill_null(0)).alias(c)
                        after = df.select(new).to_series()
                        logs.append(_changes(table, df[tm.key], c, df[c], after, "duplicates:survivor_sum"))
                        df = df.with_columns(after).drop(f"__add_{c}")
            if table in ("contracts", "invoices") and dups.height:
                new = (
                    df.join(dups, on="customer_id", how="left")
                    .select(pl.coalesce("survivor_id", "customer_id").alias("customer_id"))
                    .to_series()
                )
                logs.append(
                    _changes(table, df[tm.key], "customer_id", df["customer_id"], new, "duplicates:repoint")
                )
                df = df.with_columns(new)
            df.write_parquet(out / table / f"part-{part:05d}.parquet")
            log = (
                pl.concat([x for x in logs if x.height], how="vertical")
                if any(x.height for x in logs)
                else None
            )
            if log is not None:
                log.write_parquet(out / "changes" / f"part-{part:05d}.parquet")
                result.changes += log.height
            result.rows[table] = result.rows.get(table, 0) + df.height
            part += 1
    ledger = legacy_frame(source, "GLBAL").select(
        currency=pl.col("CURR_CD").str.strip_chars(), open_balance=parse_amount(pl.col("OPEN_BAL"))
    )
    ledger.collect().write_parquet(out / "ledger.parquet")
    result.seconds = time.perf_counter() - started
    return result


def _subset(cfg: MigrationConfig, table: str, names: list[str]) -> MigrationConfig:
    import copy

    sub = copy.copy(cfg)
    tm = copy.copy(cfg.tables[table])
    tm.fields = {k: v for k, v in tm.fields.items() if k in names}
    sub.tables = {**cfg.tables, table: tm}
    return sub


# ------------------------------------------------------------------------------------------- validate
class Tables:
    """Canonical tables to validate: cleansed output (``cleansed=True``) or the legacy source parsed only."""

    def __init__(self, cfg: MigrationConfig, source: str | Path, cleansed: bool) -> None:
        self.cfg, self.source, self.cleansed = cfg, source, cleansed

    def get(self, table: str) -> pl.LazyFrame:
        if self.cleansed:
            return pl.scan_parquet(Path(self.source) / table / "*.parquet")
        return canonical(self.cfg, self.source, table)

    def ledger(self) -> pl.LazyFrame:
        if self.cleansed:
            return pl.scan_parquet(Path(self.source) / "ledger.parquet")
        return legacy_frame(self.source, "GLBAL").select(
            currency=pl.col("CURR_CD").str.strip_chars(), open_balance=parse_amount(pl.col("OPEN_BAL"))
        )


def _fail(lf: pl.LazyFrame, key: str, ok: pl.Expr, reason: pl.Expr) -> pl.DataFrame:
    return lf.filter(~ok.fill_null(False)).select(record_id=pl.col(key), reason=reason).collect()


def run_check(gate: Gate, tables: Tables) -> tuple[pl.DataFrame, int]:
    """(failing records: record_id, reason), and the number of records the gate looked at."""
    cfg = tables.cfg
    tm = cfg.tables[gate.table]
    key = tm.key
    lf = tables.get(gate.table)
    total = int(lf.select(pl.len()).collect().item())
    p = gate.params
    column = str(p.get("column", ""))
    c = pl.col(column) if column else pl.lit(None)
    shown = pl.lit(f"{column} ") + c.cast(pl.String).fill_null("<empty>").map_batches(lambda s: '"' + s + '"')
    as_of = pl.lit(cfg.as_of).str.to_date()
    check = gate.check
    if check == "required":
        cols = [str(x) for x in p["columns"]]
        missing = pl.concat_str(
            [pl.when(pl.col(x).is_null() | (pl.col(x).cast(pl.String) == "")).then(pl.lit(x)) for x in cols],
            separator=",",
            ignore_nulls=True,
        )
        return _fail(lf, key, missing == "", pl.lit("required field(s) empty: ") + missing), total
    if check == "unique":
        return _fail(lf, key, ~pl.col(column).is_duplicated(), shown + " appears more than once"), total
    if check == "in_set":
        allowed = sorted(set(cfg.value_maps[str(p["set"])].values()))
        return _fail(lf, key, c.is_in(allowed), shown + pl.lit(f" is not one of {', '.join(allowed)}")), total
    if check == "email":
        return _fail(lf, key, c.str.contains(EMAIL), shown + " is not a valid e-mail address"), total
    if check == "e164":
        return _fail(lf, key, c.str.contains(E164), shown + " is not an E.164 number"), total
    if check == "tax_id":
        return _fail(
            lf,
            key,
            _tax_ok(c, pl.col("country")),
            shown + pl.lit(" is not a tax id of ") + pl.col("country").fill_null("?"),
        ), total
    if check == "mojibake":
        cols = [str(x) for x in p["columns"]]
        bad = pl.any_horizontal([pl.col(x).str.contains(MOJIBAKE_SIGN).fill_null(False) for x in cols])
        return _fail(
            lf,
            key,
            ~bad,
            pl.lit("damaged encoding (UTF-8 read as Windows-1252) in ")
            + pl.concat_str(cols, separator=" | "),
        ), total
    if check == "duplicates":
        keys = lf.select("customer_id", "created_on", "email", "tax_id", "country").collect()
        dups = duplicate_map(keys, cfg)
        return dups.select(
            record_id="customer_id", reason=pl.lit("same party as ") + pl.col("survivor_id")
        ), total
    if check == "type":
        raw = pl.col(f"{column}__raw")
        return _fail(
            lf,
            key,
            c.is_not_null() | raw.is_null() | (raw == ""),
            pl.lit(f"{column} ") + raw.map_batches(lambda s: '"' + s + '"') + " cannot be read",
        ), total
    if check == "reference":
        ref = tables.get(str(p["ref"])).select(pl.col(cfg.tables[str(p["ref"])].key).alias("__ref"))
        joined = lf.join(ref, left_on=column, right_on="__ref", how="left", coalesce=False)
        return _fail(
            joined, key, pl.col("__ref").is_not_null(), shown + pl.lit(f" has no record in {p['ref']}")
        ), total
    if check == "not_null":
        return _fail(
            lf,
            key,
            c.is_not_null(),
            pl.lit(f"{column}: no mapping for ") + pl.col(f"{column}__raw").fill_null("<empty>"),
        ), total
    if check == "positive":
        return _fail(lf, key, c.is_null() | (c > 0), shown + " is not positive"), total
    if check == "not_future":
        return _fail(
            lf, key, c.is_null() | (c <= as_of), shown + pl.lit(f" is after the business date {cfg.as_of}")
        ), total
    if check == "currency_match":
        cust = tables.get("customers").select(
            pl.col("customer_id").alias("__cid"), pl.col("currency").alias("__acc")
        )
        joined = lf.join(cust, left_on="customer_id", right_on="__cid", how="left")
        ok = pl.col("__acc").is_null() | (pl.col("currency") == pl.col("__acc"))
        return _fail(
            joined,
            key,
            ok,
            pl.lit("contract currency ")
            + pl.col("currency").fill_null("?")
            + " differs from the account's "
            + pl.col("__acc"),
        ), total
    if check == "overlap":
        end = pl.col("end_on").fill_null(pl.date(9999, 12, 31))
        ordered = lf.sort("customer_id", "product", "start_on", key)
        # Per Lago product: an unmapped plan code is the plan gate's failure, not an overlap.
        prev_end = end.cum_max().shift(1).over(["customer_id", "product"])
        flagged = ordered.with_columns(__prev=prev_end)
        return _fail(
            flagged,
            key,
            pl.col("product").is_null()
            | pl.col("__prev").is_null()
            | (pl.col("start_on") > pl.col("__prev")),
            pl.lit("starts ")
            + pl.col("start_on").cast(pl.String)
            + " inside another contract for plan "
            + pl.col("plan_code"),
        ), total
    if check == "anniversary":
        months = pl.col("product").replace_strict(
            {k: v for k, v in cfg.plan_months.items()}, default=None, return_dtype=pl.Int64
        )
        diff = (pl.col("next_bill_on").dt.year() * 12 + pl.col("next_bill_on").dt.month()) - (
            pl.col("start_on").dt.year() * 12 + pl.col("start_on").dt.month()
        )
        ok = (
            months.is_null()
            | pl.col("start_on").is_null()
            | pl.col("next_bill_on").is_null()
            | ((diff % months == 0) & (pl.col("next_bill_on").dt.day() == pl.col("start_on").dt.day()))
        )
        return _fail(
            lf,
            key,
            ok,
            pl.lit("next bill ") + pl.col("next_bill_on").cast(pl.String) + " is no anniversary of the start",
        ), total
    if check == "lines_total":
        lines = tables.get("invoice_lines").group_by("invoice_id").agg(__lines=pl.col("amount").sum())
        joined = lf.join(lines, on="invoice_id", how="left")
        ok = pl.col("net").is_null() | (pl.col("net") == pl.col("__lines").fill_null(0))
        return _fail(
            joined,
            key,
            ok,
            pl.lit("net ")
            + pl.col("net").cast(pl.String)
            + " != sum of lines "
            + pl.col("__lines").cast(pl.String),
        ), total
    if check == "net_plus_tax":
        ok = pl.col("total").is_null() | (pl.col("net") + pl.col("tax") == pl.col("total"))
        return _fail(lf, key, ok, pl.lit("net + tax != total ") + pl.col("total").cast(pl.String)), total
    if check == "control_total":
        ours = lf.group_by("currency").agg(__ours=pl.col("open_balance").sum())
        both = tables.ledger().join(ours, on="currency", how="full", coalesce=True)
        ok = pl.col("__ours").fill_null(0) == pl.col("open_balance").fill_null(0)
        failed = (
            both.filter(~ok)
            .select(
                record_id=pl.col("currency"),
                reason=pl.lit("open balances ")
                + pl.col("__ours").cast(pl.String).fill_null("0")
                + " != ledger "
                + pl.col("open_balance").cast(pl.String).fill_null("0"),
            )
            .collect()
        )
        return failed, int(both.select(pl.len()).collect().item())
    raise ValueError(f"unknown check {check}")


@dataclass
class GateResult:
    name: str
    table: str
    check: str
    defect: str | None
    total: int
    failed: int
    max_rate: float
    passed: bool
    waived: dict[str, str] | None
    seconds: float
    examples: list[dict[str, str]]

    def json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def validate(
    cfg: MigrationConfig, source: str | Path, cleansed: bool, out: Path
) -> tuple[list[GateResult], pl.DataFrame]:
    """Every gate; failing records (of passing and failing gates) go to ``out/quarantine.parquet`` with the
    gate, reason and the record as JSON; contracts of a quarantined customer follow it."""
    import time

    tables = Tables(cfg, source, cleansed)
    results: list[GateResult] = []
    failing: list[pl.DataFrame] = []
    for gate in cfg.gates:
        t0 = time.perf_counter()
        failed, total = run_check(gate, tables)
        seconds = time.perf_counter() - t0
        rate = failed.height / total if total else 0.0
        results.append(
            GateResult(
                gate.name,
                gate.table,
                gate.check,
                gate.defect,
                total,
                failed.height,
                gate.max_rate,
                rate <= gate.max_rate or gate.waiver is not None,
                gate.waiver,
                round(seconds, 4),
                failed.head(5).to_dicts(),
            )
        )
        if gate.check != "control_total":
            failing.append(
                failed.with_columns(
                    table=pl.lit(gate.table), gate=pl.lit(gate.name), defect=pl.lit(gate.defect, pl.String)
                )
            )
    q = (
        pl.concat(failing)
        if failing
        else pl.DataFrame(
            schema={
                "record_id": pl.String,
                "reason": pl.String,
                "table": pl.String,
                "gate": pl.String,
                "defect": pl.String,
            }
        )
    )
    bad_customers = q.filter(pl.col("table") == "customers")["record_id"].unique()
    cascade = (
        tables.get("contracts")
        .filter(pl.col("customer_id").is_in(bad_customers.implode()))
        .select(
            record_id=pl.col("contract_id"),
            reason=pl.lit("its customer ") + pl.col("customer_id") + " is quarantined",
        )
        .collect()
        .with_columns(table=pl.lit("contracts"), gate=pl.lit("cascade"), defect=pl.lit(None, pl.String))
    )
    q = pl.concat([q, cascade])
    payloads = []
    for table, tm in cfg.tables.items():
        ids = q.filter(pl.col("table") == table)["record_id"].unique()
        if ids.len():
            payloads.append(
                tables.get(table)
                .filter(pl.col(tm.key).is_in(ids.implode()))
                .group_by(tm.key)
                .first()
                .select(
                    table=pl.lit(table),
                    record_id=pl.col(tm.key),
                    payload=pl.struct(pl.all()).struct.json_encode(),
                )
                .collect()
            )
    if payloads:
        q = q.join(pl.concat(payloads), on=["table", "record_id"], how="left")
    else:
        q = q.with_columns(payload=pl.lit(None, pl.String))
    out.mkdir(parents=True, exist_ok=True)
    q.write_parquet(out / "quarantine.parquet")
    report = {
        "source": str(source),
        "cleansed": cleansed,
        "passed": all(r.passed for r in results),
        "gates": [r.json() for r in results],
        "quarantined": {t: int(q.filter(pl.col("table") == t)["record_id"].n_unique()) for t in cfg.tables},
    }
    (out / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    return results, q


def detections(quarantine: pl.DataFrame, cleanse_dir: Path | None) -> pl.DataFrame:
    """(table, record_id, defect) found: gate failures tagged with a defect class, plus what cleansing
    found and fixed (parties merged, encodings repaired)."""
    tables = {"customers": "CUSTMAST", "contracts": "CONTRACT", "invoices": "INVHDR"}
    found = [
        quarantine.filter(pl.col("defect").is_not_null()).select(
            TABLE=pl.col("table").replace_strict(tables, default=None), RECORD_ID="record_id", DEFECT="defect"
        )
    ]
    if (
        cleanse_dir is not None
        and (cleanse_dir / "changes").exists()
        and any((cleanse_dir / "changes").iterdir())
    ):
        ch = pl.scan_parquet(cleanse_dir / "changes" / "*.parquet")
        found.append(
            ch.filter(
                pl.col("rule").is_in(["duplicates:merged_into", "repair_encoding"])
                & (pl.col("table") == "customers")
                & (pl.col("field") != "city")
            )
            .select(
                TABLE=pl.lit("CUSTMAST"),
                RECORD_ID="record_id",
                DEFECT=pl.when(pl.col("rule") == "repair_encoding")
                .then(pl.lit("damaged_encoding"))
                .otherwise(pl.lit("duplicate_customer")),
            )
            .collect()
        )
    return pl.concat(found).unique()


def score(found: pl.DataFrame, manifest: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Precision and recall per defect class against the ground-truth manifest."""
    out: dict[str, dict[str, float]] = {}
    for defect in sorted(set(manifest["DEFECT"]) | set(found["DEFECT"])):
        truth = manifest.filter(pl.col("DEFECT") == defect).select("TABLE", "RECORD_ID")
        got = found.filter(pl.col("DEFECT") == defect).select("TABLE", "RECORD_ID").unique()
        tp = got.join(truth, on=["TABLE", "RECORD_ID"]).height
        out[defect] = {
            "injected": truth.height,
            "found": got.height,
            "precision": tp / got.height if got.height else 1.0,
            "recall": tp / truth.height if truth.height else 1.0,
        }
    return out


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
