"""What the hub hands to a route: a source, a target and a mapper. Routes know no protocol and no
system record shape, only canonical entities, keys and policies."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from lead2cash.store import XrefWrite


@dataclass(frozen=True)
class SourceBatch:
    """Records read from a source and the checkpoint that is safe once all of them are in the inbox."""

    records: Sequence[Mapping[str, Any]]
    checkpoint: str | None
    more: bool = False
    # Payloads the source could not even parse, with the reason: dead-lettered, never dropped.
    rejects: Sequence[tuple[str, str]] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    # The source's own state (what it has passed on), written in the inbox transaction with the records.
    xrefs: Sequence[XrefWrite] = ()


@dataclass
class WebhookDelivery:
    """A verified push: the sender's unique delivery key (None if it has none), the records, and the
    source's own state to write with them, all in one inbox transaction."""

    unique_key: str | None
    records: list[Mapping[str, Any]]
    xrefs: Sequence[XrefWrite] = ()
    # The sender's event type, from a closed list of the system's types ("other" beyond it): a metric
    # label, so never free text from the body.
    event_type: str = "-"


@runtime_checkable
class Source(Protocol):
    name: str

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch: ...


@runtime_checkable
class RereadableSource(Protocol):
    """A source that can read one of its records again, as the source holds it now, from the record it
    once produced (which names it: an Opportunity's Id, an invoice's lago_id). Replaying a mapping dead
    letter uses it, so a record corrected in its system is mapped, not the stale payload. The batch has
    no record when the source no longer holds it (deleted, or filtered out); its ``xrefs`` (the
    source's own state) are written with it, its checkpoint is not used."""

    name: str

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch: ...

    async def reread(self, record: Mapping[str, Any]) -> SourceBatch: ...


@runtime_checkable
class AcknowledgingSource(Protocol):
    """A source that must be told when a batch it read is safe in the inbox (a message bus: NATS
    JetStream acks, Kafka commits offsets). ``committed`` is called after the inbox transaction of every
    batch; a batch whose transaction failed is never acknowledged, so the bus delivers it again."""

    name: str

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch: ...

    async def committed(self, batch: SourceBatch) -> None: ...


@runtime_checkable
class WebhookSource(Protocol):
    """A source that also receives pushes. ``verify_webhook`` checks the raw body with the system's own
    scheme and returns the delivery, or None to answer 401."""

    name: str

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch: ...

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookDelivery | None: ...


@runtime_checkable
class Target(Protocol):
    """A target applies one canonical entity; ``lookup`` finds an effect already applied under ``key``
    (the crash-recovery hook: consulted before any resend of an unconfirmed attempt). A target may also
    define ``unvouched(entity) -> bool``: True when the ledger's silence about a new key proves nothing (the
    source event predates the process, so a restored store may have forgotten the effect); the router
    then looks it up before the first send too."""

    name: str

    async def deliver(self, entity: BaseModel, key: str) -> str | None: ...

    async def lookup(self, entity: BaseModel, key: str) -> str | None: ...


Mapper = Callable[[Mapping[str, Any]], BaseModel]
Predicate = Callable[[Mapping[str, Any]], bool]
KeyFunction = Callable[[BaseModel], str]
