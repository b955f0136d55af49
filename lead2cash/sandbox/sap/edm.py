"""The entity model of each OData service, read once from the team-written subset EDMX, and Edm value
formatting/parsing for OData V2 JSON (``/Date(ms)/``, decimals as strings, ``PT..H..M..S``)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

METADATA_DIR = Path(__file__).with_name("metadata")
_SAP = "{http://www.sap.com/Protocols/SAPData}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Property:
    name: str
    type: str
    nullable: bool = True
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    creatable: bool = True
    updatable: bool = True
    unit: str | None = None  # property holding the currency code for amounts


@dataclass(frozen=True)
class NavigationProperty:
    name: str
    target_type: str
    many: bool
    target_set: str


@dataclass
class EntityType:
    name: str
    qualified: str
    keys: list[str]
    properties: dict[str, Property]
    navigations: dict[str, NavigationProperty] = field(default_factory=dict)
    aggregate: bool = False  # sap:semantics="aggregate": $select groups by dimensions and sums measures

    @property
    def edm_types(self) -> dict[str, str]:
        return {n: p.type for n, p in self.properties.items()}

    @property
    def max_lengths(self) -> dict[str, int]:
        return {n: p.max_length for n, p in self.properties.items() if p.max_length is not None}


@dataclass
class EntitySet:
    name: str
    type: EntityType
    creatable: bool
    updatable: bool


@dataclass
class ServiceModel:
    name: str
    namespace: str
    xml: bytes
    types: dict[str, EntityType]
    sets: dict[str, EntitySet]


def load_service(name: str, file_name: str | None = None) -> ServiceModel:
    path = METADATA_DIR / (file_name or f"{name}.xml")
    xml = path.read_bytes()
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    schema = next(root.iter("{*}Schema"))
    ns = schema.get("Namespace")
    assoc_ends: dict[str, dict[str, tuple[str, str]]] = {}
    for assoc in schema.findall("{*}Association"):
        assoc_ends[assoc.get("Name")] = {
            end.get("Role"): (end.get("Type").split(".")[-1], end.get("Multiplicity"))
            for end in assoc.findall("{*}End")
        }
    types: dict[str, EntityType] = {}
    for et in schema.findall("{*}EntityType"):
        props = {}
        for p in et.findall("{*}Property"):
            props[p.get("Name")] = Property(
                name=p.get("Name"),
                type=p.get("Type"),
                nullable=p.get("Nullable", "true") != "false",
                max_length=int(p.get("MaxLength")) if p.get("MaxLength") else None,
                precision=int(p.get("Precision")) if p.get("Precision") else None,
                scale=int(p.get("Scale")) if p.get("Scale") else None,
                creatable=p.get(f"{_SAP}creatable", "true") != "false",
                updatable=p.get(f"{_SAP}updatable", "true") != "false",
                unit=p.get(f"{_SAP}unit"),
            )
        keys = [k.get("Name") for k in et.find("{*}Key")]
        types[et.get("Name")] = EntityType(
            et.get("Name"),
            f"{ns}.{et.get('Name')}",
            keys,
            props,
            aggregate=et.get(f"{_SAP}semantics") == "aggregate",
        )
    container = schema.find("{*}EntityContainer")
    sets: dict[str, EntitySet] = {}
    set_by_type: dict[str, str] = {}
    for es in container.findall("{*}EntitySet"):
        tname = es.get("EntityType").split(".")[-1]
        sets[es.get("Name")] = EntitySet(
            es.get("Name"),
            types[tname],
            es.get(f"{_SAP}creatable", "true") != "false",
            es.get(f"{_SAP}updatable", "true") != "false",
        )
        set_by_type[tname] = es.get("Name")
    for et in schema.findall("{*}EntityType"):
        for nav in et.findall("{*}NavigationProperty"):
            assoc = nav.get("Relationship").split(".")[-1]
            target, multiplicity = assoc_ends[assoc][nav.get("ToRole")]
            types[et.get("Name")].navigations[nav.get("Name")] = NavigationProperty(
                nav.get("Name"), target, multiplicity == "*", set_by_type[target]
            )
    return ServiceModel(name, ns, xml, types, sets)


# --- values -------------------------------------------------------------------------------------------


def to_millis(value: datetime | date) -> int:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def format_value(prop: Property, value: Any, row: dict[str, Any], decimals: dict[str, int]) -> Any:
    """Python value -> OData V2 JSON value. ABAP has no nulls for characters/flags: '' and false."""
    t = prop.type
    if t == "Edm.String":
        return "" if value is None else value
    if t == "Edm.Boolean":
        return bool(value)
    if value is None:
        if t == "Edm.Decimal":
            return "0"
        if t == "Edm.Guid":
            return "00000000-0000-0000-0000-000000000000"
        return None
    if t == "Edm.DateTime":
        return f"/Date({to_millis(value)})/"
    if t == "Edm.DateTimeOffset":
        return f"/Date({to_millis(value)}+0000)/"
    if t == "Edm.Decimal":
        places = decimals.get(row.get(prop.unit) or "", prop.scale) if prop.unit else prop.scale
        if places is not None:
            return str(Decimal(value).quantize(Decimal(1).scaleb(-places)))
        return str(value)
    if t == "Edm.Guid":
        return str(value)
    if t == "Edm.Time":
        secs = int(value.total_seconds())
        return f"PT{secs // 3600:02d}H{secs % 3600 // 60:02d}M{secs % 60:02d}S"
    if t == "Edm.Int64":
        return str(value)
    return value


_DATE_RE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_value(prop: Property, value: Any) -> Any:
    """OData V2 JSON value from a request body -> Python value; raises ValueError with the Gateway's wording."""
    if value is None:
        if not prop.nullable:
            raise ValueError(f"Property '{prop.name}' must not be null")
        return None
    t = prop.type
    if t == "Edm.String":
        if not isinstance(value, str):
            raise ValueError(f"Property '{prop.name}' has invalid value '{value}'")
        if prop.max_length is not None and len(value) > prop.max_length:
            raise ValueError(f"Value '{value}' for property '{prop.name}' exceeds length {prop.max_length}")
        return value
    if t == "Edm.Boolean":
        if not isinstance(value, bool):
            raise ValueError(f"Property '{prop.name}' has invalid value '{value}'")
        return value
    if t in ("Edm.DateTime", "Edm.DateTimeOffset"):
        if isinstance(value, str):
            m = _DATE_RE.match(value)
            if m:
                return _EPOCH + timedelta(milliseconds=int(m.group(1)))
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except ValueError:
                pass
        raise ValueError(f"Property '{prop.name}' has invalid value '{value}'")
    if t == "Edm.Decimal":
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"Property '{prop.name}' has invalid value '{value}'") from None
    if t == "Edm.Guid":
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise ValueError(f"Property '{prop.name}' has invalid value '{value}'") from None
    if t == "Edm.Time":
        m = re.match(r"^PT(\d+)H(\d+)M(\d+)S$", str(value))
        if not m:
            raise ValueError(f"Property '{prop.name}' has invalid value '{value}'")
        return timedelta(hours=int(m.group(1)), minutes=int(m.group(2)), seconds=int(m.group(3)))
    return value
