"""Shared fixtures: where the real API specs are, whether PostgreSQL is required, sandbox clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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
