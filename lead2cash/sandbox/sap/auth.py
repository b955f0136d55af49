"""Logon, sessions and CSRF protection as SAP NetWeaver / Gateway does them.

* Basic authentication, or an OAuth 2.0 bearer token from ``/sap/bc/sec/oauth2/token`` (client credentials).
  Wrong credentials: 401 with ``WWW-Authenticate: Basic realm="SAP NetWeaver Application Server [SID/client]"``.
* A successful logon opens a session: cookies ``SAP_SESSIONID_<SID>_<client>`` and ``sap-usercontext``.
  A later request carrying a valid session cookie is authenticated by it.
* ``x-csrf-token: Fetch`` on a GET returns the session's token in ``x-csrf-token``. A modifying request
  (POST/PUT/PATCH/MERGE/DELETE) needs that token and the matching session cookie, or it gets 403 with
  ``x-csrf-token: Required`` and the text ``CSRF token validation failed``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

MODIFYING = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
TOKEN_LIFETIME_S = 3600


@dataclass
class Session:
    user: str
    csrf_token: str | None = None


@dataclass
class Identity:
    user: str
    session_id: str | None  # the session the request arrived with (cookie), if valid
    via: str  # "basic" | "bearer" | "session"
    new_session: str | None = None  # set when this request opened a session


class Auth:
    def __init__(
        self,
        username: str,
        password: str,
        client_id: str,
        client_secret: str,
        system_id: str,
        client: str,
    ):
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.system_id = system_id
        self.client = client
        self.cookie_name = f"SAP_SESSIONID_{system_id}_{client}"
        self.realm = f"SAP NetWeaver Application Server [{system_id}/{client}]"
        self._lock = threading.Lock()
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, expiry)

    def reset(self) -> None:
        with self._lock:
            self.sessions.clear()
            self.tokens.clear()

    # --- authentication ------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Identity | None:
        session_id = request.cookies.get(self.cookie_name)
        session = self.sessions.get(session_id) if session_id else None
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            user = self._basic_user(value)
            if user is None:
                return None
            if session is not None and session.user != user:
                session_id = None
            return Identity(user, session_id if session else None, "basic")
        if scheme == "bearer":
            entry = self.tokens.get(value.strip())
            if entry is None or entry[1] < time.time():
                return None
            return Identity(entry[0], session_id if session else None, "bearer")
        if header:
            return None
        if session is not None:
            return Identity(session.user, session_id, "session")
        return None

    def _basic_user(self, value: str) -> str | None:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        ok_user = hmac.compare_digest(user.upper().encode(), self.username.upper().encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return user.upper() if ok_user and ok_password else None

    def unauthorized(self, bearer: bool = False) -> Response:
        html = (
            "<html><head><title>Logon Error Message</title></head><body><p>Anmeldung fehlgeschlagen / "
            "Logon failed</p></body></html>"
        )
        challenge = (
            f'Bearer realm="{self.realm}", error="invalid_token"' if bearer else f'Basic realm="{self.realm}"'
        )
        return Response(
            html, status_code=401, media_type="text/html", headers={"www-authenticate": challenge}
        )

    # --- sessions and CSRF -----------------------------------------------------------------------------

    def ensure_session(self, identity: Identity) -> str:
        if identity.session_id and identity.session_id in self.sessions:
            return identity.session_id
        session_id = secrets.token_urlsafe(48)
        with self._lock:
            self.sessions[session_id] = Session(identity.user)
        identity.session_id = session_id
        identity.new_session = session_id
        return session_id

    def fetch_token(self, identity: Identity) -> str:
        session_id = self.ensure_session(identity)
        session = self.sessions[session_id]
        if session.csrf_token is None:
            session.csrf_token = base64.b64encode(secrets.token_bytes(16)).decode()
        return session.csrf_token

    def csrf_valid(self, request: Request, identity: Identity) -> bool:
        token = request.headers.get("x-csrf-token", "")
        session = self.sessions.get(identity.session_id or "")
        if session is None or session.csrf_token is None or not token:
            return False
        return hmac.compare_digest(token.encode(), session.csrf_token.encode())

    def csrf_failed(self) -> Response:
        return Response(
            "CSRF token validation failed",
            status_code=403,
            media_type="text/plain",
            headers={"x-csrf-token": "Required"},
        )

    def set_cookies(self, response: Response, identity: Identity) -> None:
        if identity.new_session:
            # Written raw: SAP sends "sap-usercontext=sap-client=100" unquoted, which Starlette would quote.
            response.raw_headers.append(
                (
                    b"set-cookie",
                    f"{self.cookie_name}={identity.new_session}; path=/; secure; HttpOnly".encode(),
                )
            )
            response.raw_headers.append(
                (b"set-cookie", f"sap-usercontext=sap-client={self.client}; path=/".encode())
            )

    def drop_session(self, identity: Identity) -> None:
        with self._lock:
            if identity.session_id:
                self.sessions.pop(identity.session_id, None)

    def expire_all(self) -> dict[str, int]:
        with self._lock:
            counts = {"sessions": len(self.sessions), "tokens": len(self.tokens)}
            self.sessions.clear()
            self.tokens.clear()
        return counts

    def revoke_bearer(self, request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                self.tokens.pop(value.strip(), None)

    # --- OAuth 2.0 client credentials ---------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> dict[str, object] | None:
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = (self.username.upper(), time.time() + TOKEN_LIFETIME_S)
        return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "scope": ""}
