"""SAP ``JournalEntryCreateRequestConfirmation_In`` (Journal Entry - Post, synchronous) over zeep.

zeep builds the request from the tenant's WSDL (a local file or a URL, parsed once per client and cached by
URL) or, by default, from the subset WSDL shipped in ``wsdl/``. The endpoint and credentials always come from
config, never from the WSDL's address. Calls go over a requests session that trusts only the configured CA
bundle (``trust_env=False``: ``REQUESTS_CA_BUNDLE`` must not override it) and run in a bounded thread pool.

Hardening: ``Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True,
forbid_external=True)`` and a cap on the response size, read in a stream, so a hostile or broken endpoint
(XXE, entity expansion, an endless body) costs a clean error and bounded memory.

Classification: a confirmation whose log has severity 3 (error) or no document number is a business error
(:class:`PostingRejected`, permanent, with SAP's message texts); SOAP faults from the sender side (schema
violations) are permanent; server faults, HTTP 5xx, timeouts, connection errors and unreadable responses are
transient (the call may have been applied, so the router looks the entry up before resending); 429 is
throttling with the server's Retry-After.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import structlog
import zeep
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep.cache import InMemoryCache
from zeep.exceptions import (
    DTDForbidden,
    EntitiesForbidden,
    Fault,
    ValidationError,
    XMLParseError,
    XMLSyntaxError,
)
from zeep.exceptions import TransportError as ZeepTransportError
from zeep.transports import Transport
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding

from lead2cash.connectors.http import SAP_SOAP, TOKENS, parse_retry_after
from lead2cash.connectors.http.auth import oauth_key, token_lifetime
from lead2cash.connectors.sap import DEFAULT_WSDL
from lead2cash.connectors.sap.odata import BasicCredentials, Credentials, OAuthClientCredentials
from lead2cash.errors import DeliveryError, PermanentError, ThrottledError, TransientError

log = structlog.get_logger("lead2cash.connectors.sap.soap")

OPERATION = "JournalEntryCreateRequestConfirmation_In"
NO_DOCUMENT = "0000000000"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
HARDENED = zeep.Settings(
    strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True
)


@dataclass(frozen=True)
class LogItem:
    type_id: str | None
    severity: str | None
    note: str


@dataclass(frozen=True)
class PostingConfirmation:
    """One entry's confirmation: the accounting document, or the reason it was not posted."""

    accounting_document: str | None
    company_code: str | None
    fiscal_year: str | None
    max_severity: str
    log: tuple[LogItem, ...]

    @property
    def posted(self) -> bool:
        return (
            bool(self.accounting_document)
            and self.accounting_document != NO_DOCUMENT
            and self.max_severity < "3"
        )

    @property
    def errors(self) -> list[str]:
        errors = [i.note for i in self.log if (i.severity or "") >= "3"]
        return errors or [i.note for i in self.log]


class PostingRejected(PermanentError):
    """SAP refused the entry (closed period, unknown account, unbalanced...): the log's texts say why."""

    def __init__(self, confirmation: PostingConfirmation, reference: str | None = None) -> None:
        notes = confirmation.errors
        # SAP's first item is the generic "Error in document"; the specific reasons follow it.
        specific = [n for n in notes if not n.startswith("Error in document")] or notes
        details: dict[str, Any] = {"sap_log": " | ".join(notes)[:1000]}
        if reference:
            details["reference"] = reference
        codes = [i.type_id for i in confirmation.log if i.type_id and (i.severity or "") >= "3"]
        if codes:
            details["sap_messages"] = ",".join(codes)
        super().__init__("SAP rejected the journal entry: " + "; ".join(specific)[:500], details=details)
        self.confirmation = confirmation


class ResponseTooLarge(Exception):
    pass


