"""The HTTP kit the connectors share instead of keeping their own copies: one client per connector for the
hub's life (``ClientSlot``), logons as httpx auth flows over one token cache (``ClientCredentials``,
``SapAuth``), one Retry-After parser, and one table per system from HTTP status to the hub's error class."""

from lead2cash.connectors.http.auth import TOKENS, ClientCredentials, SapAuth, TokenCache, csrf_refused
from lead2cash.connectors.http.retry_after import parse_retry_after, retry_after_of
from lead2cash.connectors.http.session import ClientSlot, LoopLock
from lead2cash.connectors.http.status import LAGO, SALESFORCE, SAP_ODATA, SAP_SOAP, NotFound, StatusTable

__all__ = [
    "LAGO",
    "SALESFORCE",
    "SAP_ODATA",
    "SAP_SOAP",
    "TOKENS",
    "ClientCredentials",
    "ClientSlot",
    "LoopLock",
    "NotFound",
    "SapAuth",
    "StatusTable",
    "TokenCache",
    "csrf_refused",
    "parse_retry_after",
    "retry_after_of",
]
