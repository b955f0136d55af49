"""Config of a Lago system (``type: lago``).

```yaml
systems:
  lago:
    type: lago
    base_url: https://api.getlago.com/api/v1
    api_key: ${LAGO_API_KEY}
    ca_bundle: /etc/ssl/lago-ca.pem        # optional: trust this CA instead of the system store
    timeout: 10s
    webhook: {signature: hmac, hmac_key: ${LAGO_HMAC_KEY}}   # or {signature: jwt}
    plan_table: lago_plans                 # mappings: product code -> plan code ({currency} allowed)
    addon_table: lago_add_ons              # mappings: product code -> add-on code
```
The flat keys the Lago sandbox prints (``webhook_signature``, ``webhook_hmac_key``,
``webhook_public_key_url``) are accepted too and folded into ``webhook``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from lead2cash.config.base import Duration, Strict

_FLAT_WEBHOOK_KEYS = {
    "webhook_signature": "signature",
    "webhook_hmac_key": "hmac_key",
    "webhook_public_key_url": "public_key_url",
}


class LagoWebhookConfig(Strict):
    signature: Literal["hmac", "jwt"] = Field(
        "hmac", description="how Lago signs X-Lago-Signature: HMAC-SHA256 or an RS256 JWT"
    )
    hmac_key: SecretStr | None = Field(None, description="the organization's HMAC key (signature: hmac)")
    public_key_url: str | None = Field(
        None,
        description="where Lago serves its webhook public key; default {base_url}/webhooks/json_public_key",
    )
    public_key_ttl: Duration = Field(3600.0, description="how long the fetched public key is trusted")
    issuer: str | None = Field(
        None, description="expected JWT 'iss' (Lago's LAGO_API_URL); unchecked if unset"
    )

    @model_validator(mode="after")
    def _key_for_hmac(self) -> LagoWebhookConfig:
        if self.signature == "hmac" and self.hmac_key is None:
            raise ValueError("hmac_key is required when signature is 'hmac'")
        return self


def _flat_webhook_schema(schema: dict[str, Any]) -> None:
    # The flat keys are folded into ``webhook`` before validation; the JSON Schema must accept them too.
    webhook = schema["properties"]["webhook"]
    for flat, nested in _FLAT_WEBHOOK_KEYS.items():
        schema["properties"][flat] = {
            "description": f"alias of webhook.{nested} (the key the Lago sandbox prints)",
            "type": "string",
            **({"enum": ["hmac", "jwt"]} if nested == "signature" else {}),
        }
    webhook.setdefault("description", "how Lago's webhooks are verified")


class LagoSystemConfig(Strict):
    """The flat keys the Lago sandbox prints, `webhook_signature`, `webhook_hmac_key` and
    `webhook_public_key_url`, are accepted as aliases of `webhook.signature`, `webhook.hmac_key` and
    `webhook.public_key_url`."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_flat_webhook_schema)

    type: Literal["lago"]
    base_url: str = Field(description="Lago's REST API root, ending in /api/v1")
    api_key: SecretStr
    ca_bundle: str | None = Field(None, description="PEM file of the CA to trust (default: system store)")
    timeout: Duration = 10.0
    max_connections: int = Field(32, ge=1, le=1024)
    retries: int = Field(
        4, ge=0, le=20, description="quick in-call retries of safe requests before the route's own retry"
    )
    max_inline_wait: Duration = Field(
        5.0, description="a longer Retry-After is handed to the route (which pauses) instead of waited"
    )
    rate_limit: float | None = Field(
        None,
        gt=0,
        description="requests/s this hub sends to Lago, events aside (Lago allows 50 per organization: "
        "set a little below it, shared among the hub's workers); calls are spaced, not burst",
    )
    webhook: LagoWebhookConfig | None = None
    plan_table: str | None = Field(None, description="mappings table: product code -> plan code")
    addon_table: str | None = Field(None, description="mappings table: product code -> add-on code")
    subscriptions: Literal["per_line", "per_plan"] = "per_line"
    billing_time: Literal["calendar", "anniversary"] = "calendar"
    on_reversal_subscriptions: Literal["immediately", "period_end"] = Field(
        "immediately",
        description="a billed deal lost or reopened: its subscriptions end today (billed up to today, "
        "prorated by days) or at the end of their current billing period",
    )
    on_reversal_invoice: Literal["dead_letter", "credit_note"] = Field(
        "dead_letter",
        description="a billed deal lost or reopened whose one-off invoice was issued: a 'credit note "
        "needed' dead letter for a person to decide, or a credit note for the invoice's whole amount",
    )
    on_backdated_amendment: Literal["prorate", "dead_letter"] = Field(
        "prorate",
        description="a changed line whose new terms are effective (its service date) before the last day "
        "already billed: the new terms bill from the day after the change reaches Lago and the billed days "
        "are not adjusted (a warning names the difference), or that, and a dead letter naming the "
        "difference per period for finance to credit or charge",
    )
    unsupported_currencies: list[str] = Field(
        default_factory=list,
        description="currencies this Lago refuses; orders in them are dead-lettered before any call",
    )
    poll_lookback: Duration = Field(
        90 * 86400.0, description="poll fallback: how far before the checkpoint to scan issuing dates"
    )

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_webhook_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in _FLAT_WEBHOOK_KEYS):
            return data
        data = dict(data)
        webhook = dict(data.get("webhook") or {})
        for flat, nested in _FLAT_WEBHOOK_KEYS.items():
            if flat in data:
                webhook.setdefault(nested, data.pop(flat))
        data["webhook"] = webhook
        return data

    @field_validator("base_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL such as https://api.getlago.com/api/v1")
        return value.rstrip("/")

    @field_validator("unsupported_currencies")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [c.upper() for c in value]
