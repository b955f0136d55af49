"""What the HTTP connectors share instead of keeping their own copies: reading a server's Retry-After."""

from lead2cash.connectors.http.retry_after import parse_retry_after, retry_after_of

__all__ = ["parse_retry_after", "retry_after_of"]
