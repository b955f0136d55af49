"""The tutorial's one small mapping function (docs/tutorial-credit-notes.md).

SAP's DocumentReferenceID (XBLNR) holds 16 characters. Lago numbers a credit note after its invoice
(``LAG-1234-001-002`` -> ``LAG-1234-001-002-CN001``), so the number rarely fits. The shipped ``lago.credit_note``
adapter does the translation; this function only shortens the number to its longest tail of whole
``-`` segments that fits (``001-002-CN001``): the dropped head is part of the organization's prefix, the same on every
document, so the tail stays unique and is the same on every read (crash recovery finds the entry by it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lead2cash.adapters.lago import credit_note_from_lago
from lead2cash.canonical_model import CreditNote

SAP_REFERENCE_LENGTH = 16


def sap_reference(number: str, limit: int = SAP_REFERENCE_LENGTH) -> str:
    """``number`` if it fits, else its longest tail of whole ``-`` segments that does."""
    if len(number) <= limit:
        return number
    parts = number.split("-")
    for start in range(1, len(parts)):
        tail = "-".join(parts[start:])
        if len(tail) <= limit:
            return tail
    raise ValueError(f"credit_note_number: {number!r} has no tail of at most {limit} characters")


def credit_note_for_sap(record: Mapping[str, Any]) -> CreditNote:
    note = credit_note_from_lago(record)
    return note.model_copy(update={"credit_note_number": sap_reference(note.credit_note_number)})
