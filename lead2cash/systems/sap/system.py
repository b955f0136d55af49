"""The ``sap`` system type: SAP S/4HANA, the ledger (SOAP, OData, RFC)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lead2cash.config.base import Strict
from lead2cash.config.sap import SapSystemConfig
from lead2cash.systems.registry import NoOptions, Operation, SystemType


class JournalEntryOptions(Strict):
    long_references: Literal["reject", "tail"] = Field(
        "reject", description="a reference longer than SAP's field: dead-lettered, or its tail kept"
    )


class ReversalOptions(JournalEntryOptions):
    after_route: str | None = Field(
        None, description="with after_key: a void waits for this route's posting of the same invoice"
    )
    after_key: str | None = Field(None, description="the key template of that posting (with after_route)")


SYSTEM = SystemType(
    name="sap",
    description="SAP S/4HANA, the ledger: journal entries posted, business partners ensured.",
    config=SapSystemConfig,
    build="lead2cash.systems.sap.binding:build",
    actions=(
        Operation("journal_entry.post", "an Invoice or CreditNote as a journal entry", JournalEntryOptions),
        Operation(
            "journal_entry.reverse",
            "a voided Invoice's posting reversed (<number>-RV); nothing for one never posted",
            ReversalOptions,
        ),
        Operation(
            "payment.clear",
            "a Payment: the receivable cleared against the clearing account (<number>-P<version>)",
            JournalEntryOptions,
        ),
        Operation(
            "payment_record.clear",
            "a Payment of Lago's payment records: the receivable cleared by its amount (P<id>-<version>)",
            JournalEntryOptions,
        ),
        Operation(
            "credit_note.refund",
            "a CreditNote's refund as cash out: receivable against the clearing account (<number>-RF)",
            JournalEntryOptions,
        ),
        Operation(
            "wallet_credits.void",
            "a WalletTransaction: paid credits voided, the advance released (VC<id>); others post nothing",
            JournalEntryOptions,
        ),
        Operation("business_partner.ensure", "a Customer as a business partner", NoOptions),
    ),
    adapters=("lead2cash.adapters.sap",),
    live_check="lead2cash.testing.metadata:check_sap",
    sandbox="lead2cash.sandbox.sap:SapSandbox",
)