class _CappedTransport(Transport):
    """zeep transport that streams the response with a size cap and remembers the status per thread."""

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.max_bytes = max_bytes
        self.last = threading.local()

    def post(self, address: str, message: Any, headers: dict[str, str]) -> requests.Response:
        self.last.status = None
        self.last.retry_after = None
        response = self.session.post(
            address, data=message, headers=headers, timeout=self.operation_timeout, stream=True
        )
        try:
            self.last.status = response.status_code
            self.last.retry_after = response.headers.get("retry-after")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ResponseTooLarge(f"SAP SOAP response exceeds {self.max_bytes} bytes")
                chunks.append(chunk)
            response._content = b"".join(chunks)
            response._content_consumed = True
        finally:
            response.close()
        return response

    def _load_remote_data(self, url: str) -> bytes:
        response = self.session.get(url, timeout=self.load_timeout, stream=True)
        try:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > self.max_bytes:
                    raise ResponseTooLarge(f"WSDL at {url} exceeds {self.max_bytes} bytes")
            return data
        finally:
            response.close()


class _BearerAuth(requests.auth.AuthBase):
    """OAuth 2.0 client credentials for the blocking SOAP session, in the hub's token cache (the OData
    client's ``ClientCredentials`` flow with the same credentials uses the same token)."""

    def __init__(self, creds: OAuthClientCredentials, session: requests.Session, timeout: float) -> None:
        self.creds = creds
        self.session = session
        self.timeout = timeout
        self._lock = threading.Lock()  # one token request at a time from the worker threads
        self.key = oauth_key(creds.token_url, creds.client_id, creds.client_secret, creds.scope)

    def invalidate(self) -> None:
        TOKENS.invalidate(self.key)

    def token(self) -> str:
        with self._lock:
            cached = TOKENS.get(self.key)
            if cached is not None:
                return cached
            data = {"grant_type": "client_credentials"}
            if self.creds.scope:
                data["scope"] = self.creds.scope
            response = self.session.post(
                self.creds.token_url,
                data=data,
                auth=(self.creds.client_id, self.creds.client_secret),
                timeout=self.timeout,
                headers={"accept": "application/json"},
            )
            if response.status_code in (400, 401, 403):
                raise PermanentError(
                    "SAP OAuth token request was refused", details={"status": response.status_code}
                )
            if response.status_code != 200:
                raise TransientError(
                    "SAP OAuth token request failed", details={"status": response.status_code}
                )
            body = response.json()
            token = str(body["access_token"])
            TOKENS.put(self.key, token, token_lifetime(body))
            return token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = "Bearer " + self.token()
        return request


def make_session(
    credentials: Credentials, ca_bundle: str | None, timeout: float, pool: int
) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment must not apply
    session.verify = ca_bundle if ca_bundle else True
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, pool))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if isinstance(credentials, BasicCredentials):
        session.auth = (credentials.username, credentials.password)
    else:
        session.auth = _BearerAuth(credentials, session, timeout)
    return session


