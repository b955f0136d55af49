"""Shared fixtures: where the real API specs are, whether PostgreSQL is required, sandbox clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Whole directories of long scenarios (separate processes, hundreds of deals, SIGKILLs): the slow lane.
# Single long tests elsewhere carry ``@pytest.mark.slow`` themselves. ``make quick`` runs ``-m "not slow"``.
# Slow tests mostly wait on sandboxes and processes, so ``make test`` runs them two at a time, except those
# whose kills, outages or timings must not share the two cores with another (``serial``).
SLOW_DIRS = ("reliability", "e2e")
SERIAL_PATHS = (
    "reliability",
    "integration/router/test_router_crash.py",
    "integration/router/test_store_outage.py",
    "integration/usage",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = [ROOT / "tests" / name for name in SLOW_DIRS]
    serial = [ROOT / "tests" / name for name in SERIAL_PATHS]
    for item in items:
        if any(item.path.is_relative_to(d) for d in slow):
            item.add_marker(pytest.mark.slow)
        if any(item.path.is_relative_to(p) for p in serial) and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.serial)


def _specs_dir() -> Path:
    return Path(os.environ.get("LEAD2CASH_SPECS", ROOT.parent / "shared" / "specs")).resolve()


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The real published API artifacts (read in place, never copied). Required under CI."""
    path = _specs_dir()
    if not path.is_dir():
        if IN_CI:
            pytest.fail(f"conformance specs not found at {path} (CI=true requires them)")
        pytest.skip(f"conformance specs not found at {path}; set LEAD2CASH_SPECS to run these tests")
    return path


@pytest.fixture()
def sandbox_state(tmp_path: Path) -> Path:
    return tmp_path / "sandbox-state"


@pytest.fixture(scope="session")
def sandbox_state_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-state")


@pytest.fixture(scope="session")
def start_sandboxes(sandbox_state_session: Path) -> Iterator[object]:
    """Factory: ``cluster = start_sandboxes(SalesforceSandbox(seed=1), ...)``; every cluster is stopped at
    the end of the session."""
    from lead2cash.sandbox.server import SandboxCluster

    clusters: list[SandboxCluster] = []

    def start(*systems: object) -> SandboxCluster:
        state = sandbox_state_session / f"cluster-{len(clusters)}"
        cluster = SandboxCluster(systems=list(systems), state_dir=state)  # type: ignore[arg-type]
        cluster.start_in_thread()
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def _pg_base_url() -> str:
    return os.environ.get("LEAD2CASH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A reachable PostgreSQL, or a skip with the reason (a failure under CI=true)."""
    url = _pg_base_url()
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            pass
    except Exception as exc:
        message = f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true requires PostgreSQL)")
        pytest.skip(message + "; set LEAD2CASH_TEST_PG_URL to run these tests")
    return url


@pytest.fixture()
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh schema per test, so tests never see each other's rows; dropped afterwards."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends of the state store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))
