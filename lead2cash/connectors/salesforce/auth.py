"""OAuth 2.0 token requests against the configured token URL.

simple-salesforce's own login helpers target ``*.salesforce.com``; a hub must also reach My Domain URLs,
sandboxes and private endpoints behind a proxy, so the token is fetched here and handed to it as a session.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt

from lead2cash.connectors.http import parse_retry_after
from lead2cash.errors import ThrottledError, TransientError
from lead2cash.observability import REDACTOR

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TYPES = ("client_credentials", "password", "jwt_bearer")


LOGIN_AUDIENCE = "https://login.salesforce.com"
TEST_AUDIENCE = "https://test.salesforce.com"


def jwt_audience(url: str) -> str:
    """The JWT bearer ``aud`` for a login or token URL. Salesforce takes only its authorization server
    here, never a My Domain host (which it answers with ``audience is invalid``): test.salesforce.com for
    sandboxes and scratch orgs, login.salesforce.com for everything else; an Experience Cloud site keeps
    its own URL. (help.salesforce.com: "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration".)"""
    parsed = urlsplit(url)
    host = (parsed.hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(
        (".sandbox.my.salesforce.com", ".scratch.my.salesforce.com")
    ):
        return TEST_AUDIENCE
    if host.endswith((".my.site.com", ".force.com")):
        path = parsed.path.split("/services/")[0].rstrip("/")
        return f"https://{host}{path}"
    return LOGIN_AUDIENCE


@dataclass(frozen=True)
class Credentials:
    grant_type: str
    client_id: str
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    private_key_file: Path | None = None
    audience: str | None = None  # JWT ``aud``; default jwt_audience(token URL)

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(grant_type={self.grant_type!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str | None

    def __repr__(self) -> str:
        return f"Token(instance_url={self.instance_url!r})"


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


class TokenProvider:
    """Fetches a token for the configured grant. Failures are classified so a route pauses rather than
    dead-lettering its work: a rejected grant is a configuration problem an operator fixes, after which the
    same messages must still go through."""

    def __init__(
        self,
        token_url: str,
        credentials: Credentials,
        *,
        ca_bundle: str | None = None,
        proxies: dict[str, str] | None = None,
        timeout: float = 30.0,
        auth_retry_after: float = 60.0,
    ) -> None:
        self.token_url = token_url
        self.credentials = credentials
        self.auth_retry_after = auth_retry_after
        # After a 429/503 with Retry-After, no caller asks the token endpoint again before this moment.
        self._not_before = 0.0
        verify = ssl_context(ca_bundle)
        mounts = {
            f"{scheme}://": httpx.HTTPTransport(proxy=url, verify=verify)
            for scheme, url in (proxies or {}).items()
            if scheme in ("http", "https")
        }
        self._http = httpx.Client(verify=verify, timeout=timeout, trust_env=False, mounts=mounts or None)

    def close(self) -> None:
        self._http.close()

    def _form(self) -> dict[str, str]:
        c = self.credentials
        if c.grant_type == "client_credentials":
            return {
                "grant_type": "client_credentials",
                "client_id": c.client_id,
                "client_secret": c.client_secret or "",
            }
        if c.grant_type == "password":
            return {
                "grant_type": "password",
                "client_id": c.client_id,
                "client_secret": c.client_secret or "",
                "username": c.username or "",
                "password": c.password or "",
            }
        if c.grant_type == "jwt_bearer":
            if c.private_key_file is None:
                raise ValueError("auth.private_key_file is required for the jwt_bearer grant")
            key = Path(c.private_key_file).read_text()
            claims = {
                "iss": c.client_id,
                "sub": c.username,
                "aud": c.audience or jwt_audience(self.token_url),
                "exp": int(time.time()) + 180,  # token request lifetime only; never a watermark
            }
            return {"grant_type": JWT_BEARER, "assertion": jwt.encode(claims, key, algorithm="RS256")}
        raise ValueError(f"unsupported grant_type {c.grant_type!r}; use one of {', '.join(GRANT_TYPES)}")

    def fetch(self) -> Token:
        wait = self._not_before - time.monotonic()
        if wait > 0:
            # The endpoint asked for a pause (Retry-After): every caller honours it, not just the one that
            # was told, so a second route's login does not hit it again a moment later.
            raise TransientError("Salesforce token endpoint asked to wait (Retry-After)", retry_after=wait)
        try:
            response = self._http.post(self.token_url, data=self._form())
        except httpx.HTTPError as exc:
            raise TransientError(f"Salesforce token request failed: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            retry = parse_retry_after(response.headers.get("retry-after"))
            if retry:
                self._not_before = max(self._not_before, time.monotonic() + retry)
            raise TransientError(
                f"Salesforce token endpoint answered {response.status_code}", retry_after=retry
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not body.get("access_token"):
            # Only the OAuth error code and description: they never echo the secret.
            raise ThrottledError(
                "Salesforce rejected the token request; check the auth settings",
                retry_after=self.auth_retry_after,
                details={
                    "status": response.status_code,
                    "error": str(body.get("error", "")),
                    "error_description": str(body.get("error_description", ""))[:200],
                    "grant_type": self.credentials.grant_type,
                },
            )
        REDACTOR.add_issued(str(body["access_token"]))
        return Token(str(body["access_token"]), body.get("instance_url") or None)
