"""The Salesforce simulator as an ASGI app.

Operations (names for fault rules; ``"*"`` matches all): ``oauth.token``, ``resources``, ``limits``,
``query`` (query, queryAll and next pages), ``describe``, ``sobject.get``, ``sobject.create``,
``sobject.update``, ``sobject.upsert``, ``sobject.delete``, ``sobject.updated``, ``sobject.deleted``,
``collections.create``, ``collections.update``, ``collections.upsert``, ``collections.delete``,
``collections.retrieve``, ``composite``, ``bulk.create``, ``bulk.upload``, ``bulk.close``, ``bulk.get``,
``bulk.delete``, ``bulk.results``.

Effect counter kinds: ``<Object>.create`` / ``<Object>.update`` / ``<Object>.delete`` keyed by record Id for
every applied API write (REST, collections, composite, Bulk 2.0), and ``upsert:<Object>`` keyed by the
external id value for every applied upsert. Seed data and admin calls are not counted.

Server time: the org clock (wall clock plus the offset set through the admin API) stamps CreatedDate,
LastModifiedDate and SystemModstamp with millisecond precision; a client reads it from the stamps a write
returns (``SELECT SystemModstamp ... ORDER BY SystemModstamp DESC LIMIT 1``) or from ``latestDateCovered``
of ``/sobjects/{type}/updated``, and every response's HTTP ``Date`` header carries it (whole seconds).

Admin API (no auth) under ``/__sandbox/``: ``faults``, ``effects``, ``reset`` (shared) and
``salesforce/expire-sessions`` (POST), ``salesforce/limits`` (GET, PUT ``{"used", "max"}``),
``salesforce/clock`` (GET, PUT ``{"offset_seconds"}``), ``salesforce/close-won`` (POST ``{"ids"}`` or
``{"count"}``), ``salesforce/late-commit`` (POST ``{"object", "id", "fields", "seconds_ago"}``: a write whose
SystemModstamp lies in the past) and ``salesforce/silent-update`` (POST ``{"object", "id", "fields"}``: a
formula/roll-up change that leaves SystemModstamp alone).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lead2cash.sandbox.catalog import CURRENCIES
from lead2cash.sandbox.faults import EffectCounter, Faults, admin_routes
from lead2cash.sandbox.salesforce.api import JSON_TYPE, Call, Reply, RestApi, dumps
from lead2cash.sandbox.salesforce.bulk import BulkApi
from lead2cash.sandbox.salesforce.ids import IdMinter
from lead2cash.sandbox.salesforce.schema import API_VERSION, OBJECTS, STAGES
from lead2cash.sandbox.salesforce.seed import seed_store
from lead2cash.sandbox.salesforce.store import Clock, SfError, Store, format_datetime

ORG_ID = "00DDx0000001lc2MAA"
USER_ID = "005Dx0000000001AAA"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
VERSIONS = [
    {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"},
    {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"},
    {"label": "Winter '25", "url": f"/services/data/v{API_VERSION}", "version": API_VERSION},
]
WRITE_OPS = frozenset(
    {
        "sobject.create",
        "sobject.update",
        "sobject.upsert",
        "sobject.delete",
        "collections.create",
        "collections.update",
        "collections.upsert",
        "collections.delete",
        "composite",
        "bulk.close",
    }
)


def sf_json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type=JSON_TYPE, headers=headers)


class SalesforceSandbox:
    name = "salesforce"
    sends_date_header = True  # the org clock, see _OrgDate

    def __init__(
        self,
        seed: int = 0,
        seed_size: int = 200,
        faults_profile: str = "none",
        daily_api_limit: int = 15000,
        client_id: str = "lead2cash-sandbox-client",
        client_secret: str = "lead2cash-sandbox-secret",  # noqa: S107
        username: str = "integration@lead2cash.sandbox",
        password: str = "sandbox-password",  # noqa: S107
        security_token: str = "",
        jwt_public_key: str | None = None,
        session_ttl_s: float = 7200.0,
        currencies: tuple[str, ...] | None = None,
    ) -> None:
        self.seed, self.seed_size = seed, seed_size
        self.currencies = tuple(currencies) if currencies else CURRENCIES
        self.initial_api_limit = daily_api_limit
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password, self.security_token = username, password, security_token
        self.jwt_public_key = jwt_public_key
        self.session_ttl_s = session_ttl_s
        self.faults = Faults(self.name, seed)
        self.faults.set_profile(faults_profile)
        self.effects = EffectCounter()
        self._app: Starlette | None = None
        self.reset_state()

    # --- state ------------------------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.clock = Clock()
        self.minter = IdMinter()
        self.store = Store(self.clock, self.minter)
        seed_store(self.store, self.seed, self.seed_size, self.currencies)
        self.started_at = self.clock.now()
        self.sessions: dict[str, float] = {}
        self.api_used = 0
        self.daily_api_limit = self.initial_api_limit
        self.rest = RestApi(self)
        self.bulk = BulkApi(self)

    def hub_config(self, base_url: str) -> dict[str, Any]:
        return {
            "type": "salesforce",
            "instance_url": base_url,
            "login_url": base_url,
            "token_url": f"{base_url}/services/oauth2/token",
            "api_version": API_VERSION,
            "auth": {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "username": self.username,
                "password": self.password + self.security_token,
            },
        }

    def instance_url(self, call_or_request: Any) -> str:
        return getattr(self, "_instance_url", "") or ""

    # --- OAuth ------------------------------------------------------------------------------------------

    def issue_token(self, request: Request) -> dict[str, Any]:
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(72)}"
        self.sessions[token] = time.monotonic() + self.session_ttl_s
        issued_at = str(int(self.clock.now().timestamp() * 1000))
        identity = f"{self.instance_url(request)}/id/{ORG_ID}/{USER_ID}"
        signature = base64.b64encode(
            hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return {
            "access_token": token,
            "instance_url": self.instance_url(request),
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": "api",
        }

    def check_grant(self, form: dict[str, str], basic: tuple[str, str] | None) -> str | None:
        """None when the grant is good, else the OAuth error description."""
        grant = form.get("grant_type", "")
        client_id = form.get("client_id") or (basic[0] if basic else "")
        client_secret = form.get("client_secret") or (basic[1] if basic else "")
        if grant == "password":
            if client_id != self.client_id or client_secret != self.client_secret:
                return "invalid_client"
            if form.get("username") != self.username or form.get("password") not in (
                self.password + self.security_token,
                self.password,
            ):
                return "authentication failure"
            return None
        if grant == "client_credentials":
            if client_id != self.client_id or client_secret != self.client_secret:
                return "invalid_client"
            return None
        if grant == JWT_BEARER:
            assertion = form.get("assertion", "")
            try:
                header = jwt.get_unverified_header(assertion)
                if header.get("alg") != "RS256":
                    return "invalid assertion"
                if self.jwt_public_key:
                    claims = jwt.decode(
                        assertion, self.jwt_public_key, algorithms=["RS256"], options={"verify_aud": False}
                    )
                else:
                    claims = jwt.decode(assertion, options={"verify_signature": False, "verify_exp": True})
            except jwt.PyJWTError:
                return "invalid assertion"
            if claims.get("iss") != self.client_id:
                return "invalid_client_id"
            if claims.get("sub") != self.username:
                return "user hasn't approved this consumer"
            if "exp" not in claims:
                return "expired authorization code"
            return None
        return "unsupported_grant_type"

    async def token(self, request: Request) -> Response:
        self._instance_url = str(request.base_url).rstrip("/")
        fault = await self.faults.apply(request, "oauth.token", self.error_response)
        if fault is not None:
            return fault
        # urlencoded only (what every OAuth client sends); no multipart dependency
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        basic = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, pwd = base64.b64decode(auth[6:]).decode().partition(":")
                basic = (unquote(user), unquote(pwd))
            except ValueError:
                basic = None
        problem = self.check_grant({k: str(v) for k, v in form.items()}, basic)
        if problem is None:
            return JSONResponse(self.issue_token(request))
        if problem == "unsupported_grant_type":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        error = "invalid_client_id" if problem in ("invalid_client", "invalid_client_id") else "invalid_grant"
        description = "client identifier invalid" if error == "invalid_client_id" else problem
        return JSONResponse({"error": error, "error_description": description}, 400)

    # --- REST dispatch ----------------------------------------------------------------------------------

    def error_response(self, status: int, retry_after: int) -> Response:
        if status == 429:
            body = [{"message": "Too many requests. Try again later.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        elif status == 503:
            body = [
                {
                    "message": "Server temporarily unavailable. Please try again later.",
                    "errorCode": "SERVER_UNAVAILABLE",
                }
            ]
        else:
            body = [
                {
                    "message": "An unexpected error occurred. Please include this ErrorId if you contact "
                    "support: 1234567890-12345 (-1234567890)",
                    "errorCode": "UNKNOWN_EXCEPTION",
                }
            ]
        return sf_json(status, body, {"Retry-After": str(retry_after), **self.limit_header()})

    def limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_api_limit}"}

    def _bearer(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        return token.strip()

    def _session_ok(self, token: str | None) -> bool:
        if token is None:
            return False
        expires = self.sessions.get(token)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self.sessions[token]
            return False
        return True

    async def versions(self, request: Request) -> Response:
        return sf_json(200, VERSIONS)

    async def data(self, request: Request) -> Response:
        self._instance_url = str(request.base_url).rstrip("/")
        version = request.path_params["version"]
        rest = request.path_params.get("rest", "")
        segments = [unquote(s) for s in rest.split("/") if s]
        token = self._bearer(request)
        if not self._session_ok(token):
            return sf_json(401, EXPIRED, {"WWW-Authenticate": "Token"})
        try:
            operation, handler = self.rest.route(request.method, segments)
        except SfError as err:
            return sf_json(err.status, err.body(), self.limit_header())
        if self.api_used >= self.daily_api_limit:
            return sf_json(
                403,
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                self.limit_header(),
            )

        async def expire() -> Response:
            self.sessions.pop(token or "", None)
            return sf_json(401, EXPIRED, {"WWW-Authenticate": "Token"})

        fault = await self.faults.apply(request, operation, self.error_response, expire_session=expire)
        if fault is not None:
            return fault
        self.api_used += 1
        call = Call(
            method=request.method,
            segments=segments,
            query=request.query_params,
            body=await request.body() if request.method in ("POST", "PATCH", "PUT") else b"",
            headers=request.headers,
            base=f"/services/data/v{version}",
        )
        try:
            reply = handler(call)
        except SfError as err:
            return sf_json(err.status, err.body(), self.limit_header())
        if reply.write and operation in WRITE_OPS:
            self.faults.drop_after_commit(request, operation)
        return self.to_response(reply)

    def to_response(self, reply: Reply) -> Response:
        headers = {**reply.headers, **self.limit_header()}
        if reply.status == 204 or (reply.body is None and reply.status == 201):
            return Response(status_code=reply.status, headers=headers)
        if isinstance(reply.body, str):
            return Response(
                reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers
            )
        return sf_json(reply.status, reply.body, headers)

    # --- admin ------------------------------------------------------------------------------------------

    async def admin_expire(self, request: Request) -> Response:
        count = len(self.sessions)
        self.sessions.clear()
        return JSONResponse({"expired": count})

    async def admin_limits(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await request.json()
            if "max" in body:
                self.daily_api_limit = int(body["max"])
            if "used" in body:
                self.api_used = int(body["used"])
        return JSONResponse({"used": self.api_used, "max": self.daily_api_limit})

    async def admin_clock(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await request.json()
            self.clock.offset = dt.timedelta(seconds=float(body.get("offset_seconds", 0)))
        return JSONResponse(
            {"now": format_datetime(self.clock.now()), "offset_seconds": self.clock.offset.total_seconds()}
        )

    async def admin_close_won(self, request: Request) -> Response:
        body = await request.json()
        opps = self.store.tables["Opportunity"]
        if "ids" in body:
            chosen = [self.store.live("Opportunity", i)["Id"] for i in body["ids"]]
        else:
            count = int(body.get("count", 1))
            chosen = [r["Id"] for r in opps.values() if not r["IsClosed"] and not r["IsDeleted"]][:count]
        stamp = self.clock.now()
        for rid in chosen:
            self.store.update(
                "Opportunity",
                rid,
                {"StageName": "Closed Won", "CloseDate": self.clock.today().isoformat()},
                stamp,
            )
        return JSONResponse({"ids": chosen, "SystemModstamp": format_datetime(stamp)})

    async def admin_late_commit(self, request: Request) -> Response:
        body = await request.json()
        obj = str(body.get("object", "Opportunity"))
        if obj not in OBJECTS:
            return JSONResponse({"error": f"unknown object {obj}"}, 400)
        stamp = self.clock.now() - dt.timedelta(seconds=float(body.get("seconds_ago", 5)))
        stamp = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
        try:
            if body.get("id"):
                rid = self.store.update(obj, str(body["id"]), body.get("fields", {}), stamp)
            else:
                rid = self.store.create(obj, body.get("fields", {}), stamp)
        except SfError as err:
            return JSONResponse(err.body(), err.status)
        return JSONResponse({"id": rid, "SystemModstamp": format_datetime(stamp)})

    async def admin_silent_update(self, request: Request) -> Response:
        body = await request.json()
        try:
            rec = self.store.silent_update(
                str(body.get("object", "Opportunity")), str(body["id"]), body.get("fields", {})
            )
        except SfError as err:
            return JSONResponse(err.body(), err.status)
        return JSONResponse({"id": rec["Id"], "SystemModstamp": format_datetime(rec["SystemModstamp"])})

    # --- app --------------------------------------------------------------------------------------------

    def asgi(self) -> Starlette:
        if self._app is None:
            admin = "/__sandbox/salesforce"
            routes = [
                Route("/services/oauth2/token", self.token, methods=["POST"]),
                Route("/services/data", self.versions, methods=["GET"]),
                Route("/services/data/", self.versions, methods=["GET"]),
                Route("/services/data/v{version}", self.data, methods=["GET"]),
                Route(
                    "/services/data/v{version}/{rest:path}",
                    self.data,
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                ),
                Route(f"{admin}/expire-sessions", self.admin_expire, methods=["POST"]),
                Route(f"{admin}/limits", self.admin_limits, methods=["GET", "PUT"]),
                Route(f"{admin}/clock", self.admin_clock, methods=["GET", "PUT"]),
                Route(f"{admin}/close-won", self.admin_close_won, methods=["POST"]),
                Route(f"{admin}/late-commit", self.admin_late_commit, methods=["POST"]),
                Route(f"{admin}/silent-update", self.admin_silent_update, methods=["POST"]),
                *admin_routes(self.faults, self.effects, on_reset=self.reset_state),
            ]
            self._app = _OrgDate(Starlette(routes=routes), self)
        return self._app


class _OrgDate:
    """Stamps every response with the org's clock in the ``Date`` header, as Salesforce's servers do, so a
    client reading server time sees the org's (possibly offset) clock, not this machine's."""

    def __init__(self, app: Any, org: SalesforceSandbox) -> None:
        self.app = app
        self.org = org  # its clock is replaced on reset: read it per response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                stamp = email.utils.format_datetime(self.org.clock.now(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", stamp)]}
            await send(message)

        await self.app(scope, receive, dated)


__all__ = ["STAGES", "SalesforceSandbox"]
