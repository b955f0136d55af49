"""The SAP S/4HANA sandbox: OData V2 services, the journal entry SOAP service, logon/CSRF, admin API.

Endpoints
    ``/sap/opu/odata/sap/API_BUSINESS_PARTNER``            business partners, customers (read, deep insert)
    ``/sap/opu/odata/sap/API_JOURNALENTRYITEMBASIC_SRV``   journal entry items (analytical), company codes, accounts
    ``/sap/opu/odata/sap/API_GLACCOUNTLINEITEM``           G/L line items: AccountingDocument, ReferenceDocument, ...
    ``/sap/opu/odata/sap/API_OPLACCTGDOCITEMCUBE_SRV``     journal entry items with the header's DocumentReferenceID
    ``/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi``  SOAP JournalEntryCreateRequestConfirmation_In
                                                           (``?wsdl`` serves the team-written WSDL)
    ``/sap/bc/sec/oauth2/token``                           OAuth 2.0 client credentials
    ``/__sandbox/faults`` ``/__sandbox/effects`` ``/__sandbox/reset``   shared admin API
    ``/__sandbox/sap/ledger`` (GET trial balance), ``/__sandbox/sap/ledger/documents`` (GET),
    ``/__sandbox/sap/periods`` (GET, PUT ``{"company_code","fiscal_year","period","open"}``),
    ``/__sandbox/sap/sessions/expire`` (POST: CSRF tokens, sessions and bearer tokens become invalid)

Fault operations
    ``odata.metadata``, ``business_partner.read``, ``business_partner.write``, ``journal_entry_item.read``
    (every ledger read service), ``odata.batch``, ``journal_entry.post`` (SOAP), ``oauth.token``.
    ``expire_session_rate`` drops the caller's session (its CSRF token is then invalid: writes get 403) or
    revokes its bearer token (401).

Effects counted
    ``business_partner.create`` keyed by SearchTerm1 (upper case; else BusinessPartnerIDByExtSystem, else
    the new number); ``business_partner.update`` keyed by the partner number; ``journal_entry.post`` keyed by
    ``<CompanyCode>:<DocumentReferenceID>``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lead2cash.sandbox.faults import EffectCounter, Faults, admin_routes
from lead2cash.sandbox.sap import config, soap
from lead2cash.sandbox.sap.auth import MODIFYING, Auth, Identity
from lead2cash.sandbox.sap.business_partner import NAV_LINKS, BusinessPartners, make_tables
from lead2cash.sandbox.sap.edm import load_service
from lead2cash.sandbox.sap.ledger import Ledger
from lead2cash.sandbox.sap.odata import JSON_TYPE, Context, ODataError, ODataService, Row, Table

SOAP_PATH = "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"
ODATA_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "MERGE", "DELETE"]


class SapSandbox:
    """Simulator of an SAP S/4HANA system (client 100) for lead2cash."""

    name = "sap"

    def __init__(
        self,
        seed: int = 0,
        seed_size: int = 20,
        faults_profile: str = "none",
        username: str = "LEAD2CASH",
        password: str = "Sandbox-Passw0rd",  # noqa: S107 - a documented sandbox credential
        client_id: str = "lead2cash-client",
        client_secret: str = "sandbox-secret",  # noqa: S107
        system_id: str = "S4H",
        client: str = "100",
        page_size: int = 1000,
        logical_system: str = "S4HCLNT100",
    ):
        self.seed = seed
        self.seed_size = seed_size
        self.faults = Faults(self.name, seed)
        self.faults.set_profile(faults_profile)
        self.effects = EffectCounter()
        self.auth = Auth(username, password, client_id, client_secret, system_id, client)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.client = client

        bp_model = load_service("API_BUSINESS_PARTNER")
        self.bp_service = ODataService(
            bp_model, make_tables(), "LO-MD-BP-OP", config.CURRENCY_DECIMALS, page_size, NAV_LINKS
        )
        self.partners = BusinessPartners(bp_model, self.bp_service, self._partner_created)
        self.ledger = Ledger(self._customer_company, self._customer_name, logical_system)

        je_model = load_service("API_JOURNALENTRYITEMBASIC_SRV")
        self.je_service = ODataService(
            je_model,
            {
                "A_JournalEntryItemBasic": self.ledger.items,
                "A_CompanyCode": self._company_code_table(),
                "A_GLAccountInChartOfAccounts": self._gl_account_table(),
            },
            "FI-GL-IS",
            config.CURRENCY_DECIMALS,
            page_size,
        )
        gl_model = load_service("API_GLACCOUNTLINEITEM")
        self.gl_service = ODataService(
            gl_model,
            {"GLAccountLineItem": self.ledger.items},
            "FI-GL-IS",
            config.CURRENCY_DECIMALS,
            page_size,
        )
        self.item_cube_service = ODataService(
            load_service("API_OPLACCTGDOCITEMCUBE_SRV"),
            {"A_OperationalAcctgDocItemCube": self.ledger.document_items},
            "FI-AR-IS",
            config.CURRENCY_DECIMALS,
            page_size,
        )
        self.services = {
            s.model.name.upper(): s
            for s in (self.bp_service, self.je_service, self.gl_service, self.item_cube_service)
        }
        self.partners.seed(seed_size, seed)
        self._app: Starlette | None = None

    # --- wiring -----------------------------------------------------------------------------------------

    def asgi(self) -> Starlette:
        if self._app is None:
            routes = [
                Route("/sap/opu/odata/sap/{service}", self.odata, methods=ODATA_METHODS),
                Route("/sap/opu/odata/sap/{service}/{path:path}", self.odata, methods=ODATA_METHODS),
                Route(SOAP_PATH, self.soap_post, methods=["POST"]),
                Route(SOAP_PATH, self.soap_get, methods=["GET"]),
                Route("/sap/bc/sec/oauth2/token", self.oauth_token, methods=["POST"]),
                Route("/__sandbox/sap/ledger", self.admin_ledger, methods=["GET"]),
                Route("/__sandbox/sap/ledger/documents", self.admin_documents, methods=["GET"]),
                Route("/__sandbox/sap/periods", self.admin_periods, methods=["GET", "PUT"]),
                Route("/__sandbox/sap/sessions/expire", self.admin_expire, methods=["POST"]),
                *admin_routes(self.faults, self.effects, self.reset),
            ]
            self._app = Starlette(routes=routes)
        return self._app

    def hub_config(self, base_url: str) -> dict[str, Any]:
        odata = f"{base_url}/sap/opu/odata/sap"
        return {
            "type": "sap",
            "base_url": base_url,
            "client": self.client,
            "auth": {"type": "basic", "username": self.username, "password": self.password},
            "odata": {
                "business_partner": f"{odata}/API_BUSINESS_PARTNER",
                "operational_acctg_doc_item": f"{odata}/API_OPLACCTGDOCITEMCUBE_SRV",
            },
            "soap": {
                "journal_entry_post": f"{base_url}{SOAP_PATH}",
                "wsdl": f"{base_url}{SOAP_PATH}?wsdl",
            },
            "company_code_by_currency": dict(config.COMPANY_CODE_BY_CURRENCY),
            "receivables_account": config.RECEIVABLES_ACCOUNT,
            "advance_account": config.ADVANCES_ACCOUNT,
            "granted_credits_account": config.GRANTED_CREDITS_ACCOUNT,
            "voided_credits_account": config.VOIDED_CREDITS_ACCOUNT,
            "revenue_account_by_family": dict(config.REVENUE_ACCOUNT_BY_FAMILY),
            "tax_code_by_catalog_code": dict(config.SAP_TAX_CODE_BY_CATALOG),
        }

    def oauth_config(self, base_url: str) -> dict[str, Any]:
        """The ``auth:`` block for OAuth 2.0 client credentials instead of basic auth."""
        return {
            "type": "oauth",
            "token_url": f"{base_url}/sap/bc/sec/oauth2/token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def reset(self) -> None:
        self.ledger.reset()
        self.partners.reset()
        self.auth.reset()
        self.partners.seed(self.seed_size, self.seed)

    # --- helpers ----------------------------------------------------------------------------------------

    def _customer_company(self, customer: str, company_code: str) -> Row | None:
        return self.bp_service.tables["A_CustomerCompany"].get((customer, company_code))

    def _customer_name(self, customer: str) -> str:
        row = self.bp_service.tables["A_Customer"].get((customer,))
        return row.get("CustomerName", "") if row else ""

    def _partner_created(self, row: Row) -> None:
        key = row.get("SearchTerm1") or row.get("BusinessPartnerIDByExtSystem") or row["BusinessPartner"]
        self.effects.record("business_partner.create", key)

    @staticmethod
    def _company_code_table() -> Table:
        table = Table(["CompanyCode"])
        for cc in config.COMPANY_CODES.values():
            table.insert(
                {
                    "CompanyCode": cc.code,
                    "CompanyCodeName": cc.name,
                    "CityName": cc.city,
                    "Country": cc.country,
                    "Currency": cc.currency,
                    "Language": cc.language,
                    "ChartOfAccounts": config.CHART_OF_ACCOUNTS,
                    "FiscalYearVariant": config.FISCAL_YEAR_VARIANT,
                }
            )
        return table

    @staticmethod
    def _gl_account_table() -> Table:
        table = Table(["ChartOfAccounts", "GLAccount"])
        for account in config.GL_ACCOUNTS.values():
            table.insert(
                {
                    "ChartOfAccounts": config.CHART_OF_ACCOUNTS,
                    "GLAccount": account.number,
                    "IsBalanceSheetAccount": account.balance_sheet,
                    "IsProfitLossAccount": not account.balance_sheet,
                    "GLAccountGroup": account.group,
                    "AccountIsBlockedForPosting": account.blocked,
                    "GLAccountType": "X" if account.balance_sheet else "P",
                }
            )
        return table

    def _odata_error(self, service: ODataService, status: int, retry_after: int) -> Response:
        message = "Too many requests" if status == 429 else "Service temporarily unavailable"
        result = service.error(ODataError(status, message, "/IWFND/CM_BEC/026"))
        return Response(result.body, status, media_type=JSON_TYPE, headers={"retry-after": str(retry_after)})

    def _expire(self, request: Request, identity: Identity, modifying: bool) -> Any:
        async def expire() -> Response | None:
            if identity.via == "bearer":
                self.auth.revoke_bearer(request)
                return self.auth.unauthorized(bearer=True)
            self.auth.drop_session(identity)
            identity.session_id = None
            return self.auth.csrf_failed() if modifying else None

        return expire

    # --- OData --------------------------------------------------------------------------------------------

    async def odata(self, request: Request) -> Response:
        service = self.services.get(request.path_params["service"].upper())
        if service is None:
            return Response(
                f"Service {request.path_params['service']} not found",
                status_code=404,
                media_type="text/plain",
            )
        identity = self.auth.authenticate(request)
        if identity is None:
            return self.auth.unauthorized()
        method = request.method
        if method == "POST" and request.headers.get("x-http-method", "").upper() in (
            "MERGE",
            "PATCH",
            "PUT",
            "DELETE",
        ):
            method = request.headers["x-http-method"].upper()
        path = request.path_params.get("path", "")
        modifying = method in MODIFYING
        if path == "$metadata":
            operation = "odata.metadata"
        elif path == "$batch":
            operation = "odata.batch"
        elif service is self.bp_service:
            operation = "business_partner.write" if modifying else "business_partner.read"
        else:
            operation = "journal_entry_item.read"
        fault = await self.faults.apply(
            request,
            operation,
            error_response=lambda status, retry: self._odata_error(service, status, retry),
            expire_session=self._expire(request, identity, modifying),
        )
        if fault is not None:
            return fault
        if modifying and not self.auth.csrf_valid(request, identity):
            return self.auth.csrf_failed()
        body = await request.body() if modifying else b""
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        applied = False
        if path == "$batch":
            if method != "POST":
                result = service.error(ODataError(405, "Use POST for $batch", "/IWBEP/CM_MGW_RT/104"))
            else:
                contexts: list[Context] = []

                def make_ctx() -> Context:
                    ctx = Context(identity.user)
                    contexts.append(ctx)
                    return ctx

                try:
                    result = service.batch(body, request.headers.get("content-type", ""), base_url, make_ctx)
                except ODataError as err:
                    result = service.error(err)
                applied = any(c.applied for c in contexts)
        else:
            ctx = Context(identity.user)
            http_method = "GET" if method == "HEAD" else method
            result = service.handle(
                http_method,
                path,
                request.url.query,
                body,
                {"accept": request.headers.get("accept", "")},
                base_url,
                ctx,
            )
            if result.status < 400:
                ctx.commit()
                applied = ctx.applied
            else:
                ctx.rollback()
        headers = {"dataserviceversion": "2.0", **result.headers}
        if request.headers.get("x-csrf-token", "").lower() == "fetch" and not modifying:
            headers["x-csrf-token"] = self.auth.fetch_token(identity)
        response = Response(
            b"" if method == "HEAD" else result.body,
            status_code=result.status,
            media_type=result.content_type,
            headers=headers,
        )
        self.auth.set_cookies(response, identity)
        if applied:
            self.faults.drop_after_commit(request, operation)
        return response

    # --- SOAP ------------------------------------------------------------------------------------------

    async def soap_get(self, request: Request) -> Response:
        if "wsdl" not in {k.lower() for k in request.query_params}:
            return Response("Use POST for SOAP requests or ?wsdl for the service description", 405)
        endpoint = f"{request.url.scheme}://{request.url.netloc}{SOAP_PATH}"
        return Response(soap.served_wsdl(endpoint), media_type="text/xml")

    async def soap_post(self, request: Request) -> Response:
        identity = self.auth.authenticate(request)
        if identity is None:
            return self.auth.unauthorized()
        ctype = request.headers.get("content-type", "")
        version = "1.2" if "application/soap+xml" in ctype else "1.1"

        def error_response(status: int, retry_after: int) -> Response:
            text = "Too many requests" if status == 429 else "Service temporarily unavailable"
            return Response(
                soap.fault(version, text, sender=False),
                status_code=status,
                media_type=soap.content_type(version).split(";")[0],
                headers={"retry-after": str(retry_after)},
            )

        fault = await self.faults.apply(
            request, "journal_entry.post", error_response, self._expire(request, identity, modifying=False)
        )
        if fault is not None:
            return fault
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > soap.MAX_BODY:
            return self._soap_fault(version, "Request message too large")
        body = await request.body()
        try:
            parsed = soap.parse_envelope(body)
            version = parsed.version
            soap.validate(parsed.payload)
            entries = soap.to_entries(parsed.payload)
            bulk_id = soap._text(parsed.payload.find("MessageHeader"), "ID")
        except soap.SoapFault as exc:
            return self._soap_fault(version, exc.message)
        except ValueError as exc:
            return self._soap_fault(version, f"Invalid value in request: {exc}")
        results = []
        posted = False
        for message_id, entry in entries:
            result = self.ledger.post(entry)
            if result.document:
                posted = True
                self.effects.record(
                    "journal_entry.post", f"{entry.company_code}:{entry.document_reference_id or ''}"
                )
            results.append((message_id, result))
        response = Response(
            soap.confirmation(version, bulk_id, results), media_type=soap.content_type(version).split(";")[0]
        )
        if posted:
            self.faults.drop_after_commit(request, "journal_entry.post")
        return response

    @staticmethod
    def _soap_fault(version: str, message: str) -> Response:
        return Response(
            soap.fault(version, message), status_code=500, media_type=soap.content_type(version).split(";")[0]
        )

    # --- OAuth ---------------------------------------------------------------------------------------------

    async def oauth_token(self, request: Request) -> Response:
        fault = await self.faults.apply(
            request,
            "oauth.token",
            error_response=lambda status, retry: JSONResponse(
                {"error": "temporarily_unavailable"}, status, headers={"retry-after": str(retry)}
            ),
        )
        if fault is not None:
            return fault
        form = dict(parse_qsl((await request.body()).decode("latin-1"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        client_id = str(form.get("client_id") or "")
        client_secret = str(form.get("client_secret") or "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return JSONResponse({"error": "invalid_client"}, 401)
        token = self.auth.issue_token(client_id, client_secret)
        if token is None:
            return JSONResponse({"error": "invalid_client", "error_description": "Bad credentials"}, 401)
        return JSONResponse(token, headers={"cache-control": "no-store"})

    # --- admin -----------------------------------------------------------------------------------------------

    async def admin_ledger(self, _: Request) -> Response:
        return JSONResponse(self.ledger.trial_balance())

    async def admin_documents(self, request: Request) -> Response:
        reference = request.query_params.get("DocumentReferenceID")
        docs = [
            d
            for d in self.ledger.documents.values()
            if reference is None or d["DocumentReferenceID"] == reference
        ]
        return JSONResponse({"documents": docs})

    async def admin_periods(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
                self.ledger.set_period(
                    str(body["company_code"]),
                    int(body["fiscal_year"]),
                    int(body["period"]),
                    bool(body["open"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": f"invalid period setting: {exc}"}, 400)
        closed = sorted(self.ledger.closed_periods)
        return JSONResponse(
            {"closed": [{"company_code": c, "fiscal_year": y, "period": p} for c, y, p in closed]}
        )

    async def admin_expire(self, _: Request) -> Response:
        return JSONResponse({"expired": self.auth.expire_all()})
