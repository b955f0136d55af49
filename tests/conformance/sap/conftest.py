"""The SAP sandbox for conformance checks, and the real service descriptions (read in place from specs)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from lead2cash.sandbox.sap import SapSandbox


@pytest.fixture(scope="session")
def sap_conf_cluster(start_sandboxes):  # type: ignore[no-untyped-def]
    return start_sandboxes(SapSandbox(seed=3, seed_size=6))


@pytest.fixture()
def sap_conf(sap_conf_cluster) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(sap_conf_cluster.ca_bundle))
    with httpx.Client(
        base_url=sap_conf_cluster.base_url("sap"),
        verify=ctx,
        auth=("LEAD2CASH", "Sandbox-Passw0rd"),
        timeout=10,
    ) as client:
        yield client
