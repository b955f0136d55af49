"""The shipped subset WSDL against SAP's published JOURNALENTRYCREATEREQUESTCONFI.wsdl: every element of the
subset exists in the real schema with the same name, type, order and cardinality; every real element the
subset leaves out is optional; simple types carry the same facets."""

from __future__ import annotations

from lxml import etree

from lead2cash.sandbox.sap import WSDL_PATH

XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
ROOTS = ("JournalEntryBulkCreateRequest", "JournalEntryBulkCreateConfirmation")


class Wsdl:
    def __init__(self, path):  # type: ignore[no-untyped-def]
        self.doc = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        self.schema = self.doc.find(f".//{XS}schema")
        self.complex = {c.get("name"): c for c in self.schema.findall(f"{XS}complexType")}
        self.simple = {s.get("name"): s for s in self.schema.findall(f"{XS}simpleType")}
        self.elements = {e.get("name"): e.get("type") for e in self.schema.findall(f"{XS}element")}

    def sequence(self, type_name: str) -> list[tuple[str, str, str, str]]:
        seq = self.complex[type_name].find(f"{XS}sequence")
        return [
            (e.get("name"), e.get("type"), e.get("minOccurs", "1"), e.get("maxOccurs", "1"))
            for e in seq.findall(f"{XS}element")
        ]

    def content_base(self, type_name: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        ext = self.complex[type_name].find(f"{XS}simpleContent/{XS}extension")
        if ext is None:
            return None
        return ext.get("base"), [(a.get("name"), a.get("use")) for a in ext.findall(f"{XS}attribute")]

    def facets(self, type_name: str) -> tuple[str, list[tuple[str, str]]]:
        restriction = self.simple[type_name].find(f"{XS}restriction")
        return restriction.get("base"), sorted(
            (etree.QName(f).localname, f.get("value"))
            for f in restriction
            if isinstance(f.tag, str) and etree.QName(f).localname != "annotation"
        )


def test_namespaces_operation_messages_and_bindings(specs_dir):
    ours, real = Wsdl(WSDL_PATH), Wsdl(specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl")
    for doc in (ours, real):
        assert doc.doc.getroot().get("targetNamespace") == "http://sap.com/xi/SAPSCORE/SFIN"
        assert doc.schema.get("elementFormDefault") is None  # local elements unqualified in both
    assert ours.schema.get("targetNamespace") == real.schema.get("targetNamespace")
    for root in ROOTS:
        assert ours.elements[root] == real.elements[root]

    def ops(doc):  # type: ignore[no-untyped-def]
        root = doc.doc.getroot()
        port_types = {
            (
                pt.get("name"),
                op.get("name"),
                op.find(f"{WSDL}input").get("message"),
                op.find(f"{WSDL}output").get("message"),
            )
            for pt in root.findall(f"{WSDL}portType")
            for op in pt.findall(f"{WSDL}operation")
        }
        messages = {
            (m.get("name"), p.get("element"))
            for m in root.findall(f"{WSDL}message")
            for p in m.findall(f"{WSDL}part")
        }
        actions = {
            (
                b.get("name"),
                etree.QName(op.find("*[@soapAction]")).namespace,
                op.find("*[@soapAction]").get("soapAction"),
            )
            for b in root.findall(f"{WSDL}binding")
            for op in b.findall(f"{WSDL}operation")
        }
        return port_types, messages, actions

    assert ops(ours) == ops(real)


def test_every_subset_element_matches_the_real_schema(specs_dir):
    ours, real = Wsdl(WSDL_PATH), Wsdl(specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl")
    checked: set[str] = set()
    pending = [ours.elements[r] for r in ROOTS]
    while pending:
        type_name = pending.pop()
        if type_name in checked:
            continue
        checked.add(type_name)
        if type_name in ours.simple:
            assert ours.facets(type_name) == real.facets(type_name), type_name
            continue
        assert type_name in real.complex, type_name
        simple_content = ours.content_base(type_name)
        if simple_content is not None:
            assert simple_content == real.content_base(type_name), type_name
            pending.append(simple_content[0])
            continue
        real_seq = real.sequence(type_name)
        positions = {name: i for i, (name, *_rest) in enumerate(real_seq)}
        last = -1
        kept = set()
        for element in ours.sequence(type_name):
            name = element[0]
            assert name in positions, f"{type_name}/{name} is not in the published schema"
            assert positions[name] > last, f"{type_name}/{name} is out of order"
            last = positions[name]
            assert element == real_seq[positions[name]], f"{type_name}/{name}"
            kept.add(name)
            if not element[1].startswith("xsd:"):
                pending.append(element[1])
        for name, _type, min_occurs, _max in real_seq:
            if name not in kept:
                assert min_occurs == "0", f"{type_name}/{name} is required by SAP but missing from the subset"
    assert len(checked) > 30
