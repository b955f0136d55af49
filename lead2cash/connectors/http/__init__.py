"""What the HTTP connectors share instead of keeping their own copies: reading a server's Retry-After, and
one table per system from HTTP status to the hub's error class."""

from lead2cash.connectors.http.retry_after import parse_retry_after, retry_after_of
from lead2cash.connectors.http.status import SAP_ODATA, SAP_SOAP, StatusTable

__all__ = [
    "LAGO",
    "SALESFORCE",
    "SAP_ODATA",
    "SAP_SOAP",
    "StatusTable",
    "parse_retry_after",
    "retry_after_of",
]
