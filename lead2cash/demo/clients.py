"""The three sandboxes over HTTP, as a person or an auditor would use them: their public APIs, retried
through injected faults, and the sandboxes' admin API. Shared by the in-process demo harness
(``LeadToCash``) and the separate-process one (``tests/harness``)."""

from __future__ import annotations

import contextlib
import json
import time
from decimal import Decimal
from typing import Any

import httpx


class HarnessError(RuntimeError):
    pass


class SandboxClients:
    """Needs ``self.http`` (one client per system, on the sandbox's base URL) and ``self._sf_token``;
    subclasses say where the Salesforce credentials and the Lago API key come from."""

    http: dict[str, httpx.Client]
    _sf_token: str | None
    sf_api_version = "62.0"
    attempts = 100

    def _sf_credentials(self) -> tuple[str, str]:
        raise NotImplementedError

    def _lago_api_key(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        for client in self.http.values():
            client.close()

    def request(self, system: str, method: str, url: str, **kw: Any) -> httpx.Response:
        """The harness's calls go through the same injected faults as the hub's: retried (they are reads
        or admin calls) until the system answers, honouring Retry-After like any client."""
        for attempt in range(self.attempts):
            try:
                r = self.http[system].request(method, url, **kw)
            except httpx.TransportError:
                time.sleep(min(0.05 * (attempt + 1), 1.0))
                continue
            if r.status_code == 401 and system == "salesforce" and "/services/data" in url:
                self._sf_token = None  # an expired session
                headers = dict(kw.pop("headers", {}) or {})
                headers["Authorization"] = f"Bearer {self._token()}"
                kw["headers"] = headers
                continue
            if r.status_code in (401, 403) and system in ("sap", "lago"):  # an injected expired session
                time.sleep(0.05)
                continue
            if r.status_code == 429 or r.status_code >= 500:
                wait = min(0.05 * (attempt + 1), 1.0)
                with contextlib.suppress(ValueError):
                    wait = max(wait, float(r.headers.get("Retry-After") or 0) + 0.01)
                time.sleep(wait)
                continue
            r.raise_for_status()
            return r
        raise HarnessError(f"{system} kept failing {method} {url}")

    # -- Salesforce
    def _token(self) -> str:
        if self._sf_token is None:
            client_id, client_secret = self._sf_credentials()
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            }
            r = self.request("salesforce", "POST", "/services/oauth2/token", data=form)
            self._sf_token = str(r.json()["access_token"])
        return self._sf_token

    def soql(self, query: str) -> list[dict[str, Any]]:
        url: str | None = f"/services/data/v{self.sf_api_version}/query"
        params: dict[str, str] | None = {"q": query}
        records: list[dict[str, Any]] = []
        while url:
            r = self.request(
                "salesforce", "GET", url, params=params, headers={"Authorization": f"Bearer {self._token()}"}
            )
            # Amounts arrive as JSON numbers: read them as Decimal, never float.
            page = json.loads(r.text, parse_float=Decimal)
            records.extend(page["records"])
            url = None if page.get("done", True) else page["nextRecordsUrl"]
            params = None
        return records

    def close_won(self, count: int) -> list[str]:
        """Close ``count`` open opportunities as won, as sales would."""
        r = self.http["salesforce"].post("/__sandbox/salesforce/close-won", json={"count": count})
        r.raise_for_status()
        return list(r.json()["ids"])

    # -- Lago
    def advance_billing(self, days: int) -> int:
        """Move the billing engine's clock: subscriptions whose period ended are invoiced (and finalized)."""
        r = self.http["lago"].post("/__sandbox/lago/clock", json={"days": days}, timeout=600)
        r.raise_for_status()
        return len(r.json().get("invoices", []))

    def register_webhook(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {self._lago_api_key()}"}
        endpoint = {"webhook_url": url, "signature_algo": "hmac"}
        self.request(
            "lago", "POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": endpoint}, headers=headers
        )

    def webhooks_pending(self) -> int:
        return int(self.http["lago"].get("/__sandbox/lago/webhooks").json()["pending"])

    def drain_webhooks(self) -> None:
        self.http["lago"].post("/__sandbox/lago/webhooks/drain", timeout=120)

    def lago_invoices(self, detailed: bool = False) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self._lago_api_key()}"}
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            r = self.request(
                "lago", "GET", "/api/v1/invoices", params={"page": page, "per_page": 100}, headers=headers
            )
            data = r.json()
            out.extend(data["invoices"])
            if not data["meta"].get("next_page"):
                break
            page = int(data["meta"]["next_page"])
        if not detailed:
            return out
        # Where the list leaves out fees: one GET per invoice, as an auditor reading Lago would.
        return [
            i
            if "fees" in i
            else self.request("lago", "GET", f"/api/v1/invoices/{i['lago_id']}", headers=headers).json()[
                "invoice"
            ]
            for i in out
        ]

    # -- SAP
    def sap_documents(self) -> list[dict[str, Any]]:
        return list(self.http["sap"].get("/__sandbox/sap/ledger/documents").json()["documents"])

    # -- every sandbox's admin API
    def set_faults(self, rules: dict[str, dict[str, dict[str, Any]]]) -> None:
        """``{system: {operation or "*": FaultRule fields}}`` on the sandboxes; ``{}`` clears them all."""
        for name, client in self.http.items():
            client.put("/__sandbox/faults", json={"rules": rules.get(name, {})}).raise_for_status()

    def faults_injected(self) -> dict[str, dict[str, int]]:
        return {name: dict(c.get("/__sandbox/faults").json()["injected"]) for name, c in self.http.items()}

    def effects(self, system: str) -> dict[str, dict[str, int]]:
        return dict(self.http[system].get("/__sandbox/effects").json())

    def effects_log(self, system: str) -> list[tuple[float, str, str]]:
        return [
            tuple(e) for e in self.http[system].get("/__sandbox/effects/log", timeout=120).json()["effects"]
        ]

    def requests_log(self, system: str) -> list[dict[str, Any]]:
        return list(self.http[system].get("/__sandbox/requests", timeout=120).json()["requests"])
