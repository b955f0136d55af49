"""The three sandboxes in-process, for delivery tests, and the user's config pointed at them.

The sandboxes are seeded as ``lead2cash.demo.environment.LeadToCash`` seeds them (same currencies), so a
record recorded from the demo (an Opportunity id, a product) exists here too. Each delivery test gets a
fresh state store; the sandboxes are shared by the tests of a run, so effects are counted as the change
over the test, and faults are cleared after each test.
"""

from __future__ import annotations

import ssl
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lead2cash.config import LoadedConfig
from lead2cash.config.schema import HubConfig
from lead2cash.demo.environment import DEMO_CURRENCIES
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.sap import SapSandbox
from lead2cash.sandbox.server import SandboxCluster

# How a system is reached (replaced by the sandbox's entry); everything else (writeback fields, mapping
# tables, policies) stays as the user configured it.
CONNECTION_KEYS = frozenset(
    {
        "base_url",
        "instance_url",
        "login_url",
        "token_url",
        "api_version",
        "auth",
        "api_key",
        "webhook",
        "ca_bundle",
        "proxies",
        "odata",
        "soap",
        "client",
        "rfc",
        "transport",
        "company_code",
        "company_code_by_currency",
        "receivables_account",
        "advance_account",
        "granted_credits_account",
        "voided_credits_account",
    }
)
# Sandbox keys that are aliases of a user key: the user's table wins.
_ALIASES = {"revenue_account_by_family": "revenue_accounts", "tax_code_by_catalog_code": "tax_codes"}


class SandboxEnvironment:
    def __init__(self, seed: int, seed_size: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="lead2cash-test-"))
        self.systems: dict[str, Any] = {
            "salesforce": SalesforceSandbox(
                seed=seed, seed_size=seed_size, daily_api_limit=10_000_000, currencies=DEMO_CURRENCIES
            ),
            "lago": LagoSandbox(seed=seed, seed_size=0, clock_start=datetime.now(UTC)),
            "sap": SapSandbox(seed=seed, seed_size=0),
        }
        self.cluster = SandboxCluster(systems=list(self.systems.values()), state_dir=self.workdir / "sandbox")
        self.cluster.start_in_thread()
        ca = ssl.create_default_context(cafile=str(self.cluster.ca_bundle))
        self.http = {
            name: httpx.Client(base_url=self.cluster.base_url(name), verify=ca, timeout=30, trust_env=False)
            for name in self.systems
        }
        self._stores = 0

    def store_url(self) -> str:
        self._stores += 1
        return f"sqlite:///{self.workdir / f'state-{self._stores}.db'}"

    def config_for(self, loaded: LoadedConfig) -> LoadedConfig:
        """The user's config with every Salesforce, Lago and SAP system pointed at these sandboxes (positions
        kept, so errors still name the user's files)."""
        printed = self.cluster.hub_config()
        systems: dict[str, Any] = {}
        for name, cfg in loaded.config.systems.items():
            kind = getattr(cfg, "type", None)
            if kind not in printed:
                systems[name] = cfg
                continue
            own = {k: v for k, v in cfg.model_dump(exclude_unset=True).items() if k not in CONNECTION_KEYS}
            sandbox = {k: v for k, v in printed[kind].items() if not (k in _ALIASES and _ALIASES[k] in own)}
            systems[name] = {**own, **sandbox}
        validated = HubConfig.model_validate({"systems": systems}).systems
        config = loaded.config.model_copy(
            update={"systems": validated, "web": loaded.config.web.model_copy(update={"enabled": False})}
        )
        return LoadedConfig(
            config=config, files=loaded.files, positions=loaded.positions, secrets=set(loaded.secrets)
        )

    # ------------------------------------------------------------------ faults and effects
    def set_faults(self, rules: dict[str, dict[str, dict[str, Any]]]) -> None:
        for name, client in self.http.items():
            client.put("/__sandbox/faults", json={"rules": rules.get(name, {})}).raise_for_status()

    def reset(self) -> None:
        """Back to the seeded state, no faults, effects counted from zero: each delivery test starts here,
        so one test's deal already billed is never another's "nothing to do"."""
        for client in self.http.values():
            client.post("/__sandbox/reset").raise_for_status()

    def clear_faults(self) -> None:
        self.set_faults({})

    def injected(self) -> dict[str, dict[str, int]]:
        return {
            name: dict(c.get("/__sandbox/faults").json().get("injected") or {})
            for name, c in self.http.items()
        }

    def effects(self) -> dict[str, dict[str, dict[str, int]]]:
        return {name: dict(c.get("/__sandbox/effects").json()) for name, c in self.http.items()}

    def close(self) -> None:
        for client in self.http.values():
            client.close()
        self.cluster.stop()


def effect_delta(
    before: dict[str, dict[str, dict[str, int]]], after: dict[str, dict[str, dict[str, int]]]
) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = {}
    for system, kinds in after.items():
        for kind, keys in kinds.items():
            for key, count in keys.items():
                delta = count - before.get(system, {}).get(kind, {}).get(key, 0)
                if delta:
                    out.setdefault(system, {}).setdefault(kind, {})[key] = delta
    return out


def injected_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    return {
        f"{system}:{what}": n - before.get(system, {}).get(what, 0)
        for system, counts in after.items()
        for what, n in counts.items()
        if n - before.get(system, {}).get(what, 0)
    }
