"""In-memory record store: tables of plain dicts, external-id and child indexes, write validation.

Values are kept in Python types (str, Decimal, bool, date, aware datetime); JSON conversion happens at
the edge. Deleted rows stay in their table with ``IsDeleted = True`` (the recycle bin), which is what
queryAll and ``/deleted`` read.

Writes take a ``stamp`` from the caller so a batch (a collection, a bulk job, an admin close-won) shares
one SystemModstamp, as the real platform does.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from lead2cash.sandbox.salesforce import ids
from lead2cash.sandbox.salesforce.schema import (
    BY_PREFIX,
    ID_TYPES,
    OBJECTS,
    STAGES,
    TEXT_TYPES,
    Field,
    SObject,
)

UTC = dt.UTC
Record = dict[str, Any]


class SfError(Exception):
    """A Salesforce error response: HTTP status plus the list of ``{message, errorCode, fields}``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        self._with_fields = fields is not None  # DML errors name fields; query/session errors do not

    def body(self) -> list[dict[str, Any]]:
        return [self.as_error()]

    def as_error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self._with_fields:
            out["fields"] = self.fields
        return out


class Clock:
    """The org's clock: wall time plus an adjustable offset, truncated to milliseconds."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        t = dt.datetime.now(UTC) + self.offset
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def today(self) -> dt.date:
        return self.now().date()


def format_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    elif len(t) > 5 and t[-5] in "+-" and t[-3] != ":":
        t = t[:-2] + ":" + t[-2:]
    value = dt.datetime.fromisoformat(t)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def coerce(obj: SObject, f: Field, value: Any, *, from_csv: bool = False) -> Any:
    """A JSON (or CSV) value as the stored Python value of ``f``; raises SfError like the platform."""
    if value is None:
        return None
    t = f.type
    try:
        if t in TEXT_TYPES:
            text = value if isinstance(value, str) else str(value)
            if f.length and len(text) > f.length:
                raise SfError(
                    400,
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {text[:50]} (max length={f.length})",
                    [f.name],
                )
            if f.picklist and f.name == "CurrencyIsoCode" and text not in f.picklist:
                raise SfError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {text}",
                    [f.name],
                )
            return text
        if t in ("currency", "double", "percent"):
            if isinstance(value, bool):
                raise ValueError
            number = value if isinstance(value, Decimal) else Decimal(str(value))
            if not number.is_finite():
                raise ValueError
            return number
        if t == "int":
            return int(value)
        if t == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if t == "date":
            if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                return value
            return dt.date.fromisoformat(str(value)[:10])
        if t == "datetime":
            if isinstance(value, dt.datetime):
                return value.astimezone(UTC)
            return parse_datetime(str(value))
        if t in ID_TYPES:
            norm = ids.normalize(str(value))
            target = OBJECTS[f.reference_to] if f.reference_to else obj
            if norm is None or norm[:3] != target.key_prefix:
                raise SfError(
                    400,
                    "MALFORMED_ID",
                    f"{f.label}: id value of incorrect type: {value}",
                    [f.name],
                )
            return norm
    except (ValueError, InvalidOperation, TypeError):
        kind = "string" if from_csv else type(value).__name__
        raise SfError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {t} from {kind} value {value} or request may be missing a "
            f"required field",
            [f.name],
        ) from None
    return value


@dataclass
class WriteResult:
    id: str
    created: bool


@dataclass
class Store:
    clock: Clock
    minter: ids.IdMinter
    tables: dict[str, dict[str, Record]] = field(default_factory=lambda: {name: {} for name in OBJECTS})
    # (object, external id field) -> value -> Id
    ext_index: dict[tuple[str, str], dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    # (child object, foreign key) -> parent Id -> [child Id]
    child_index: dict[tuple[str, str], dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    deleted_at: dict[str, dt.datetime] = field(default_factory=dict)
    # undo journal while a transaction is open: (object, Id, copy of the record before, or None if new)
    _journal: list[tuple[str, str, Record | None]] | None = None

    # --- transactions (allOrNone) ----------------------------------------------------------------------

    def begin(self) -> None:
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal or [], None
        for obj_name, rid, before in reversed(journal):
            obj = OBJECTS[obj_name]
            table = self.tables[obj_name]
            current = table.get(rid)
            if current is not None:
                for name in obj.external_ids:
                    if current.get(name) is not None:
                        self.ext_index[(obj_name, name)].pop(current[name], None)
            if before is None:
                table.pop(rid, None)
                for f in obj.fields.values():
                    if f.type == "reference" and current and current.get(f.name):
                        siblings = self.child_index[(obj_name, f.name)].get(current[f.name], [])
                        if rid in siblings:
                            siblings.remove(rid)
            else:
                table[rid].clear()
                table[rid].update(before)
                if not before["IsDeleted"]:
                    self.deleted_at.pop(rid, None)
                self._index(obj, table[rid], None, children=False)

    def _touch(self, obj_name: str, rec: Record | None, rid: str) -> None:
        if self._journal is not None:
            self._journal.append((obj_name, rid, dict(rec) if rec is not None else None))

    # --- reads -----------------------------------------------------------------------------------------

    def get(self, id18: str) -> Record | None:
        obj = BY_PREFIX.get(id18[:3])
        return self.tables[obj.name].get(id18) if obj else None

    def children(self, child: str, fk: str, parent_id: str) -> list[Record]:
        table = self.tables[child]
        return [table[i] for i in self.child_index[(child, fk)].get(parent_id, ()) if i in table]

    def find_by_external_id(self, obj: SObject, field_name: str, value: str) -> Record | None:
        if field_name == "Id":
            norm = ids.normalize(value)
            rec = self.tables[obj.name].get(norm) if norm else None
            return rec if rec and not rec["IsDeleted"] else None
        rid = self.ext_index[(obj.name, field_name)].get(value)
        return self.tables[obj.name].get(rid) if rid else None

    def live(self, obj_name: str, id_value: str) -> Record:
        """The live record ``id_value`` of ``obj_name``, or the platform's error for a bad/missing id."""
        obj = OBJECTS[obj_name]
        norm = ids.normalize(id_value)
        if norm is None or norm[:3] != obj.key_prefix:
            raise SfError(
                400 if norm is None else 404,
                "MALFORMED_ID" if norm is None else "NOT_FOUND",
                f"{obj.label} ID: id value of incorrect type: {id_value}"
                if norm is None
                else "The requested resource does not exist",
                ["Id"] if norm is None else [],
            )
        rec = self.tables[obj_name].get(norm)
        if rec is None or rec["IsDeleted"]:
            raise SfError(
                404,
                "ENTITY_IS_DELETED" if rec else "NOT_FOUND",
                "entity is deleted" if rec else "The requested resource does not exist",
            )
        return rec

    # --- writes ----------------------------------------------------------------------------------------

    def _clean(
        self, obj: SObject, values: dict[str, Any], *, creating: bool, from_csv: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, raw in values.items():
            if name == "attributes":
                continue
            f = obj.field(name)
            if f is None:
                raise SfError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [name]
                )
            if f.name == "Id":
                continue
            allowed = f.createable if creating else f.updateable
            if not allowed or f.calculated:
                raise SfError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings of this "
                    f"field and verify that it is read/write for your profile or permission set.",
                    [f.name],
                )
            value = coerce(obj, f, raw, from_csv=from_csv)
            if value is None and not f.nillable:
                if f.type == "boolean":
                    value = False
                else:
                    raise SfError(
                        400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name]
                    )
            if f.type in ID_TYPES and value is not None:
                target = self.tables[f.reference_to or obj.name].get(value)
                if target is None or target["IsDeleted"]:
                    raise SfError(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        [f.name],
                    )
            out[f.name] = value
        return out

    def _validate(self, obj: SObject, rec: Record) -> None:
        # The org's validation rule: an invoiced amount is never negative.
        if obj.name == "Opportunity":
            amount = rec.get("Billing_Invoiced_Amount__c")
            if amount is not None and amount < 0:
                raise SfError(
                    400,
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "Billing Invoiced Amount cannot be negative.",
                    [],
                )
        for name in obj.external_ids:
            value = rec.get(name)
            if value is None:
                continue
            owner = self.ext_index[(obj.name, name)].get(value)
            if owner is not None and owner != rec.get("Id"):
                raise SfError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {owner}",
                    [name],
                )

    def _derive(self, obj: SObject, rec: Record, changed: dict[str, Any]) -> None:
        if obj.name == "Opportunity" and "StageName" in changed:
            probability, closed, won = STAGES.get(rec["StageName"], (None, False, False))
            rec["IsClosed"], rec["IsWon"] = closed, won
            rec["LastStageChangeDate"] = rec["SystemModstamp"]
            if "Probability" not in changed and probability is not None:
                rec["Probability"] = Decimal(probability)
        elif obj.name == "PricebookEntry":
            product = self.tables["Product2"][rec["Product2Id"]]
            rec["Name"], rec["ProductCode"] = product["Name"], product.get("ProductCode")
        elif obj.name == "OpportunityLineItem":
            pbe = self.tables["PricebookEntry"][rec["PricebookEntryId"]]
            opp = self.tables["Opportunity"][rec["OpportunityId"]]
            rec["Product2Id"], rec["ListPrice"] = pbe["Product2Id"], pbe["UnitPrice"]
            rec["Name"] = f"{opp['Name']} {pbe['Name']}"
            rec["ProductCode"] = pbe.get("ProductCode")
            rec["CurrencyIsoCode"] = opp.get("CurrencyIsoCode")
            if rec.get("UnitPrice") is None:
                rec["UnitPrice"] = pbe["UnitPrice"]
            rec["TotalPrice"] = line_total(
                rec["Quantity"], rec["UnitPrice"], rec.get("Discount"), rec.get("CurrencyIsoCode")
            )

    def roll_up_amount(self, opp_id: str) -> None:
        """Opportunity.Amount as the sum of its live lines; a roll-up, so SystemModstamp does not move."""
        lines = [
            r for r in self.children("OpportunityLineItem", "OpportunityId", opp_id) if not r["IsDeleted"]
        ]
        opp = self.tables["Opportunity"].get(opp_id)
        if opp is not None and lines:
            self._touch("Opportunity", opp, opp_id)
            opp["Amount"] = sum((r["TotalPrice"] for r in lines), Decimal(0))

    def _index(self, obj: SObject, rec: Record, old: Record | None, *, children: bool = True) -> None:
        for name in obj.external_ids:
            if old is not None and old.get(name) is not None and old.get(name) != rec.get(name):
                self.ext_index[(obj.name, name)].pop(old[name], None)
            if rec.get(name) is not None and not rec["IsDeleted"]:
                self.ext_index[(obj.name, name)][rec[name]] = rec["Id"]
        if old is None and children:
            for f in obj.fields.values():
                if f.type == "reference" and rec.get(f.name) is not None:
                    self.child_index[(obj.name, f.name)][rec[f.name]].append(rec["Id"])

    def create(
        self, obj_name: str, values: dict[str, Any], stamp: dt.datetime, *, from_csv: bool = False
    ) -> str:
        obj = OBJECTS[obj_name]
        clean = self._clean(obj, values, creating=True, from_csv=from_csv)
        missing = [
            f.name
            for f in obj.fields.values()
            if f.required and f.writable_on_create and clean.get(f.name) is None and f.default is None
        ]
        if missing:
            raise SfError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        rec: Record = {
            "Id": None,
            "IsDeleted": False,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        for f in obj.fields.values():
            if f.name not in rec:
                rec[f.name] = f.default
        if obj.name == "OpportunityLineItem" and "UnitPrice" not in clean:
            rec["UnitPrice"] = None
        rec.update(clean)
        self._validate(obj, rec)
        rec["Id"] = self.minter.mint(obj.key_prefix)
        self._touch(obj.name, None, rec["Id"])
        self._derive(obj, rec, rec)
        self.tables[obj.name][rec["Id"]] = rec
        self._index(obj, rec, None)
        if obj.name == "OpportunityLineItem":
            self.roll_up_amount(rec["OpportunityId"])
        return rec["Id"]

    def update(
        self,
        obj_name: str,
        id_value: str,
        values: dict[str, Any],
        stamp: dt.datetime,
        *,
        from_csv: bool = False,
    ) -> str:
        obj = OBJECTS[obj_name]
        rec = self.live(obj_name, id_value)
        clean = self._clean(obj, values, creating=False, from_csv=from_csv)
        candidate = {**rec, **clean}
        self._validate(obj, candidate)
        old = dict(rec)
        self._touch(obj.name, rec, rec["Id"])
        rec.update(clean)
        rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
        self._derive(obj, rec, clean)
        self._index(obj, rec, old)
        if obj.name == "OpportunityLineItem":
            self.roll_up_amount(rec["OpportunityId"])
        return rec["Id"]

    def upsert(
        self,
        obj_name: str,
        field_name: str,
        key: str,
        values: dict[str, Any],
        stamp: dt.datetime,
        *,
        from_csv: bool = False,
    ) -> WriteResult:
        obj = OBJECTS[obj_name]
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        body_key = next((v for k, v in values.items() if k.lower() == f.name.lower()), None)
        if body_key is not None and str(body_key) != key and f.name != "Id":
            raise SfError(
                400,
                "INVALID_FIELD",
                f"The value for {f.name} in the request body ({body_key}) doesn't match the value in the URL "
                f"({key})",
                [f.name],
            )
        rec = self.find_by_external_id(obj, f.name, key)
        rest = {k: v for k, v in values.items() if k.lower() not in ("id",)}
        if rec is not None:
            self.update(obj_name, rec["Id"], rest, stamp, from_csv=from_csv)
            return WriteResult(rec["Id"], False)
        if f.name == "Id":
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        new_id = self.create(obj_name, {**rest, f.name: key}, stamp, from_csv=from_csv)
        return WriteResult(new_id, True)

    def delete(self, obj_name: str, id_value: str, stamp: dt.datetime) -> str:
        obj = OBJECTS[obj_name]
        rec = self.live(obj_name, id_value)
        self._delete(obj, rec, stamp)
        if obj.name == "OpportunityLineItem":
            self.roll_up_amount(rec["OpportunityId"])
        return rec["Id"]

    def _delete(self, obj: SObject, rec: Record, stamp: dt.datetime) -> None:
        self._touch(obj.name, rec, rec["Id"])
        rec["IsDeleted"] = True
        rec["SystemModstamp"] = stamp
        self.deleted_at[rec["Id"]] = stamp
        for name in obj.external_ids:
            if rec.get(name) is not None:
                self.ext_index[(obj.name, name)].pop(rec[name], None)
        for rel in obj.children.values():
            if rel.cascade_delete:
                child = OBJECTS[rel.child]
                for c in self.children(rel.child, rel.field, rec["Id"]):
                    if not c["IsDeleted"]:
                        self._delete(child, c, stamp)

    def silent_update(self, obj_name: str, id_value: str, values: dict[str, Any]) -> Record:
        """Change fields the way a formula or roll-up does: no LastModifiedDate, no SystemModstamp."""
        obj = OBJECTS[obj_name]
        rec = self.live(obj_name, id_value)
        for name, raw in values.items():
            f = obj.field(name)
            if f is None:
                raise SfError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
            rec[f.name] = coerce(obj, f, raw)
        return rec


CURRENCY_DECIMALS = {"JPY": 0, "KWD": 3}


def line_total(
    quantity: Decimal, unit_price: Decimal, discount: Decimal | None, currency: str | None
) -> Decimal:
    """Quantity x price less the discount percent, rounded half-up to the currency's minor unit."""
    total = quantity * unit_price
    if discount:
        total = total * (Decimal(100) - discount) / Decimal(100)
    exponent = Decimal(1).scaleb(-CURRENCY_DECIMALS.get(currency or "", 2))
    return total.quantize(exponent, rounding=ROUND_HALF_UP)
