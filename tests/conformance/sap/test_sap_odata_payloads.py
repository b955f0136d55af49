"""OData payloads of every entity set use only properties the published metadata declares, with values in
the JSON shape of their Edm types."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from lxml import etree

from lead2cash.sandbox.sap import METADATA_DIR

SERVICES = {
    "API_BUSINESS_PARTNER": "API_BUSINESS_PARTNER.edmx",
    "API_JOURNALENTRYITEMBASIC_SRV": "API_JOURNALENTRYITEMBASIC_SRV.edmx",
    "API_GLACCOUNTLINEITEM": "API_GLACCOUNTLINEITEM.edmx",
    "API_OPLACCTGDOCITEMCUBE_SRV": "API_OPLACCTGDOCITEMCUBE_SRV.edmx",
}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _real_model(path):  # type: ignore[no-untyped-def]
    schema = next(etree.parse(str(path)).getroot().iter("{*}Schema"))
    types = {}
    for t in schema.findall("{*}EntityType"):
        props = {p.get("Name"): p for p in t.findall("{*}Property")}
        navs = {n.get("Name") for n in t.findall("{*}NavigationProperty")}
        types[f"{schema.get('Namespace')}.{t.get('Name')}"] = (props, navs)
    sets = {
        s.get("Name"): s.get("EntityType") for s in schema.find("{*}EntityContainer").findall("{*}EntitySet")
    }
    return types, sets


def _check_value(prop, value):  # type: ignore[no-untyped-def]
    edm = prop.get("Type")
    name = prop.get("Name")
    if edm == "Edm.String":
        assert isinstance(value, str), name
        if prop.get("MaxLength"):
            assert len(value) <= int(prop.get("MaxLength")), name
    elif edm == "Edm.Boolean":
        assert isinstance(value, bool), name
    elif edm == "Edm.DateTime":
        assert value is None or re.fullmatch(r"/Date\(-?\d+\)/", value), (name, value)
    elif edm == "Edm.DateTimeOffset":
        assert value is None or re.fullmatch(r"/Date\(-?\d+[+-]\d{4}\)/", value), (name, value)
    elif edm == "Edm.Time":
        assert value is None or re.fullmatch(r"PT\d{2}H\d{2}M\d{2}S", value), (name, value)
    elif edm == "Edm.Decimal":
        assert isinstance(value, str), name
        number = Decimal(value)
        if prop.get("Scale"):
            assert -number.as_tuple().exponent <= int(prop.get("Scale")), (name, value)
    elif edm == "Edm.Guid":
        assert GUID.match(value), (name, value)
    else:  # pragma: no cover - not used by the subset
        pytest.fail(f"unexpected Edm type {edm}")


def _check_entity(entity, types, path=""):  # type: ignore[no-untyped-def]
    meta = entity["__metadata"]
    assert meta["id"] == meta["uri"] and "/sap/opu/odata/sap/" in meta["uri"]
    props, navs = types[meta["type"]]
    for name, value in entity.items():
        if name == "__metadata":
            continue
        if name in navs:
            if isinstance(value, dict) and "__deferred" in value:
                assert value["__deferred"]["uri"] == f"{meta['uri']}/{name}"
            elif isinstance(value, dict) and "results" in value:
                for child in value["results"]:
                    _check_entity(child, types)
            elif value is not None:
                _check_entity(value, types)
            continue
        assert name in props, f"{meta['type']}.{name} is not declared by the published metadata"
        _check_value(props[name], value)


@pytest.fixture(scope="module")
def posted(sap_conf_cluster):  # type: ignore[no-untyped-def]
    """Put a journal entry in the ledger so the item sets are not empty."""
    sandbox = sap_conf_cluster.running["sap"].system
    from datetime import date

    from lead2cash.sandbox.sap.ledger import EntryLine, EntryRequest

    result = sandbox.ledger.post(
        EntryRequest(
            company_code="1510",
            document_date=date(2024, 3, 1),
            posting_date=date(2024, 3, 1),
            document_type="DR",
            business_transaction_type="RFBU",
            original_reference_type="BKPFF",
            created_by="CONF",
            document_reference_id="CONF-1",
            lines=[
                EntryLine("DEBTOR", "1000003", Decimal("110"), "JPY"),
                EntryLine("GL", "41000000", Decimal("-100"), "JPY", tax_code="A1"),
                EntryLine("TAX", "", Decimal("-10"), "JPY", tax_code="A1", tax_base=Decimal("-100")),
            ],
        )
    )
    assert result.document
    return result


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_entity_set_conforms(service, specs_dir, sap_conf, posted):
    real = specs_dir / "sap" / SERVICES[service]
    # A service not among specs/sap is held to the subset, whose facets test_sap_edmx_conformance checks.
    types, sets = _real_model(real if real.is_file() else METADATA_DIR / f"{service}.xml")
    ours = etree.fromstring(sap_conf.get(f"/sap/opu/odata/sap/{service}/$metadata").content)
    our_sets = [s.get("Name") for s in ours.iter("{*}EntitySet")]
    assert our_sets
    for entity_set in our_sets:
        assert entity_set in sets
        expand = (
            "to_BusinessPartnerAddress,to_BusinessPartnerRole,to_Customer/to_CustomerCompany"
            if (entity_set == "A_BusinessPartner")
            else None
        )
        params = {"$top": "5", "$inlinecount": "allpages"} | ({"$expand": expand} if expand else {})
        r = sap_conf.get(f"/sap/opu/odata/sap/{service}/{entity_set}", params=params)
        assert r.status_code == 200, r.text
        body = r.json()["d"]
        assert int(body["__count"]) > 0, entity_set
        for entity in body["results"]:
            assert entity["__metadata"]["type"] == sets[entity_set]
            _check_entity(entity, types)


def test_amounts_use_currency_decimals(sap_conf, posted):
    items = sap_conf.get(
        "/sap/opu/odata/sap/API_GLACCOUNTLINEITEM/GLAccountLineItem",
        params={"$filter": f"AccountingDocument eq '{posted.document}' and CompanyCode eq '1510'"},
    ).json()["d"]["results"]
    assert sorted(i["AmountInTransactionCurrency"] for i in items) == ["-10", "-100", "110"]
