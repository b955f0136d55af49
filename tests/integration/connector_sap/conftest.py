"""An SAP sandbox over HTTPS and hub configs that post canonical invoices to it through the router."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import doubles
import httpx
import pytest

from lead2cash.sandbox.sap import SapSandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "sap_adapter"))


@pytest.fixture(scope="session")
def sap_box(start_sandboxes):  # type: ignore[no-untyped-def]
    return start_sandboxes(SapSandbox(seed=21, seed_size=5, page_size=50))


@pytest.fixture(autouse=True)
def _fresh(sap_box) -> Iterator[None]:  # type: ignore[no-untyped-def]
    doubles.REGISTRY.clear()
    with _admin_client(sap_box) as c:
        c.post("/__sandbox/reset")
    yield
    doubles.REGISTRY.clear()


def _admin_client(cluster: Any) -> httpx.Client:
    return httpx.Client(
        base_url=cluster.base_url("sap"),
        verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
        timeout=30,
    )


@pytest.fixture()
def sap_admin(sap_box) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with _admin_client(sap_box) as client:
        yield client
