"""Salesforce simulator: REST API v62.0 (OAuth, SOQL query/queryAll, sObjects, collections, composite,
limits) and Bulk API 2.0 ingest, over in-memory seeded data. See ``app`` for operations and admin calls."""

from lead2cash.sandbox.salesforce.app import SalesforceSandbox

__all__ = ["SalesforceSandbox"]
