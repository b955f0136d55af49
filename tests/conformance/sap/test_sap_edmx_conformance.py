"""The team-written subset EDMX files against SAP's published ones (specs/sap, read in place)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from lead2cash.sandbox.sap import METADATA_DIR

PAIRS = [
    ("API_BUSINESS_PARTNER.xml", "API_BUSINESS_PARTNER.edmx"),
    ("API_JOURNALENTRYITEMBASIC_SRV.xml", "API_JOURNALENTRYITEMBASIC_SRV.edmx"),
    ("API_GLACCOUNTLINEITEM.xml", "API_GLACCOUNTLINEITEM.edmx"),
    ("API_OPLACCTGDOCITEMCUBE_SRV.xml", "API_OPLACCTGDOCITEMCUBE_SRV.edmx"),
]
# Not among specs/sap: https://api.sap.com/api/API_OPLACCTGDOCITEMCUBE_SRV/overview. Until its EDMX is added
# there, the facets the lookup depends on are checked against these, transcribed from the published file
# (Type, Nullable, MaxLength, Precision, Scale).
PUBLISHED_CUBE_FACETS = {
    "CompanyCode": {
        "Type": "Edm.String",
        "Nullable": "false",
        "MaxLength": "4",
        "Precision": None,
        "Scale": None,
    },
    "FiscalYear": {
        "Type": "Edm.String",
        "Nullable": "false",
        "MaxLength": "4",
        "Precision": None,
        "Scale": None,
    },
    "AccountingDocument": {
        "Type": "Edm.String",
        "Nullable": "false",
        "MaxLength": "10",
        "Precision": None,
        "Scale": None,
    },
    "AccountingDocumentItem": {
        "Type": "Edm.String",
        "Nullable": "false",
        "MaxLength": "3",
        "Precision": None,
        "Scale": None,
    },
    "DocumentReferenceID": {
        "Type": "Edm.String",
        "Nullable": None,
        "MaxLength": "16",
        "Precision": None,
        "Scale": None,
    },
    "OriginalReferenceDocument": {
        "Type": "Edm.String",
        "Nullable": None,
        "MaxLength": "20",
        "Precision": None,
        "Scale": None,
    },
}
FACETS = ("Type", "Nullable", "MaxLength", "Precision", "Scale")


class Edmx:
    def __init__(self, path: Path):
        root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
        self.schema = next(root.iter("{*}Schema"))
        self.namespace = self.schema.get("Namespace")
        self.container = self.schema.find("{*}EntityContainer")
        self.types = {t.get("Name"): t for t in self.schema.findall("{*}EntityType")}
        self.assocs = {
            a.get("Name"): {e.get("Role"): (e.get("Type").split(".")[-1], e.get("Multiplicity")) for e in a}
            for a in self.schema.findall("{*}Association")
        }
        self.sets = {
            s.get("Name"): s.get("EntityType").split(".")[-1] for s in self.container.findall("{*}EntitySet")
        }

    def properties(self, type_name: str) -> dict[str, dict[str, str | None]]:
        return {
            p.get("Name"): {f: p.get(f) for f in FACETS} for p in self.types[type_name].findall("{*}Property")
        }

    def keys(self, type_name: str) -> list[str]:
        return [k.get("Name") for k in self.types[type_name].find("{*}Key")]

    def navigations(self, type_name: str) -> dict[str, tuple[str, str]]:
        out = {}
        for nav in self.types[type_name].findall("{*}NavigationProperty"):
            assoc = self.assocs[nav.get("Relationship").split(".")[-1]]
            out[nav.get("Name")] = assoc[nav.get("ToRole")]
        return out


@pytest.fixture(params=PAIRS, ids=[p[0] for p in PAIRS])
def pair(request, specs_dir):  # type: ignore[no-untyped-def]
    ours, real = request.param
    if not (specs_dir / "sap" / real).is_file():
        pytest.skip(
            f"{real} is not in specs/sap (test_cube_subset_has_the_published_facets checks the lookup)"
        )
    return Edmx(METADATA_DIR / ours), Edmx(specs_dir / "sap" / real)


def test_cube_subset_has_the_published_facets():
    ours = Edmx(METADATA_DIR / "API_OPLACCTGDOCITEMCUBE_SRV.xml")
    assert ours.sets == {"A_OperationalAcctgDocItemCube": "A_OperationalAcctgDocItemCubeType"}
    type_name = "A_OperationalAcctgDocItemCubeType"
    assert ours.keys(type_name) == [
        "CompanyCode",
        "FiscalYear",
        "AccountingDocument",
        "AccountingDocumentItem",
    ]
    props = ours.properties(type_name)
    for name, facets in PUBLISHED_CUBE_FACETS.items():
        assert props[name] == facets, name


def test_namespace_container_and_sets(pair):
    ours, real = pair
    assert ours.namespace == real.namespace
    assert ours.container.get("Name") == real.container.get("Name")
    assert ours.sets, "the subset must declare entity sets"
    for name, type_name in ours.sets.items():
        assert real.sets.get(name) == type_name, f"entity set {name}"


def test_types_properties_and_facets(pair):
    ours, real = pair
    for type_name in ours.types:
        assert type_name in real.types, type_name
        assert ours.keys(type_name) == real.keys(type_name)
        real_props = real.properties(type_name)
        for prop, facets in ours.properties(type_name).items():
            assert prop in real_props, f"{type_name}.{prop} is not in the published metadata"
            assert facets == real_props[prop], f"{type_name}.{prop}"


def test_navigation_properties_and_multiplicities(pair):
    ours, real = pair
    for type_name in ours.types:
        real_navs = real.navigations(type_name)
        for nav, target in ours.navigations(type_name).items():
            assert real_navs.get(nav) == target, f"{type_name}/{nav}"


def test_pyodata_reads_the_subset():
    from pyodata.v2.model import MetadataBuilder

    for ours, _ in PAIRS:
        schema = MetadataBuilder((METADATA_DIR / ours).read_bytes()).build()
        assert schema.entity_sets
