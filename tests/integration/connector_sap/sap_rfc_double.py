"""A double of pyrfc's ``Connection`` for the BAPIs the RFC transport calls (test code only).

It mirrors the contract the connector relies on: ``call(name, **params)`` returns a dict of exporting
parameters and tables; BAPIs report problems in a RETURN table of (TYPE, ID, NUMBER, MESSAGE) rows instead of
raising; ``BAPI_ACC_DOCUMENT_POST`` books nothing until ``BAPI_TRANSACTION_COMMIT`` in the same connection;
``BAPI_TRANSACTION_ROLLBACK`` discards; transport failures raise ``CommunicationError``; unknown functions
raise ``ABAPApplicationError`` (FU_NOT_FOUND), unknown parameters ``ExternalRuntimeError`` and a wrong
password ``LogonError``, as pyrfc does.
State (the "system") is module-level so that several connections see the same ledger.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class CommunicationError(Exception):
    pass


class ABAPApplicationError(Exception):
    pass


class ExternalRuntimeError(Exception):
    pass


class LogonError(Exception):
    pass


PARAMS = {
    "BAPI_ACC_DOCUMENT_CHECK": {
        "DOCUMENTHEADER",
        "ACCOUNTGL",
        "ACCOUNTRECEIVABLE",
        "ACCOUNTTAX",
        "CURRENCYAMOUNT",
    },
    "BAPI_ACC_DOCUMENT_POST": {
        "DOCUMENTHEADER",
        "ACCOUNTGL",
        "ACCOUNTRECEIVABLE",
        "ACCOUNTTAX",
        "CURRENCYAMOUNT",
    },
    "BAPI_TRANSACTION_COMMIT": {"WAIT"},
    "BAPI_TRANSACTION_ROLLBACK": set(),
    "RFC_READ_TABLE": {"QUERY_TABLE", "DELIMITER", "ROWCOUNT", "FIELDS", "OPTIONS"},
}


@dataclass
class System:
    lock: threading.Lock = field(default_factory=threading.Lock)
    documents: dict[tuple[str, str, str], dict[str, Any]] = field(
        default_factory=dict
    )  # (bukrs, belnr, gjahr)
    posts: dict[str, int] = field(default_factory=dict)  # "<bukrs>:<xblnr>" -> times booked
    closed: set[tuple[str, int, int]] = field(default_factory=set)
    next_number: int = 1800000000
    error_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    calls: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


SYSTEM = System()


def _msg(kind: str, ident: str, number: str, text: str) -> dict[str, str]:
    return {"TYPE": kind, "ID": ident, "NUMBER": number, "MESSAGE": text}


class Connection:
    def __init__(self, **params: str) -> None:
        if params.get("passwd") != "rfc-secret":
            raise LogonError("Name or password is incorrect (repeat logon)")
        self.pending: dict[str, Any] | None = None
        self.alive = True

    def close(self) -> None:
        self.alive = False

    def call(self, name: str, **params: Any) -> dict[str, Any]:
        if name not in PARAMS:
            raise ABAPApplicationError(f"FU_NOT_FOUND: {name}")
        unknown = set(params) - PARAMS[name]
        if unknown:
            raise ExternalRuntimeError(f"field '{sorted(unknown)[0]}' not found")
        s = SYSTEM
        with s.lock:
            s.calls.append(name)
            if name != "RFC_READ_TABLE" and s.rng.random() < s.error_rate:
                raise CommunicationError("connection to partner broken")
        return getattr(self, name.lower())(**params)

    # --- BAPIs ------------------------------------------------------------------------------------------
    def _check(self, params: dict[str, Any]) -> list[dict[str, str]]:
        header = params["DOCUMENTHEADER"]
        errors = []
        day = header["PSTNG_DATE"]
        if (header["COMP_CODE"], day.year, day.month) in SYSTEM.closed:
            errors.append(_msg("E", "F5", "201", f"Posting period {day.month:03d} {day.year} is not open"))
        total = sum((Decimal(a["AMT_DOCCUR"]) for a in params["CURRENCYAMOUNT"]), Decimal(0))
        if total != 0:
            errors.append(_msg("E", "F5", "702", f"Balance in transaction currency: {total}"))
        numbers = {a["ITEMNO_ACC"] for a in params["CURRENCYAMOUNT"]}
        for table in ("ACCOUNTGL", "ACCOUNTRECEIVABLE", "ACCOUNTTAX"):
            for row in params.get(table, []):
                if row["ITEMNO_ACC"] not in numbers:
                    errors.append(_msg("E", "RW", "022", f"No amount for item {row['ITEMNO_ACC']}"))
        if errors:
            return [_msg("E", "RW", "609", "Error in document: BKPFF $ RFCCLNT100"), *errors]
        return []

    def bapi_acc_document_check(self, **params: Any) -> dict[str, Any]:
        errors = self._check(params)
        return {"RETURN": errors or [_msg("S", "RW", "614", "Document check without errors")]}

    def bapi_acc_document_post(self, **params: Any) -> dict[str, Any]:
        errors = self._check(params)
        if errors:
            return {"RETURN": errors, "OBJ_TYPE": "", "OBJ_KEY": "$", "OBJ_SYS": ""}
        header = params["DOCUMENTHEADER"]
        with SYSTEM.lock:
            number = f"{SYSTEM.next_number:010d}"
            SYSTEM.next_number += 1
        year = str(header["PSTNG_DATE"].year)
        key = f"{number}{header['COMP_CODE']}{year}"
        self.pending = {"key": (header["COMP_CODE"], number, year), "header": header, "params": params}
        return {
            "RETURN": [_msg("S", "RW", "605", f"Document posted successfully: BKPFF {key} RFCCLNT100")],
            "OBJ_TYPE": "BKPFF",
            "OBJ_KEY": key,
            "OBJ_SYS": "RFCCLNT100",
        }

    def bapi_transaction_commit(self, WAIT: str = "") -> dict[str, Any]:
        if self.pending is not None:
            header = self.pending["header"]
            with SYSTEM.lock:
                SYSTEM.documents[self.pending["key"]] = {"XBLNR": header["REF_DOC_NO"], **self.pending}
                ref = f"{header['COMP_CODE']}:{header['REF_DOC_NO']}"
                SYSTEM.posts[ref] = SYSTEM.posts.get(ref, 0) + 1
                drop = SYSTEM.rng.random() < SYSTEM.drop_after_commit_rate
            self.pending = None
            if drop:
                raise CommunicationError("connection lost after commit")
        return {"RETURN": {"TYPE": "", "ID": "", "NUMBER": "000", "MESSAGE": ""}}

    def bapi_transaction_rollback(self) -> dict[str, Any]:
        self.pending = None
        return {"RETURN": {"TYPE": "", "ID": "", "NUMBER": "000", "MESSAGE": ""}}

    def rfc_read_table(
        self, QUERY_TABLE: str, DELIMITER: str, ROWCOUNT: int, FIELDS: list, OPTIONS: list
    ) -> dict[str, Any]:
        assert QUERY_TABLE == "BKPF"
        where = "".join(o["TEXT"] for o in OPTIONS)
        # The connector writes "BUKRS = '<cc>' AND XBLNR = '<ref>'" with quotes doubled inside literals.
        bukrs = where.split("BUKRS = '", 1)[1].split("'", 1)[0]
        xblnr = where.split("XBLNR = '", 1)[1][:-1].replace("''", "'")
        rows = [
            {"WA": DELIMITER.join((belnr, cc, year))}
            for (cc, belnr, year), doc in sorted(SYSTEM.documents.items())
            if cc == bukrs and doc["XBLNR"] == xblnr
        ]
        return {"DATA": rows[: ROWCOUNT or None], "FIELDS": FIELDS}


def connect(**params: str) -> Connection:
    return Connection(**params)
