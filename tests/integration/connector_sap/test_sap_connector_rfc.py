"""The RFC transport (BAPI_ACC_DOCUMENT_CHECK/POST, BAPI_TRANSACTION_COMMIT) against a double of pyrfc's
Connection: protocol, RETURN-table handling and classification; through the hub with the sandbox serving the
business partners; and the clear error when pyrfc is not installed.

What this does not verify: a real SAP system's behaviour over RFC (the NW RFC SDK is proprietary)."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import date

import doubles
import pytest
import sap_factories as f
import sap_rfc_double as rfc_double
from sap_hub_config import sap_system, write_config
from typer.testing import CliRunner

from lead2cash.adapters import sap as adapter
from lead2cash.cli import app
from lead2cash.connectors.sap.rfc import RfcJournalPoster
from lead2cash.errors import PermanentError, TransientError
from lead2cash.hub import Hub

RFC = {
    "connection_factory": "sap_rfc_double:connect",
    "params": {"ashost": "s4.example", "sysnr": "00", "client": "100", "user": "L2C"},
    "secrets": {"passwd": "rfc-secret"},
}
RULES = adapter.PostingRules(
    receivables_account="12100000",
    revenue_accounts={"_default": "41000000"},
    tax_codes={"DE_VAT_19": "A1", "ZERO_RATED": "A0"},
    company_code="1010",
)


@pytest.fixture(autouse=True)
def _fresh_rfc() -> None:
    rfc_double.SYSTEM.reset()


def _params(n: int, day: date = date(2024, 11, 15)) -> dict:
    inv = f.invoice(n, "EUR", issue_date=day, number_prefix="RFC")
    entry = adapter.invoice_to_journal_entry(inv, RULES)
    return adapter.journal_entry_to_bapi(entry, {inv.customer.id: "1000001"}, "L2C")


def test_post_check_commit_and_find() -> None:
    poster = RfcJournalPoster(lambda: rfc_double.connect(passwd="rfc-secret"))
    key = poster.post_sync(_params(1), "RFC-000001")
    assert key == "180000000010102024"
    assert rfc_double.SYSTEM.calls == [
        "BAPI_ACC_DOCUMENT_CHECK",
        "BAPI_ACC_DOCUMENT_POST",
        "BAPI_TRANSACTION_COMMIT",
    ]
    assert poster.find_sync("1010", "RFC-000001") == key
    assert poster.find_sync("1010", "RFC-000002") is None
    assert poster.find_sync("1110", "RFC-000001") is None
    assert poster.find_sync("1010", "X' OR XBLNR <> '") is None  # the literal is escaped
    poster.close()


def test_business_errors_in_return_are_permanent_and_rolled_back() -> None:
    poster = RfcJournalPoster(lambda: rfc_double.connect(passwd="rfc-secret"))
    rfc_double.SYSTEM.closed.add(("1010", 2024, 11))
    with pytest.raises(PermanentError) as info:
        poster.post_sync(_params(2), "RFC-000002")
    assert info.value.message == "SAP rejected the journal entry (check): Posting period 011 2024 is not open"
    assert info.value.details["sap_messages"] == "609(RW),201(F5)"
    assert rfc_double.SYSTEM.posts == {}
    unbalanced = _params(3)
    unbalanced["CURRENCYAMOUNT"][0]["AMT_DOCCUR"] += 1
    rfc_double.SYSTEM.closed.clear()
    with pytest.raises(PermanentError, match="Balance in transaction currency"):
        poster.post_sync(unbalanced)


def test_transport_failures_are_transient_and_logon_errors_permanent() -> None:
    rfc_double.SYSTEM.error_rate = 1.0
    poster = RfcJournalPoster(lambda: rfc_double.connect(passwd="rfc-secret"))
    with pytest.raises(TransientError, match="CommunicationError"):
        poster.post_sync(_params(4))
    bad = RfcJournalPoster(lambda: rfc_double.connect(passwd="wrong"))
    with pytest.raises(PermanentError, match="LogonError") as info:
        bad.post_sync(_params(4))
    assert "wrong" not in info.value.describe()


def test_rfc_transport_through_the_hub_posts_once_each(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    system = sap_system(sap_box, transport="rfc", rfc=RFC)
    path = write_config(tmp_path, system)
    hub = Hub.from_files([path], configure_logs=False)
    invoices = [f.invoice(n, "EUR", number_prefix="RFH") for n in range(40)]
    doubles.REGISTRY["mem"].records.extend(i.model_dump(mode="json") for i in invoices)
    rfc_double.SYSTEM.error_rate = 0.15
    rfc_double.SYSTEM.drop_after_commit_rate = 0.2
    assert asyncio.run(hub.run_until_idle(timeout=60))
    assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
    assert rfc_double.SYSTEM.posts == {f"1010:{i.invoice_number}": 1 for i in invoices}
    assert hub.metrics.recovered.labels("invoices-to-sap")._value.get() > 0
    ref = hub.store.xref_get("Invoice", invoices[0].id, "sap")
    assert ref is not None and ref.endswith("/1010/2024")
    hub.close()


@pytest.mark.skipif(importlib.util.find_spec("pyrfc") is not None, reason="pyrfc is installed here")
def test_rfc_without_pyrfc_fails_check_with_a_clear_message(tmp_path, sap_box) -> None:  # type: ignore[no-untyped-def]
    rfc = {k: v for k, v in RFC.items() if k != "connection_factory"}
    path = write_config(tmp_path, sap_system(sap_box, transport="rfc", rfc=rfc))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "pip install 'lead2cash[rfc]'" in output and "systems.s4" in output
