"""Store errors are told apart from targets' errors wherever the router catches a delivery's exceptions:
a store that cannot be reached or cannot write is an outage to wait out, never a permanent error."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from lead2cash.errors import PermanentError, TransientError
from lead2cash.store import is_unavailable


def _sa(driver_error: Exception) -> OperationalError:
    return OperationalError("INSERT ...", {}, driver_error)


@pytest.mark.parametrize(
    "message",
    ["database or disk is full", "database is locked", "disk I/O error", "unable to open database file"],
)
def test_sqlite_outages_are_store_errors(message: str) -> None:
    assert is_unavailable(_sa(sqlite3.OperationalError(message)))
    assert is_unavailable(sqlite3.OperationalError(message))  # raised outside SQLAlchemy


def test_a_full_sqlite_database_is_a_store_error_as_sqlite_raises_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
    with engine.connect() as conn, pytest.raises(OperationalError) as raised:
        conn.exec_driver_sql("PRAGMA max_page_count = 1")
        for _ in range(100):
            conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 4000})
    assert "database or disk is full" in str(raised.value)
    assert is_unavailable(raised.value)
    engine.dispose()


def test_a_dropped_postgresql_connection_is_a_store_error() -> None:
    psycopg = pytest.importorskip("psycopg")
    assert is_unavailable(_sa(psycopg.OperationalError("server closed the connection unexpectedly")))


def test_a_target_error_wrapping_a_store_error_is_the_stores() -> None:
    try:
        try:
            raise _sa(sqlite3.OperationalError("database or disk is full"))
        except OperationalError as exc:
            raise PermanentError("could not write the partner number") from exc
    except PermanentError as wrapped:
        assert is_unavailable(wrapped)


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("rejected by target"),
        TransientError("503 Service Unavailable"),
        ValueError("bad amount"),
        IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        ProgrammingError("SELECT ...", {}, sqlite3.ProgrammingError("no such table")),
    ],
)
def test_other_errors_are_not_store_outages(exc: Exception) -> None:
    assert not is_unavailable(exc)
