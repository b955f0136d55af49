"""A simulator of the Lago billing engine's REST API v1 (``/api/v1``), conforming to Lago's OpenAPI.

Implemented: customers (upsert, get, list, delete), plans and add-ons (get, list; seeded from the catalogue),
subscriptions (create, get, list, update, terminate), one-off invoices, invoices (list with filters, get,
update metadata and payment status, finalize, void), credit notes (create, get, list), wallets (create,
get, list, update, terminate) and their transactions (top up, list; prepaid credits applied to
subscription invoices: ``wallets.py``), webhook endpoints (create, get, list, delete) and the webhook
public key. Billing runs on a sandbox clock:
``POST /__sandbox/lago/clock {"to": "YYYY-MM-DD"}`` or ``{"days": N}`` bills every subscription period
that ended (in arrears, prorated by days for partial calendar periods) and fires the webhooks.

Conventions (see ``seed.py``): plans are coded ``<PRODUCT>__<CURRENCY>`` (``plan_code_for``), add-ons
like the product. Taxes: the catalogue's tax codes; a customer gets its ``tax_codes`` or, when it has
none, the tax of its country. Currencies are the ones Lago's own validation accepts (``currencies.py``: KWD
and JOD included, though Lago's OpenAPI ``Currency`` enum omits them); ``unsupported_currencies`` refuses
some more, as a Lago that does not take them would.

Fault operations: ``customers.create|list|get|delete``, ``plans.list|get``, ``add_ons.list|get``,
``subscriptions.create|list|get|update|terminate``, ``invoices.create|list|get|update|finalize|void``,
``credit_notes.create|list|get``, ``wallets.create|list|get|update|terminate``,
``wallet_transactions.create|list``, ``webhook_endpoints.create|list|get|delete``, ``webhooks.public_key``,
``billable_metrics.create|list|get``, ``plans.create``, ``events.create|batch|get``,
``customers.current_usage``. Usage billing (metrics, charges, events, current usage) is ``usage.py``;
event ingestion has a ceiling of its own, ``events_rate_limit_per_s`` (500 requests/s as Lago's default).
Both ceilings are set at runtime with ``PUT /__sandbox/lago/rate_limit`` (``{"per_s": 50}``: Lago's
limit per organization; 429 with ``Retry-After`` beyond it, per one-second window).
Writes may be dropped after commit. An expired key answers 401 as Lago does for a revoked one.

Effect counter (kind: key): ``customer.create``/``customer.update``: external_id;
``customer.delete``: external_id; ``subscription.create``/``subscription.terminate``: external_id; ``invoice.create``: the one-off
invoice's external_customer_id; ``invoice.metadata``: ``"<key>=<value>"`` once per invoice that gains
that pair (the hub's ``lead2cash_key=<idempotency key>`` counts billing effects per key);
``invoice.subscription_period``: ``"<external subscription id>:<period start>"``;
``invoice.finalize``/``invoice.void``: lago_id; ``invoice.payment_status``: ``"<lago_id>:<status>"``;
``credit_note.create``: invoice lago_id; ``wallet.create``: external customer id; ``wallet.terminate``:
lago_id; ``wallet_transaction.create``: ``"<wallet lago_id>:<transaction_status>"``; ``event.create``: transaction_id, once per event stored (a
resent transaction id is deduplicated and not counted again).

Lago's one-off invoice create accepts no metadata: metadata is set by ``PUT /invoices/{lago_id}``.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

from lead2cash.sandbox.catalog import CURRENCIES
from lead2cash.sandbox.faults import EffectCounter, Faults
from lead2cash.sandbox.lago.currencies import LAGO_CURRENCIES
from lead2cash.sandbox.lago.seed import plan_code_for, seed_catalog, seed_customers
from lead2cash.sandbox.lago.store import Clock, LagoStore
from lead2cash.sandbox.lago.webhooks import DispatchSettings, Signer, WebhookDispatcher

__all__ = ["LagoSandbox", "plan_code_for"]

DEFAULT_CLOCK_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class LagoSandbox:
    name = "lago"

    def __init__(
        self,
        seed: int = 0,
        seed_size: int = 10,
        faults_profile: str = "none",
        *,
        api_key: str = "lago-sandbox-api-key",
        hmac_key: str = "lago-sandbox-hmac-key",
        webhook_signature: str = "hmac",
        webhook_urls: tuple[str, ...] = (),
        webhook_verify: bool | str | ssl.SSLContext = True,
        webhook_settings: DispatchSettings | None = None,
        private_key_pem: bytes | None = None,
        api_url: str | None = None,
        clock_start: datetime = DEFAULT_CLOCK_START,
        grace_period_days: int = 0,
        unsupported_currencies: tuple[str, ...] = (),
        rate_limit_per_s: int | None = None,
        events_rate_limit_per_s: int | None = 500,
    ) -> None:
        if webhook_signature not in ("hmac", "jwt"):
            raise ValueError("webhook_signature must be 'hmac' or 'jwt'")
        self.seed = seed
        self.seed_size = seed_size
        self.api_key = api_key
        self.api_url = api_url  # the JWT issuer (Lago's LAGO_API_URL); learnt from the first request
        self.webhook_signature = webhook_signature
        self.webhook_urls = webhook_urls
        self.clock_start = clock_start
        self.grace_period_days = grace_period_days
        self.currencies = tuple(c for c in CURRENCIES if c not in unsupported_currencies)
        self.accepted_currencies = LAGO_CURRENCIES - set(unsupported_currencies)
        self.rate_limit_per_s = rate_limit_per_s
        # Lago's event ingestion ceiling (requests/s on /events and /events/batch; None: no ceiling).
        self.events_rate_limit_per_s = events_rate_limit_per_s
        self.faults = Faults("lago", seed)
        self.faults.set_profile(faults_profile)
        self.effects = EffectCounter()
        self.signer = Signer(hmac_key, private_key_pem)
        self.store = self._new_store()
        self.webhooks = WebhookDispatcher(
            signer=self.signer,
            organization_id=self.store.organization_id,
            endpoints=lambda: list(self.store.webhook_endpoints.values()),
            issuer=lambda: self.api_url or "",
            seed=seed,
            verify=webhook_verify,
            settings=webhook_settings,
        )
        self._app: Any = None

    def _new_store(self) -> LagoStore:
        store = LagoStore(
            seed=self.seed,
            clock=Clock(self.clock_start),
            effects=self.effects,
            emit=lambda *args: self.webhooks.publish(*args),
            currencies=self.currencies,
            accepted_currencies=self.accepted_currencies,
            grace_period_days=self.grace_period_days,
        )
        seed_catalog(store)
        seed_customers(store, self.seed, self.seed_size)
        for url in self.webhook_urls:
            store.create_webhook_endpoint({"webhook_url": url, "signature_algo": self.webhook_signature})
        return store

    def reset(self) -> None:
        """Back to the seeded state (the admin ``/__sandbox/reset``)."""
        self.webhooks.reset()
        self.store = self._new_store()

    def asgi(self) -> Any:
        if self._app is None:
            from lead2cash.sandbox.lago.app import build_app

            self._app = build_app(self)
        return self._app

    def hub_config(self, base_url: str) -> dict[str, Any]:
        if self.api_url is None:
            self.api_url = base_url
        return {
            "type": "lago",
            "base_url": f"{base_url}/api/v1",
            "api_key": self.api_key,
            "webhook_signature": self.webhook_signature,
            "webhook_hmac_key": self.signer.hmac_key,
            "webhook_public_key_url": f"{base_url}/api/v1/webhooks/json_public_key",
        }
