from __future__ import annotations

import pytest

from lead2cash.canonical_model import Customer
from lead2cash.routes.errors import MappingError
from lead2cash.routes.mapping import KeyTemplate, build_filter, build_mapper


def test_key_template_renders_jmespath_placeholders() -> None:
    key = KeyTemplate("order:{refs.salesforce}:v{version}")
    assert key.render({"refs": {"salesforce": "006A"}, "version": 3}) == "order:006A:v3"
    with pytest.raises(MappingError, match=r"refs\.salesforce"):
        key.render({"refs": {}, "version": 3})
    with pytest.raises(ValueError, match="at least one"):
        KeyTemplate("constant")


def test_filter_is_jmespath_truthiness() -> None:
    won = build_filter("IsWon && StageName == 'Closed Won'")
    assert won({"IsWon": True, "StageName": "Closed Won"})
    assert not won({"IsWon": False, "StageName": "Closed Won"})
    assert not won({})


def test_mapper_applies_field_overrides_and_value_maps() -> None:
    mapper = build_mapper(
        lambda r: {"id": r["Id"], "name": r["Name"]},
        Customer,
        fields={"language": "Lang", "billing_address.country": "Country"},
        value_maps={"language": "languages"},
        tables={"languages": {"German": "de", "_default": "en"}},
    )
    customer = mapper({"Id": "001", "Name": "Acme", "Lang": "German", "Country": "DE"})
    assert isinstance(customer, Customer)
    assert customer.language == "de" and customer.billing_address is not None
    assert customer.billing_address.country == "DE"
    assert mapper({"Id": "2", "Name": "B", "Lang": "Klingon", "Country": "US"}).language == "en"  # type: ignore[attr-defined]


def test_value_map_without_default_rejects_unknown_values() -> None:
    mapper = build_mapper(
        lambda r: {"id": "1", "name": "n", "language": r["l"]},
        Customer,
        value_maps={"language": "langs"},
        tables={"langs": {"German": "de"}},
    )
    with pytest.raises(MappingError, match="language"):
        mapper({"l": "French"})
