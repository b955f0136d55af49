"""The sandbox's general ledger: checks and posts journal entries, assigns document numbers, keeps the line
items that API_GLACCOUNTLINEITEM, API_JOURNALENTRYITEMBASIC_SRV and API_OPLACCTGDOCITEMCUBE_SRV serve, and the
trial balance.

References as a tenant keeps them for a ``BKPFF`` posting: the header's ``DocumentReferenceID`` (XBLNR, 16
characters) is the reference the sender chose; the reference key (AWKEY, ``OriginalReferenceDocument``) is
the document's own number, company code and year, and ``ReferenceDocument`` (AWREF, 10 characters) the number.

Log messages carry SAP's message class and number as ``TypeID`` (``"702(F5)"``). The texts follow SAP's
wording where known ("Balance in transaction currency", "Posting period 011 2024 is not open",
"Document posted successfully: BKPFF ..."); the other numbers are the sandbox's approximations.

Amounts are signed (debit positive, credit negative). ``DebitCreditCode`` (S = debit, H = credit) is optional
and, when sent, must agree with the sign. Several company codes may be posted in any of the catalogue
currencies; foreign currencies are translated into the company code currency at fixed rates.
``DocumentReferenceID`` is not checked for uniqueness (SAP checks duplicate references for supplier invoices
only), so a posting sent twice books twice: the effect counter shows it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lead2cash.sandbox.sap import config
from lead2cash.sandbox.sap.odata import Row, Table

SUCCESS, WARNING, ERROR = "1", "2", "3"


@dataclass
class EntryLine:
    kind: str  # GL | DEBTOR | TAX
    account: str  # G/L account, or the debtor for DEBTOR lines
    amount: Decimal
    currency: str
    debit_credit: str | None = None
    reference_item: str | None = None
    text: str | None = None
    assignment: str | None = None
    tax_code: str | None = None
    tax_base: Decimal | None = None
    profit_center: str | None = None
    cost_center: str | None = None


@dataclass
class EntryRequest:
    company_code: str
    document_date: date
    posting_date: date
    document_type: str
    business_transaction_type: str
    original_reference_type: str
    created_by: str
    lines: list[EntryLine]
    original_reference: str | None = None
    logical_system: str | None = None
    document_reference_id: str | None = None
    header_text: str | None = None
    message_id: str | None = None


@dataclass
class LogItem:
    type_id: str
    severity: str
    note: str


@dataclass
class PostingResult:
    document: str | None
    company_code: str
    fiscal_year: str
    log: list[LogItem] = field(default_factory=list)

    @property
    def max_severity(self) -> str:
        return max((i.severity for i in self.log), default=SUCCESS)


CustomerLookup = Callable[[str, str], Row | None]  # (customer, company code) -> A_CustomerCompany row


class Ledger:
    def __init__(
        self, customer_company: CustomerLookup, customer_name: Callable[[str], str], logical_system: str
    ):
        self.customer_company = customer_company
        self.customer_name = customer_name
        self.logical_system = logical_system
        self.lock = threading.Lock()
        self.items = Table(["ID"], ("CompanyCode", "AccountingDocument", "ReferenceDocument", "GLAccount"))
        # The same rows under the operational item cube's key (API_OPLACCTGDOCITEMCUBE_SRV).
        self.document_items = Table(
            ["CompanyCode", "FiscalYear", "AccountingDocument", "AccountingDocumentItem"],
            ("DocumentReferenceID", "AccountingDocument"),
        )
        self.closed_periods: set[tuple[str, int, int]] = set()
        self.documents: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._next_number: dict[tuple[str, str, int], int] = {}

    def reset(self) -> None:
        with self.lock:
            self.items.clear()
            self.document_items.clear()
            self.closed_periods.clear()
            self.documents.clear()
            self._next_number.clear()

    # --- periods ---------------------------------------------------------------------------------------

    def set_period(self, company_code: str, fiscal_year: int, period: int, is_open: bool) -> None:
        if company_code not in config.COMPANY_CODES:
            raise KeyError(company_code)
        key = (company_code, fiscal_year, period)
        with self.lock:
            if is_open:
                self.closed_periods.discard(key)
            else:
                self.closed_periods.add(key)

    # --- posting -----------------------------------------------------------------------------------------

    def post(self, entry: EntryRequest) -> PostingResult:
        year = str(entry.posting_date.year)
        result = PostingResult(None, entry.company_code, year)
        errors = self._check(entry)
        ref_type = entry.original_reference_type
        logsys = entry.logical_system or self.logical_system
        if errors:
            result.log = [LogItem("609(RW)", ERROR, f"Error in document: {ref_type} $ {logsys}"), *errors]
            return result
        with self.lock:
            docno = self._number(entry.company_code, year, entry.document_type)
            self._book(entry, docno)
        result.document = docno
        result.log = [
            LogItem(
                "614(RW)",
                SUCCESS,
                f"Document posted successfully: {ref_type} {docno}{entry.company_code}{year} {logsys}",
            )
        ]
        return result

    def _check(self, entry: EntryRequest) -> list[LogItem]:
        cc = config.COMPANY_CODES.get(entry.company_code)
        if cc is None:
            return [LogItem("165(F5)", ERROR, f"Company code {entry.company_code} is not defined")]
        errors: list[LogItem] = []
        period = entry.posting_date.month
        if (cc.code, entry.posting_date.year, period) in self.closed_periods:
            errors.append(
                LogItem(
                    "201(F5)", ERROR, f"Posting period {period:03d} {entry.posting_date.year} is not open"
                )
            )
        if not entry.lines:
            errors.append(LogItem("305(F5)", ERROR, "No items were transferred for the document"))
            return errors
        currencies = {line.currency for line in entry.lines}
        if len(currencies) > 1:
            errors.append(
                LogItem(
                    "110(F5)", ERROR, f"Transaction currency must be uniform: {', '.join(sorted(currencies))}"
                )
            )
        for line in entry.lines:
            errors.extend(self._check_line(cc, line))
        if len(currencies) == 1 and not errors:
            balance = sum((line.amount for line in entry.lines), Decimal(0))
            if balance != 0:
                currency = next(iter(currencies))
                errors.append(
                    LogItem("702(F5)", ERROR, f"Balance in transaction currency: {balance} {currency}")
                )
            errors.extend(self._check_tax(cc, entry))
        return errors

    def _check_line(self, cc: config.CompanyCode, line: EntryLine) -> list[LogItem]:
        errors = []
        places = config.CURRENCY_DECIMALS.get(line.currency)
        if places is None:
            return [LogItem("104(F5)", ERROR, f"Currency {line.currency} is not defined")]
        if -line.amount.as_tuple().exponent > places and line.amount != line.amount.quantize(
            Decimal(1).scaleb(-places)
        ):
            errors.append(
                LogItem(
                    "191(FF)",
                    ERROR,
                    f"Amount {line.amount} {line.currency} has more than {places} decimal places",
                )
            )
        if line.debit_credit is not None:
            if line.debit_credit not in ("S", "H"):
                errors.append(
                    LogItem("115(F5)", ERROR, f"Debit/credit code {line.debit_credit} is not valid")
                )
            elif (line.debit_credit == "S" and line.amount < 0) or (
                line.debit_credit == "H" and line.amount > 0
            ):
                errors.append(
                    LogItem(
                        "115(F5)",
                        ERROR,
                        f"Debit/credit code {line.debit_credit} does not match the sign of amount {line.amount}",
                    )
                )
        if line.kind == "DEBTOR":
            if self.customer_company(line.account, cc.code) is None:
                errors.append(
                    LogItem(
                        "351(F5)", ERROR, f"Customer {line.account} is not defined in company code {cc.code}"
                    )
                )
            return errors
        if line.kind == "GL":
            account = config.GL_ACCOUNTS.get(line.account)
            if account is None:
                errors.append(
                    LogItem(
                        "010(FH)",
                        ERROR,
                        f"G/L account {line.account} is not defined in chart of accounts {config.CHART_OF_ACCOUNTS}",
                    )
                )
                return errors
            if account.reconciliation_for:
                errors.append(
                    LogItem(
                        "562(F5)",
                        ERROR,
                        f"Reconciliation account {line.account} cannot be directly posted to",
                    )
                )
            if account.blocked:
                errors.append(
                    LogItem(
                        "307(F5)",
                        ERROR,
                        f"G/L account {line.account} is blocked for posting in company code {cc.code}",
                    )
                )
        if line.tax_code is not None and (cc.country, line.tax_code) not in config.TAX_CODES:
            errors.append(
                LogItem("711(FF)", ERROR, f"Tax code {line.tax_code} is not defined for country {cc.country}")
            )
        return errors

    def _check_tax(self, cc: config.CompanyCode, entry: EntryRequest) -> list[LogItem]:
        errors = []
        for line in entry.lines:
            if line.kind != "TAX" or line.tax_code is None or line.tax_base is None:
                continue
            tax = config.TAX_CODES.get((cc.country, line.tax_code))
            if tax is None:
                continue
            places = config.CURRENCY_DECIMALS[line.currency]
            unit = Decimal(1).scaleb(-places)
            expected = (abs(line.tax_base) * tax.rate / 100).quantize(unit, ROUND_HALF_UP)
            if abs(abs(line.amount) - expected) > unit:
                errors.append(
                    LogItem(
                        "707(FF)",
                        ERROR,
                        f"Tax entered incorrectly (code {line.tax_code}, amount {abs(line.amount)} {line.currency}, "
                        f"should be {expected} {line.currency})",
                    )
                )
        return errors

    def _number(self, company_code: str, year: str, doc_type: str) -> str:
        start = config.NUMBER_RANGE_START.get(doc_type, config.DEFAULT_NUMBER_RANGE_START)
        key = (company_code, year, start)
        number = self._next_number.get(key, start)
        self._next_number[key] = number + 1
        return f"{number:010d}"

    def _book(self, entry: EntryRequest, docno: str) -> None:
        cc = config.COMPANY_CODES[entry.company_code]
        year = entry.posting_date.year
        period = entry.posting_date.month
        cc_amounts = self._translate(entry.lines, cc.currency)
        created = datetime.now(UTC)
        logical_system = entry.logical_system or self.logical_system
        assignment_default = (entry.document_reference_id or "")[:18] or None
        rows = []
        for n, (line, cc_amount) in enumerate(zip(entry.lines, cc_amounts, strict=True), start=1):
            customer = None
            if line.kind == "DEBTOR":
                company_row = self.customer_company(line.account, cc.code) or {}
                gl_account = company_row.get("ReconciliationAccount") or config.RECEIVABLES_ACCOUNT
                customer = line.account
            elif line.kind == "TAX":
                gl_account = config.TAX_CODES[(cc.country, line.tax_code or "")].account
            else:
                gl_account = line.account
            account = config.GL_ACCOUNTS.get(gl_account)
            rows.append(
                {
                    "ID": f"{config.LEDGER}{cc.code}{year}{docno}{n:06d}",
                    "SourceLedger": config.LEDGER,
                    "Ledger": config.LEDGER,
                    "LedgerName": config.LEDGER_NAME,
                    "LedgerFiscalYear": str(year),
                    "CompanyCode": cc.code,
                    "CompanyCodeName": cc.name,
                    "FiscalYear": str(year),
                    "AccountingDocument": docno,
                    "LedgerGLLineItem": f"{n:06d}",
                    "AccountingDocumentItem": f"{n:03d}",
                    "ChartOfAccounts": config.CHART_OF_ACCOUNTS,
                    "GLAccount": gl_account,
                    "GLAccountName": account.name.upper() if account else "",
                    "BusinessTransactionType": entry.business_transaction_type,
                    "ReferenceDocumentType": entry.original_reference_type,
                    "LogicalSystem": logical_system,
                    "ReferenceDocument": docno,
                    "OriginalReferenceDocument": f"{docno}{cc.code}{year}",
                    "ReferenceDocumentLogicalSystem": logical_system,
                    "ProfitCenter": line.profit_center,
                    "TransactionCurrency": line.currency,
                    "AmountInTransactionCurrency": line.amount,
                    "CompanyCodeCurrency": cc.currency,
                    "AmountInCompanyCodeCurrency": cc_amount,
                    "DebitCreditCode": "S" if line.amount >= 0 else "H",
                    "FiscalPeriod": f"{period:03d}",
                    "FiscalYearVariant": config.FISCAL_YEAR_VARIANT,
                    "FiscalYearPeriod": f"{year}{period:03d}",
                    "PostingDate": datetime(year, period, entry.posting_date.day, tzinfo=UTC),
                    "DocumentDate": datetime(
                        entry.document_date.year,
                        entry.document_date.month,
                        entry.document_date.day,
                        tzinfo=UTC,
                    ),
                    "AccountingDocumentType": entry.document_type,
                    # G/L accounts with sort key 009 fill the assignment with the reference (XBLNR).
                    "AssignmentReference": line.assignment or assignment_default,
                    "AccountingDocCreatedByUser": entry.created_by,
                    "CreationDate": datetime(created.year, created.month, created.day, tzinfo=UTC),
                    "AccountingDocumentCreationDate": datetime(
                        created.year, created.month, created.day, tzinfo=UTC
                    ),
                    "DocumentItemText": line.text,
                    "Customer": customer,
                    "CustomerName": self.customer_name(customer) if customer else None,
                    "FinancialAccountType": "D" if line.kind == "DEBTOR" else "S",
                    "TaxCode": line.tax_code,
                    "DocumentReferenceID": entry.document_reference_id,
                    "AccountingDocumentHeaderText": entry.header_text,
                }
            )
        for row in rows:
            self.items.insert(row)
            self.document_items.insert(row)
        self.documents[(cc.code, str(year), docno)] = {
            "CompanyCode": cc.code,
            "FiscalYear": str(year),
            "AccountingDocument": docno,
            "DocumentReferenceID": entry.document_reference_id,
            "OriginalReferenceDocument": entry.original_reference,
            "PostingDate": entry.posting_date.isoformat(),
            "TransactionCurrency": entry.lines[0].currency,
            "Items": len(rows),
        }

    @staticmethod
    def _translate(lines: list[EntryLine], cc_currency: str) -> list[Decimal]:
        if all(line.currency == cc_currency for line in lines):
            return [line.amount for line in lines]
        unit = Decimal(1).scaleb(-config.CURRENCY_DECIMALS[cc_currency])
        amounts = [
            (line.amount * config.EUR_RATE[line.currency] / config.EUR_RATE[cc_currency]).quantize(
                unit, ROUND_HALF_UP
            )
            for line in lines
        ]
        # SAP books translation rounding differences so that the document balances in local currency too.
        diff = sum(amounts, Decimal(0))
        if diff:
            largest = max(range(len(amounts)), key=lambda i: abs(amounts[i]))
            amounts[largest] -= diff
        return amounts

    # --- reports -------------------------------------------------------------------------------------------

    def trial_balance(self) -> dict[str, Any]:
        with self.lock:
            rows = list(self.items.rows.values())
        report: dict[str, Any] = {}
        by_cc: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in rows:
            for currency_field, amount_field, bucket in (
                ("TransactionCurrency", "AmountInTransactionCurrency", "transaction_currency"),
                ("CompanyCodeCurrency", "AmountInCompanyCodeCurrency", "company_code_currency"),
            ):
                key = f"{bucket}:{row[currency_field]}"
                entry = by_cc[row["CompanyCode"]].setdefault(
                    key,
                    {
                        "currency": row[currency_field],
                        "kind": bucket,
                        "debit": Decimal(0),
                        "credit": Decimal(0),
                        "accounts": defaultdict(Decimal),
                    },
                )
                amount = row[amount_field]
                if amount >= 0:
                    entry["debit"] += amount
                else:
                    entry["credit"] -= amount
                entry["accounts"][row["GLAccount"]] += amount
        for cc, buckets in by_cc.items():
            out: dict[str, Any] = {
                "currency": config.COMPANY_CODES[cc].currency,
                "transaction_currency": {},
                "company_code_currency": {},
            }
            for entry in buckets.values():
                out[entry["kind"]][entry["currency"]] = {
                    "debit": str(entry["debit"]),
                    "credit": str(entry["credit"]),
                    "balance": str(entry["debit"] - entry["credit"]),
                    "accounts": {a: str(v) for a, v in sorted(entry["accounts"].items())},
                }
            report[cc] = out
        return {"company_codes": report, "documents": len(self.documents)}
