"""Config of an SAP S/4HANA system (``type: sap``).

Mapping tables (``revenue_accounts``, ``tax_codes``, ``profit_centers``, ``cost_centers``) are either inline
maps or the name of a table under ``mappings:``. Keys are product codes or product families (revenue,
centres) or the billing system's tax codes; ``_default`` catches the rest.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator

from lead2cash.config.base import DottedPath, Duration, JMESPath, Strict

TableRef = Annotated[
    str | dict[str, Any],
    Field(description="the name of a table under mappings:, or an inline map"),
]


class SapBasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: SecretStr


class SapOAuth(Strict):
    """OAuth 2.0 client credentials (SAP BTP / S/4HANA Cloud communication arrangements)."""

    type: Literal["oauth"]
    token_url: str
    client_id: str
    client_secret: SecretStr
    scope: str | None = None


SapAuth = Annotated[SapBasicAuth | SapOAuth, Field(discriminator="type")]


class SapODataConfig(Strict):
    """OData V2 service roots: full URLs or paths under ``base_url``."""

    business_partner: str = "/sap/opu/odata/sap/API_BUSINESS_PARTNER"
    operational_acctg_doc_item: str = "/sap/opu/odata/sap/API_OPLACCTGDOCITEMCUBE_SRV"
    page_size: int = Field(500, ge=1, le=5000)


class SapLookupConfig(Strict):
    """Where the crash-recovery lookup finds a posted entry by its reference: the journal entry items of
    API_OPLACCTGDOCITEMCUBE_SRV by the header's DocumentReferenceID (XBLNR, the 16 characters the posting
    sets). API_GLACCOUNTLINEITEM's ReferenceDocument (10 characters) is the reference key's document
    number, not XBLNR, and API_JOURNALENTRYITEMBASIC_SRV has no reference at all: neither can find a
    posting by its reference."""

    service: Literal["operational_acctg_doc_item"] = "operational_acctg_doc_item"
    entity_set: str = "A_OperationalAcctgDocItemCube"
    reference_field: str = "DocumentReferenceID"
    document_field: str = "AccountingDocument"
    company_code_field: str = "CompanyCode"
    fiscal_year_field: str = "FiscalYear"
    clock_skew: Duration = Field(
        5.0,
        description="how far the billing engine's clock and the hub's may disagree: a document the engine "
        "created before this process started, or within this much after, is looked up before it is posted "
        "(a store restored from a backup has forgotten what was posted in its place)",
    )


class SapSoapConfig(Strict):
    journal_entry_post: str = Field(
        "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi",
        description="endpoint of JournalEntryCreateRequestConfirmation_In (URL or path under base_url)",
    )
    wsdl: str | None = Field(
        None, description="tenant WSDL: a local path or URL; default: the subset WSDL lead2cash ships"
    )
    soap_version: Literal["1.1", "1.2"] = "1.1"
    workers: int = Field(8, ge=1, le=64, description="threads for the blocking zeep client")
    timeout: Duration = 60.0
    bulk_size: int = Field(
        100, ge=1, le=1000, description="journal entries per bulk message (the deliveries in flight)"
    )
    bulk_linger: Duration = Field(
        0.02, le=5, description="how long a bulk message waits for more entries once started"
    )
    logical_system: str | None = Field(
        None, max_length=10, description="OriginalReferenceDocumentLogicalSystem of posted entries"
    )
    created_by_user: str | None = Field(None, max_length=12)


class SapRfcConfig(Strict):
    """pyrfc ``Connection`` parameters (ashost, sysnr, client, user, lang, ...); ``secrets`` holds passwd."""

    params: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    connection_factory: DottedPath | None = Field(
        None, description="'module:function(**params)' returning a pyrfc-compatible connection (tests)"
    )


class SapBusinessPartnerConfig(Strict):
    search_field: Literal["SearchTerm1", "SearchTerm2", "BusinessPartnerIDByExtSystem"] = "SearchTerm1"
    search_value: JMESPath = Field(
        "refs.salesforce || id", description="JMESPath over the canonical customer: the search key"
    )
    category: Literal["1", "2"] = "2"
    grouping: str | None = Field(None, max_length=4)
    roles: list[str] = Field(default_factory=lambda: ["FLCU00", "FLCU01"])
    payment_terms: str | None = Field(None, max_length=4)
    language: str | None = Field(None, max_length=2)
    create: bool = Field(True, description="create missing partners; off: a missing partner is an error")


class SapSystemConfig(Strict):
    type: Literal["sap"]
    base_url: str
    client: str | None = Field(None, description="SAP client, sent as sap-client")
    auth: SapAuth
    ca_bundle: str | None = Field(None, description="PEM file of the CAs to trust (default: system store)")
    timeout: Duration = 30.0
    retries: int = Field(
        4, ge=0, le=20, description="quick in-call retries of OData reads before the route's own retry"
    )
    max_inline_wait: Duration = Field(
        5.0, description="a longer Retry-After is handed to the route (which pauses) instead of waited"
    )
    odata: SapODataConfig = Field(default_factory=lambda: SapODataConfig())
    soap: SapSoapConfig = Field(default_factory=lambda: SapSoapConfig())
    rfc: SapRfcConfig | None = None
    transport: Literal["soap", "rfc"] = "soap"
    lookup: SapLookupConfig = Field(default_factory=lambda: SapLookupConfig())
    company_code: str | None = Field(None, max_length=4, description="fixed company code")
    company_code_by_currency: dict[str, str] = Field(default_factory=dict)
    receivables_account: str = Field("12100000", description="customer reconciliation account")
    tax_account: str = Field("22000000", description="output tax account (for the canonical entry)")
    revenue_accounts: TableRef = Field(
        validation_alias=AliasChoices("revenue_accounts", "revenue_account_by_family"),
        description="product code / family -> revenue account (or {account: weight})",
    )
    tax_codes: TableRef = Field(
        validation_alias=AliasChoices("tax_codes", "tax_code_by_catalog_code"),
        description="billing tax code -> SAP tax code",
    )
    profit_centers: TableRef | None = None
    cost_centers: TableRef | None = None
    invoice_postings: TableRef | None = Field(
        None,
        description="billing engine invoice type -> revenue | advance (default: Lago's credit invoices "
        "are advances, every other type revenue)",
    )
    advance_account: str | None = Field(
        None,
        description="customer advances (liability): wallet top-ups credited, prepaid credits applied debited",
    )
    granted_credits_account: str | None = Field(
        None,
        description="granted (free) wallet credits consumed on invoices: a sales deduction (contra-revenue) "
        "debited instead of the advance, no cash having been received for them",
    )
    voided_credits_account: str | None = Field(
        None,
        description="paid wallet credits voided without a refund: the advance released to this account "
        "(other operating income, breakage); action wallet_credits.void",
    )
    clearing_accounts: TableRef | None = Field(
        None,
        description="incoming payments' bank/clearing account: '<provider>:<currency>', '<currency>', "
        "'<provider>' or _default -> G/L account (action payment.clear)",
    )
    payment_document_type: str = Field("DZ", max_length=5, description="document type of payment clearings")
    document_type: str = Field("DR", max_length=5)
    credit_document_type: str = Field("DG", max_length=5)
    posting_date: Literal["invoice_date", "today_if_closed"] = "invoice_date"
    business_partner: SapBusinessPartnerConfig = Field(default_factory=lambda: SapBusinessPartnerConfig())

    @model_validator(mode="after")
    def _check(self) -> SapSystemConfig:
        if not self.company_code and not self.company_code_by_currency:
            raise ValueError("give company_code or company_code_by_currency")
        if self.transport == "rfc":
            if self.rfc is None:
                raise ValueError("transport: rfc needs an 'rfc:' section with the connection parameters")
            if self.rfc.connection_factory is None and importlib.util.find_spec("pyrfc") is None:
                raise ValueError(
                    "transport: rfc needs pyrfc, which is not installed: pip install 'lead2cash[rfc]' "
                    "(it also needs SAP's NW RFC SDK, licensed separately)"
                )
        return self
