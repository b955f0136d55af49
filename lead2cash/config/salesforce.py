"""Config of a Salesforce system (``type: salesforce``).

The sandbox's ``hub_config()`` output is accepted as it is, plus ``ca_bundle``.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from lead2cash.config.base import Duration, Strict

GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}(?:\.[A-Za-z][A-Za-z0-9_]{0,79}){0,4}$")


def _field_name(value: str) -> str:
    if not _FIELD.match(value):
        raise ValueError(f"not a Salesforce field name: {value!r}")
    return value


class SalesforceAuth(Strict):
    grant_type: Literal["client_credentials", "password", "jwt_bearer"] = "client_credentials"
    client_id: str = Field(description="the connected app's consumer key")
    client_secret: SecretStr | None = Field(
        None, description="consumer secret (client_credentials, password)"
    )
    username: str | None = Field(None, description="integration user (password, jwt_bearer)")
    password: SecretStr | None = Field(None, description="password + security token (password grant)")
    private_key_file: str | None = Field(None, description="PEM private key that signs the JWT (jwt_bearer)")
    audience: str | None = Field(
        None,
        description="JWT aud; default https://login.salesforce.com (https://test.salesforce.com for a "
        "sandbox or test. login URL), never the My Domain host",
    )

    @model_validator(mode="after")
    def _complete(self) -> SalesforceAuth:
        need = {
            "client_credentials": ("client_secret",),
            "password": ("client_secret", "username", "password"),
            "jwt_bearer": ("username", "private_key_file"),
        }[self.grant_type]
        missing = [n for n in need if getattr(self, n) in (None, "")]
        if missing:
            raise ValueError(f"grant_type {self.grant_type} needs {', '.join(missing)}")
        return self


class SalesforceApiBudget(Strict):
    daily_share: float = Field(
        1.0, gt=0, le=1, description="share of the org's daily API allocation one route may use"
    )
    pause_below: float = Field(
        0.1, ge=0, lt=1, description="pause routes when the org's remaining allocation falls below this share"
    )
    retry_after: Duration = Field(300.0, description="how long a paused route waits before trying again")


class SalesforceWritebackFields(Strict):
    """Opportunity fields that receive billing state (custom fields in real orgs)."""

    invoice_number: str | None = "Billing_Invoice_Number__c"
    invoiced_amount: str | None = "Billing_Invoiced_Amount__c"
    payment_status: str | None = "Billing_Payment_Status__c"
    accounting_document: str | None = "SAP_Accounting_Document__c"
    last_sync: str | None = "Billing_Last_Sync__c"

    @field_validator("*")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _field_name(value)


class SalesforceSystemConfig(Strict):
    type: Literal["salesforce"]
    instance_url: str | None = Field(
        None, description="https://<my-domain>.my.salesforce.com; default: the token's"
    )
    login_url: str | None = Field(
        None,
        description="the org's My Domain URL (https://MyDomainName.my.salesforce.com), or "
        "https://login.salesforce.com / test. (not with client_credentials); token_url derives",
    )
    token_url: str | None = Field(
        None, description="OAuth token endpoint; default <login_url>/services/oauth2/token"
    )
    api_version: str = Field("62.0", pattern=r"^\d{2,3}\.0$")
    auth: SalesforceAuth
    ca_bundle: str | None = Field(None, description="PEM bundle of CAs to trust (private CA, TLS proxy)")
    proxies: dict[Literal["http", "https"], str] = Field(default_factory=dict)
    timeout: Duration = 30.0
    multi_currency: bool = Field(True, description="the org has CurrencyIsoCode on records")
    default_currency: str | None = Field(
        None, pattern=r"^[A-Z]{3}$", description="the org's currency, for records without CurrencyIsoCode"
    )
    safety_lag: Duration = Field(60.0, description="how far the change cursor stays behind the org's clock")
    page_size: int = Field(2000, ge=1, le=2000)
    sweep_interval: Duration | None = Field(
        21600.0, description="full reconciliation sweep per route (formula/roll-up changes); null disables"
    )
    api_budget: SalesforceApiBudget = Field(default_factory=lambda: SalesforceApiBudget())
    max_concurrent_calls: int = Field(20, ge=1, le=200)
    write_window: Duration = Field(0.005, description="how long writes are collected into one request")
    bulk_threshold: int = Field(2000, ge=1, description="records per flush from which Bulk API 2.0 is used")
    writeback_fields: SalesforceWritebackFields = Field(default_factory=lambda: SalesforceWritebackFields())

    @model_validator(mode="after")
    def _urls(self) -> SalesforceSystemConfig:
        if not (self.token_url or self.login_url):
            raise ValueError("give token_url or login_url")
        if not self.multi_currency and not self.default_currency:
            raise ValueError("default_currency is required when multi_currency is false")
        host = (urlsplit(self.resolved_token_url).hostname or "").lower()
        if self.auth.grant_type == "client_credentials" and host in GENERIC_LOGIN_HOSTS:
            # Salesforce refuses this flow on its generic login hosts (help article 000886201).
            raise ValueError(
                f"the client_credentials flow needs the org's My Domain login URL "
                f"(https://MyDomainName.my.salesforce.com, or MyDomainName--SandboxName.sandbox.my."
                f"salesforce.com for a sandbox); Salesforce does not accept it on {host}"
            )
        return self

    @property
    def resolved_token_url(self) -> str:
        return self.token_url or f"{(self.login_url or '').rstrip('/')}/services/oauth2/token"
