"""Salesforce connector: transport only (auth, sessions, SOQL paging, writes, limits, error classes).

``client`` holds the connection and the API budget governor, ``reader`` the change cursor, ``writer`` the
coalescing collection/Bulk 2.0 writer, ``soql`` the query builders; it knows nothing of the canonical model.
"""

from lead2cash.connectors.salesforce.auth import Credentials, Token, TokenProvider
from lead2cash.connectors.salesforce.client import ConnectionSettings, SalesforceClient
from lead2cash.connectors.salesforce.errors import classify
from lead2cash.connectors.salesforce.governor import ApiGovernor, RouteBudget, parse_limit_info
from lead2cash.connectors.salesforce.reader import ChangeReader, ServerClock
from lead2cash.connectors.salesforce.soql import ChildQuery, Cursor, QuerySpec, format_soql, identifier
from lead2cash.connectors.salesforce.writer import BatchWriter

__all__ = [
    "ApiGovernor",
    "BatchWriter",
    "ChangeReader",
    "ChildQuery",
    "ConnectionSettings",
    "Credentials",
    "Cursor",
    "QuerySpec",
    "RouteBudget",
    "SalesforceClient",
    "ServerClock",
    "Token",
    "TokenProvider",
    "classify",
    "format_soql",
    "identifier",
    "parse_limit_info",
]
