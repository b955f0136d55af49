"""Every entity survives JSON and Python round trips unchanged; money never travels as a JSON float."""

from __future__ import annotations

import json
from typing import Any

import pytest
from canonical_factories import all_entities

from lead2cash.canonical_model import ENTITY_TYPES, CanonicalEntity, entity_from_json

ENTITIES = all_entities()


def _no_floats(text: str) -> Any:
    def refuse(literal: str) -> Any:
        raise AssertionError(f"JSON float {literal} in canonical payload")

    return json.loads(text, parse_float=refuse)


def test_every_entity_type_has_a_sample() -> None:
    assert {type(e).__name__ for e in ENTITIES} == set(ENTITY_TYPES)


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: type(e).__name__)
def test_json_round_trip_is_lossless(entity: CanonicalEntity) -> None:
    payload = entity.model_dump_json()
    revived = ENTITY_TYPES[entity.entity_type].model_validate_json(payload)
    assert revived == entity
    assert revived.model_dump_json() == payload
    assert entity_from_json(type(entity).__name__, payload.encode()) == entity
    _no_floats(payload)


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: type(e).__name__)
def test_python_round_trip(entity: CanonicalEntity) -> None:
    assert type(entity).model_validate(entity.model_dump()) == entity
    assert type(entity).model_validate(json.loads(entity.model_dump_json())) == entity


@pytest.mark.parametrize("cls", ENTITY_TYPES.values(), ids=lambda c: c.__name__)
def test_json_schema_is_available(cls: type[CanonicalEntity]) -> None:
    for mode in ("validation", "serialization"):
        schema = cls.model_json_schema(mode=mode)
        assert "refs" in schema["properties"]


def test_money_in_json_keeps_trailing_zeros() -> None:
    invoice = next(e for e in ENTITIES if type(e).__name__ == "Invoice")
    data = _no_floats(invoice.model_dump_json())
    assert data["total"] == {"amount": "2200.43", "currency": "EUR"}
    assert data["lines"][0]["unit_price"] == {"amount": "44.91", "currency": "EUR"}
    assert data["lines"][0]["quantity"] == "10"
    assert data["taxes"][0]["rate"] == "19"


def test_decimals_serialize_in_fixed_point() -> None:
    from decimal import Decimal

    from canonical_factories import make_order_line

    line = make_order_line(quantity=Decimal("1E+3"), discount_percent=Decimal("2.50E+1"))
    data = _no_floats(line.model_dump_json())
    assert data["quantity"] == "1000"
    assert data["discount_percent"] == "25.0"
    assert type(line).model_validate_json(line.model_dump_json()) == line
