"""A Salesforce sandbox per test and a hub config that reaches it (the sandbox's own hub_config)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.server import SandboxCluster

D = "/services/data/v62.0"


@dataclass
class SfOrg:
    sandbox: SalesforceSandbox
    cluster: SandboxCluster
    base: str
    http: httpx.Client
    offset: float = 0.0

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"/__sandbox/{path}", **kw)
        r.raise_for_status()
        return r.json()

    def advance(self, seconds: float) -> None:
        """Move the org's clock forward (records already written become older than the safety lag)."""
        self.offset += seconds
        self.admin("PUT", "salesforce/clock", json={"offset_seconds": self.offset})

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
        return str(r.json()["access_token"])

    def rest(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self.http.request(method, f"{D}/{path}", headers=headers, **kw)

    def soql(self, query: str) -> list[dict[str, Any]]:
        r = self.rest("GET", "queryAll", params={"q": query})
        r.raise_for_status()
        return list(r.json()["records"])

    def system(self, **overrides: Any) -> dict[str, Any]:
        cfg = self.sandbox.hub_config(self.base)
        cfg.pop("ca_note", None)
        cfg["ca_bundle"] = str(self.cluster.ca_bundle)
        cfg.update(overrides)
        return cfg

    def write_config(
        self, tmp_path: Path, routes: list[dict[str, Any]], state_url: str | None = None, **system: Any
    ) -> Path:
        doc = {
            "state": {"url": state_url or f"sqlite:///{tmp_path / 'state.db'}"},
            "logging": {"level": "ERROR"},
            "systems": {"sf": self.system(**system), "files": {"type": "file", "directory": str(tmp_path)}},
            "routes": routes,
        }
        path = tmp_path / "hub.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SalesforceSandbox, SandboxCluster]]:
    sandbox = SalesforceSandbox(seed=11, seed_size=500)
    cluster = SandboxCluster(systems=[sandbox], state_dir=Path(tmp_path_factory.mktemp("sfc")))
    cluster.start_in_thread()
    yield sandbox, cluster
    cluster.stop()


@pytest.fixture()
def org(_cluster: tuple[SalesforceSandbox, SandboxCluster]) -> Iterator[SfOrg]:
    sandbox, cluster = _cluster
    base = cluster.base_url("salesforce")
    ctx = ssl.create_default_context(cafile=str(cluster.ca_bundle))
    with httpx.Client(base_url=base, verify=ctx, timeout=30, trust_env=False) as http:
        http.post("/__sandbox/reset").raise_for_status()
        yield SfOrg(sandbox, cluster, base, http)