class JournalEntrySoapClient:
    """Posts journal entries through ``JournalEntryCreateRequestConfirmation_In``."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        wsdl: str | Path | None = None,
        soap_version: str = "1.1",
        ca_bundle: str | None = None,
        timeout: float = 60.0,
        max_workers: int = 8,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        settings: zeep.Settings = HARDENED,
    ) -> None:
        self.endpoint = endpoint
        self.wsdl = str(wsdl or DEFAULT_WSDL)
        self.soap_version = soap_version
        self.settings = settings
        self.session = make_session(credentials, ca_bundle, timeout, max_workers)
        self.transport = _CappedTransport(
            session=self.session,
            cache=InMemoryCache(timeout=3600),  # type: ignore[no-untyped-call]
            timeout=timeout,
            operation_timeout=timeout,
            max_bytes=max_response_bytes,
        )
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sap-soap")
        self._lock = threading.Lock()
        self._client: zeep.Client | None = None
        self._service: Any = None
        self.calls = 0

    # --- zeep ------------------------------------------------------------------------------------------
    def _load(self) -> tuple[zeep.Client, Any]:
        with self._lock:
            if self._client is None:
                wsdl = self.wsdl
                if not wsdl.startswith(("http://", "https://", "file://")):
                    wsdl = str(Path(wsdl).resolve())
                client = zeep.Client(wsdl, transport=self.transport, settings=self.settings)  # type: ignore[no-untyped-call]
                binding = self._binding(client)
                self._service = client.create_service(binding, self.endpoint)  # type: ignore[no-untyped-call]
                self._client = client
            return self._client, self._service

    def _binding(self, client: zeep.Client) -> str:
        wanted = Soap12Binding if self.soap_version == "1.2" else Soap11Binding
        for name, binding in client.wsdl.bindings.items():
            if type(binding) is wanted and OPERATION in binding._operations:
                return str(name)
        raise PermanentError(
            f"the WSDL has no SOAP {self.soap_version} binding with operation {OPERATION}",
            details={"wsdl": self.wsdl},
        )

    def bulk_request(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        message_id: str | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The operation's arguments: a bulk message with one request (and message header) per entry."""
        now = (created_at or datetime.now(UTC)).replace(microsecond=0)
        bulk_id = message_id or uuid.uuid4().hex[:32]
        return {
            "MessageHeader": {"ID": {"_value_1": bulk_id}, "CreationDateTime": now},
            "JournalEntryCreateRequest": [
                {
                    "MessageHeader": {"ID": {"_value_1": f"{bulk_id[:30]}-{n}"}, "CreationDateTime": now},
                    "JournalEntry": dict(entry),
                }
                for n, entry in enumerate(entries, start=1)
            ],
        }

    def serialize(self, request: Mapping[str, Any]) -> bytes:
        """The SOAP envelope zeep would send for ``request`` (for conformance checks and debugging)."""
        client, service = self._load()
        envelope = client.create_message(service, OPERATION, **request)  # type: ignore[no-untyped-call]
        return bytes(etree.tostring(envelope, encoding="utf-8"))

    # --- posting ----------------------------------------------------------------------------------------
    def post_sync(self, request: Mapping[str, Any]) -> list[PostingConfirmation]:
        """Send one bulk request; one confirmation per entry, in order. Raises DeliveryError subclasses."""
        try:
            _client, service = self._load()
        except DeliveryError:
            raise
        except (requests.RequestException, ZeepTransportError, ResponseTooLarge) as exc:
            raise TransientError(
                f"SAP WSDL could not be loaded: {type(exc).__name__}", details={"wsdl": self.wsdl}
            ) from exc
        except (
            XMLSyntaxError,
            XMLParseError,
            DTDForbidden,
            EntitiesForbidden,
            etree.LxmlError,
            OSError,
        ) as exc:
            raise PermanentError(
                f"SAP WSDL is not usable: {type(exc).__name__}", details={"wsdl": self.wsdl}
            ) from exc
        self.calls += 1
        try:
            result = getattr(service, OPERATION)(**request)
        except Fault as fault:
            raise self._fault(fault) from fault
        except ValidationError as exc:
            # zeep refused to serialize our own request: no retry fixes that.
            raise PermanentError(
                "journal entry does not fit the SAP schema", details={"zeep": str(exc)[:300]}
            ) from exc
        except (DTDForbidden, EntitiesForbidden) as exc:
            raise TransientError(
                "SAP SOAP response refused: it declares a DTD or entities",
                details={"endpoint": self.endpoint},
            ) from exc
        except (XMLSyntaxError, XMLParseError, etree.LxmlError) as exc:
            raise TransientError(
                "SAP SOAP response is not valid XML", details={"endpoint": self.endpoint}
            ) from exc
        except ResponseTooLarge as exc:
            raise TransientError(str(exc)) from exc
        except ZeepTransportError as exc:
            if "invalid XML" in str(exc.message):
                # lxml stops at undefined or looping entities before zeep's DTD check runs; never echo
                # the content (it is the hostile part).
                declared = b"<!DOCTYPE" in (exc.content or b"")[:4096]
                reason = "it declares a DTD or entities" if declared else "it is not valid XML"
                raise TransientError(
                    f"SAP SOAP response refused: {reason}",
                    details={"endpoint": self.endpoint, "status": exc.status_code},
                ) from None
            raise self._http_error(exc.status_code) from exc
        except requests.Timeout as exc:
            raise TransientError("SAP SOAP call timed out", details={"endpoint": self.endpoint}) from exc
        except requests.RequestException as exc:
            raise TransientError(
                f"SAP SOAP call failed: {type(exc).__name__}", details={"endpoint": self.endpoint}
            ) from exc
        return self._confirmations(result, len(request.get("JournalEntryCreateRequest") or []))

    async def post(self, request: Mapping[str, Any]) -> list[PostingConfirmation]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.post_sync, request)

    def release(self) -> None:
        """Close pooled connections (the session stays usable and reconnects on demand)."""
        self.session.close()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    # --- classification ------------------------------------------------------------------------------------
    def _retry_after(self) -> float | None:
        return parse_retry_after(getattr(self.transport.last, "retry_after", None))

    def _http_error(self, status: int | None) -> DeliveryError:
        details = {"status": status, "endpoint": self.endpoint}
        if status in (401, 403):
            if isinstance(self.session.auth, _BearerAuth):
                self.session.auth.invalidate()
                return TransientError("SAP SOAP call unauthorized; token refreshed", details=details)
            return PermanentError("SAP SOAP logon failed (check the credentials)", details=details)
        # No status, or one that is no error code: the call failed on the way (retried, as a 5xx is).
        effective = status if status is not None and status >= 400 else 599
        cls = SAP_SOAP.error_class(effective)
        text = {ThrottledError: "SAP SOAP call throttled", PermanentError: "SAP SOAP call refused"}
        return SAP_SOAP.error(
            effective,
            text.get(cls, "SAP SOAP call failed"),
            retry_after=self._retry_after(),
            details=details,
        )

    def _fault(self, fault: Fault) -> DeliveryError:
        status = getattr(self.transport.last, "status", None)
        code = str(fault.code or "")
        text = str(fault.message or "SOAP fault")[:500]
        details: dict[str, Any] = {"status": status, "fault_code": code}
        if status == 429:
            return ThrottledError(f"SAP SOAP fault: {text}", retry_after=self._retry_after(), details=details)
        if status in (401, 403):
            return self._http_error(status)
        if "Client" in code or "Sender" in code:
            return PermanentError(f"SAP SOAP fault: {text}", details=details)
        return TransientError(f"SAP SOAP fault: {text}", retry_after=self._retry_after(), details=details)

    @staticmethod
    def _confirmations(result: Any, expected: int) -> list[PostingConfirmation]:
        items = list(getattr(result, "JournalEntryCreateConfirmation", None) or [])
        out: list[PostingConfirmation] = []
        for item in items:
            doc = getattr(item, "JournalEntryCreateConfirmation", None)
            log_el = getattr(item, "Log", None)
            log_items = tuple(
                LogItem(
                    type_id=getattr(i, "TypeID", None),
                    severity=getattr(i, "SeverityCode", None),
                    note=str(getattr(i, "Note", "") or ""),
                )
                for i in (getattr(log_el, "Item", None) or [])
            )
            severity = getattr(log_el, "MaximumLogItemSeverityCode", None) or max(
                (i.severity or "1" for i in log_items), default="1"
            )
            out.append(
                PostingConfirmation(
                    accounting_document=getattr(doc, "AccountingDocument", None) if doc is not None else None,
                    company_code=getattr(doc, "CompanyCode", None) if doc is not None else None,
                    fiscal_year=getattr(doc, "FiscalYear", None) if doc is not None else None,
                    max_severity=str(severity),
                    log=log_items,
                )
            )
        if len(out) != expected:
            # Without one confirmation per entry we cannot tell what was posted: the lookup decides.
            raise TransientError(
                "SAP SOAP confirmation does not match the request",
                details={"expected": expected, "confirmations": len(out)},
            )
        return out
