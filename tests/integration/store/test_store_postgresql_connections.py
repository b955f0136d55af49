"""PostgreSQL connections of the store: a pooled connection the server dropped while it sat idle (a
restart, an idle timeout) is replaced before use; one in steady use is not pinged."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from lead2cash.store import Store, XrefWrite
from lead2cash.store import store as store_module

pytestmark = pytest.mark.postgres


def _pooled_backend_pid(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(pg_server: str, pid: int) -> None:
    with psycopg.connect(pg_server, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        # Wait until the server has really let it go.
        for _ in range(100):
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                return
            admin.execute("SELECT pg_sleep(0.02)")
    raise AssertionError(f"backend {pid} still running")


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    pg_url: str, pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(pg_url)
    store.engine.dispose()  # one pooled connection from here on
    store.xref_put("Customer", "c1", "lago", "ext-1")
    pid = _pooled_backend_pid(store)
    _terminate(pg_server, pid)
    monkeypatch.setattr(store_module, "PG_IDLE_PING_S", 0.0)  # it has sat idle long enough
    assert store.xref_get("Customer", "c1", "lago") == "ext-1"
    store.xref_put("Customer", "c2", "lago", "ext-2")
    assert _pooled_backend_pid(store) != pid
    store.close()


def test_a_connection_in_steady_use_is_not_pinged(
    pg_url: str, pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the trade: without the idle ping, the first call on a dropped connection fails
    (and the pool then replaces every connection), which is why the ping exists for idle ones."""
    store = Store(pg_url)
    store.engine.dispose()
    store.xref_put_many([XrefWrite("Customer", "c1", "lago", "ext-1")])
    monkeypatch.setattr(store_module, "PG_IDLE_PING_S", 3600.0)
    _terminate(pg_server, _pooled_backend_pid(store))
    with pytest.raises(OperationalError):
        store.xref_get("Customer", "c1", "lago")
    assert store.xref_get("Customer", "c1", "lago") == "ext-1"
    store.close()
