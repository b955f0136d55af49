"""SAP S/4HANA transport: OData V2 over httpx (``odata``), the journal entry SOAP service over zeep (``soap``)
and, optionally, BAPIs over pyrfc (``rfc``). Transport only: auth, sessions, CSRF, paging, error
classification into ``lead2cash.errors``; no canonical model."""

from __future__ import annotations

from pathlib import Path

WSDL_DIR = Path(__file__).with_name("wsdl")
DEFAULT_WSDL = WSDL_DIR / "journalentrycreaterequestconfi.wsdl"
"""The team-written subset of ``JournalEntryCreateRequestConfirmation_In`` used when no tenant WSDL is set."""

__all__ = ["DEFAULT_WSDL", "WSDL_DIR"]
