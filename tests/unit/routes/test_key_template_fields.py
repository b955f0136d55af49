"""A key template naming a field the canonical entity does not have is found before any record is read."""

from __future__ import annotations

from lead2cash.canonical_model import Invoice, Order
from lead2cash.routes.mapping import unknown_fields


def test_field_paths_are_checked_against_the_entity() -> None:
    assert unknown_fields("order:{id}:v{version}", Order) == []
    assert unknown_fields("order:{customer.id}", Order) == []
    assert unknown_fields("order:{idd}:v{version}", Order) == ["idd"]
    assert unknown_fields("{customer.idx}", Order) == ["customer.idx"]
    assert unknown_fields("invoice:{invoice_numbr}", Invoice) == ["invoice_numbr"]


def test_maps_and_expressions_are_not_judged() -> None:
    assert unknown_fields("order:{refs.salesforce}", Order) == []
    assert unknown_fields("order:{join('-', [id, currency])}", Order) == []
