"""Journal entries over RFC for on-premise systems (optional: ``pip install 'lead2cash[rfc]'``).

``BAPI_ACC_DOCUMENT_CHECK`` then ``BAPI_ACC_DOCUMENT_POST`` and ``BAPI_TRANSACTION_COMMIT`` (WAIT = X), through
pyrfc's ``Connection.call(name, **params)``; a post whose RETURN table carries an E or A message is rolled
back (``BAPI_TRANSACTION_ROLLBACK``) and reported as a permanent error with SAP's texts. The crash-recovery
lookup reads BKPF by company code and reference (XBLNR) with ``RFC_READ_TABLE``.

pyrfc needs SAP's proprietary NW RFC SDK, which the project cannot ship or install in CI: the tests use a
double of ``Connection`` with the same call contract and RETURN-table semantics. What they verify is this
module's protocol (call order, parameters, RETURN handling, commit, rollback, error classes); what they cannot
verify is a real system's behaviour (field lengths, number ranges, authorisations, BAPI quirks per release).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from lead2cash.errors import DeliveryError, PermanentError, TransientError

log = structlog.get_logger("lead2cash.connectors.sap.rfc")

# pyrfc exception class names -> whether a retry may help. Matched by name so this module imports without pyrfc.
_TRANSIENT = {"CommunicationError", "ABAPRuntimeError", "TimeoutError"}
_PERMANENT = {"LogonError", "ABAPApplicationError", "ExternalRuntimeError", "ExternalApplicationError"}


def pyrfc_connection_factory(params: Mapping[str, str]) -> Callable[[], Any]:
    """A factory of real pyrfc connections; raises ImportError with the install hint when pyrfc is absent."""
    try:
        import pyrfc
    except ImportError as exc:  # pragma: no cover - depends on the proprietary SDK
        raise ImportError(
            "transport: rfc needs pyrfc: pip install 'lead2cash[rfc]' (and SAP's NW RFC SDK)"
        ) from exc

    def connect() -> Any:
        return pyrfc.Connection(**params)

    return connect


@dataclass(frozen=True)
class RfcMessage:
    type: str
    id: str
    number: str
    message: str


def _messages(result: Mapping[str, Any]) -> list[RfcMessage]:
    ret = result.get("RETURN") or []
    if isinstance(ret, Mapping):  # BAPI_TRANSACTION_COMMIT returns a structure, not a table
        ret = [ret]
    return [
        RfcMessage(
            str(r.get("TYPE", "")), str(r.get("ID", "")), str(r.get("NUMBER", "")), str(r.get("MESSAGE", ""))
        )
        for r in ret
        if r.get("TYPE")
    ]


def _errors(messages: list[RfcMessage]) -> list[RfcMessage]:
    return [m for m in messages if m.type in ("E", "A")]


def _rejected(what: str, errors: list[RfcMessage], reference: str | None) -> PermanentError:
    # BAPI_ACC_DOCUMENT_* lead with the generic RW 609 "Error in document"; the reasons follow it.
    specific = [m for m in errors if not (m.id == "RW" and m.number == "609")] or errors
    details: dict[str, Any] = {
        "sap_messages": ",".join(f"{m.number}({m.id})" for m in errors),
        "sap_log": " | ".join(m.message for m in errors)[:1000],
    }
    if reference:
        details["reference"] = reference
    return PermanentError(
        f"SAP rejected the journal entry ({what}): " + "; ".join(m.message for m in specific)[:500],
        details=details,
    )


def _classify(exc: Exception, what: str) -> DeliveryError:
    name = type(exc).__name__
    text = str(getattr(exc, "message", "") or exc)[:300]
    if name in _PERMANENT:
        return PermanentError(f"SAP RFC {what} failed: {name}", details={"rfc_message": text})
    return TransientError(f"SAP RFC {what} failed: {name}", details={"rfc_message": text})


def _abap_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class RfcJournalPoster:
    """Posts BAPI parameter sets (see ``adapters.sap.journal_entry_to_bapi``); one connection per thread."""

    def __init__(self, connect: Callable[[], Any], *, max_workers: int = 4) -> None:
        self.connect = connect
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sap-rfc")

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and hasattr(conn, "close"):
            with contextlib.suppress(Exception):  # a broken connection is discarded either way
                conn.close()

    def _call(self, name: str, **params: Any) -> dict[str, Any]:
        try:
            result = self._conn().call(name, **params)
        except Exception as exc:
            self._drop()
            raise _classify(exc, name) from exc
        return dict(result or {})

    def post_sync(self, params: Mapping[str, Any], reference: str | None = None) -> str:
        """Check, post and commit; returns OBJ_KEY (document number + company code + fiscal year)."""
        check = self._call("BAPI_ACC_DOCUMENT_CHECK", **params)
        errors = _errors(_messages(check))
        if errors:
            raise _rejected("check", errors, reference)
        posted = self._call("BAPI_ACC_DOCUMENT_POST", **params)
        errors = _errors(_messages(posted))
        if errors:
            self._call("BAPI_TRANSACTION_ROLLBACK")
            raise _rejected("post", errors, reference)
        key = str(posted.get("OBJ_KEY") or "")
        if len(key) < 18 or key.startswith("$"):
            self._call("BAPI_TRANSACTION_ROLLBACK")
            raise TransientError("SAP RFC post returned no document key", details={"obj_key": key})
        commit = self._call("BAPI_TRANSACTION_COMMIT", WAIT="X")
        errors = _errors(_messages(commit))
        if errors:
            # The update task failed: nothing was booked, but say so plainly rather than guess.
            raise _rejected("commit", errors, reference)
        return key

    def find_sync(self, company_code: str, reference: str) -> str | None:
        """OBJ_KEY of a posted document with this reference (XBLNR) in the company code, if any."""
        result = self._call(
            "RFC_READ_TABLE",
            QUERY_TABLE="BKPF",
            DELIMITER="|",
            ROWCOUNT=1,
            FIELDS=[{"FIELDNAME": "BELNR"}, {"FIELDNAME": "BUKRS"}, {"FIELDNAME": "GJAHR"}],
            OPTIONS=[
                {"TEXT": f"BUKRS = {_abap_literal(company_code)}"},
                {"TEXT": f" AND XBLNR = {_abap_literal(reference)}"},
            ],
        )
        rows = result.get("DATA") or []
        if not rows:
            return None
        belnr, bukrs, gjahr = (part.strip() for part in str(rows[0]["WA"]).split("|"))
        return f"{belnr}{bukrs}{gjahr}"

    async def post(self, params: Mapping[str, Any], reference: str | None = None) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.post_sync, params, reference)

    async def find(self, company_code: str, reference: str) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.find_sync, company_code, reference)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def split_obj_key(key: str) -> tuple[str, str, str]:
    """OBJ_KEY ``<BELNR 10><BUKRS 4><GJAHR 4>`` -> (document, company code, fiscal year)."""
    return key[:10], key[10:14], key[14:18]
