"""The ``acme`` system type's declaration. It names its binding by dotted path: the declaration is read
while lead2cash builds its config schema, before any system is built."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from lead2cash.config.base import Duration, Strict
from lead2cash.systems.registry import Operation, SystemType, WebhookReceiver


class AcmeConfig(Strict):
    """Acme's ledger: a directory of JSON Lines files standing in for its API."""

    type: Literal["acme"]
    directory: str = Field(description="where the ledger's files are (relative to the first config file)")
    webhook_secret: SecretStr = Field(description="HMAC-SHA256 key of X-Acme-Signature")
    timeout: Duration = Field(5.0, description="per request")


class OrdersOptions(Strict):
    region: str | None = Field(None, description="only orders of this region")


class PostOptions(Strict):
    journal: str = Field(description="the ledger journal posted to")


SYSTEM = SystemType(
    name="acme",
    description="Acme's ledger: orders pushed by signed webhook or read from its feed; entries posted.",
    config=AcmeConfig,
    build="lead2cash_acme.binding:build",
    sources=(Operation("orders", "orders, by webhook or poll", OrdersOptions),),
    actions=(Operation("post", "an entity posted to a journal, once per key", PostOptions),),
    adapters=("lead2cash_acme.adapters",),
    webhooks=(
        WebhookReceiver(
            path="acme",
            signature="X-Acme-Signature: hex HMAC-SHA256 of the body with webhook_secret",
            dedupe_key="X-Acme-Delivery",
        ),
    ),
)
