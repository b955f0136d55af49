"""Simulator of SAP S/4HANA: OData V2 (business partners, journal entry items, G/L line items) and the SOAP
journal entry post service, with SAP's logon, session and CSRF behaviour. See ``app`` for endpoints, fault
operations and effect kinds, and ``config`` for company codes, accounts and tax codes."""

from lead2cash.sandbox.sap.app import SapSandbox
from lead2cash.sandbox.sap.edm import METADATA_DIR
from lead2cash.sandbox.sap.soap import WSDL_PATH

__all__ = ["METADATA_DIR", "WSDL_PATH", "SapSandbox"]
