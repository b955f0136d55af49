"""A running Salesforce sandbox per test module, with an httpx client and a simple-salesforce client.

Shared by the conformance and the integration tests of the sandbox (their conftests import it)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce

from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.server import SandboxCluster

D = "/services/data/v62.0"


@dataclass
class SfEnv:
    sandbox: SalesforceSandbox
    cluster: SandboxCluster
    base: str
    http: httpx.Client

    def token(self) -> str:
        r = self.http.post(
            "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret,
            },
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, f"/__sandbox/salesforce/{path}", **kw)
        r.raise_for_status()
        return r

    def simple(self) -> Salesforce:
        session = requests.Session()
        session.verify = str(self.cluster.ca_bundle)
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over verify
        return Salesforce(instance_url=self.base, session_id=self.token(), session=session, version="62.0")


@pytest.fixture(scope="module")
def sf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SfEnv]:
    sandbox = SalesforceSandbox(seed=7, seed_size=120)
    cluster = SandboxCluster(systems=[sandbox], state_dir=Path(tmp_path_factory.mktemp("sf")))
    cluster.start_in_thread()
    base = cluster.base_url("salesforce")
    with httpx.Client(
        base_url=base, verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)), timeout=10
    ) as http:
        env = SfEnv(sandbox, cluster, base, http)
        http.post("/__sandbox/reset")
        yield env
    cluster.stop()


@pytest.fixture()
def fresh(sf: SfEnv) -> SfEnv:
    """The same sandbox, reset to its seed (faults, effects, limits, sessions, clock)."""
    sf.http.post("/__sandbox/reset").raise_for_status()
    return sf
