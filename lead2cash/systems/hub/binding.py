"""The hub as a system: a source over another route's confirmed deliveries (Camel's wire tap, durable)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lead2cash.config.errors import ConfigProblems
from lead2cash.routes.interfaces import Source, SourceBatch, Target
from lead2cash.store import Message, MessageStatus, Store
from lead2cash.systems import BindingContext


class ConfirmationsSource:
    def __init__(self, name: str, store: Store, route: str) -> None:
        self.name = name
        self.store = store
        self.route = route

    @staticmethod
    def parse_checkpoint(value: str) -> str:
        """An operator's checkpoint: the last confirmation number read (a whole number, not a message id)."""
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"not a confirmation number: {value!r}; expected a whole number")
        return str(int(value))

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        rows = self.store.delivered_since(self.route, int(checkpoint or 0), limit)
        records = [self._record(m) for m in rows]
        # The checkpoint is the last confirmation number read, never a message id: a message delivered
        # late (a replayed dead letter) gets a number after it, so it is read whenever it arrives.
        last = str(rows[-1].confirmed_seq) if rows else checkpoint
        return SourceBatch(records, last, more=len(rows) == limit)

    async def reread(self, record: Mapping[str, Any]) -> SourceBatch:
        """The confirmation again, from the source route's message (its key names it)."""
        key = record.get("key")
        found = self.store.message_by_key(self.route, key) if isinstance(key, str) else None
        if found is None or found.status != MessageStatus.DELIVERED.value:
            return SourceBatch([], None)
        return SourceBatch([self._record(found)], None)

    @staticmethod
    def _record(m: Message) -> dict[str, Any]:
        return {
            "route": m.route,
            "key": m.idempotency_key,
            "entity_type": m.entity_type,
            "entity": json.loads(m.payload),
            "target_ref": m.target_ref,
            "trace_id": m.trace_id,
        }


class HubSystem:
    def __init__(self, name: str, context: BindingContext) -> None:
        if context.store is None:
            raise ConfigProblems([((), "the hub system needs the state store")])
        self.name = name
        self.store = context.store

    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        return ConfirmationsSource(f"{self.name}/{object}", self.store, object)

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        raise ValueError("the hub system is a source only")


def build(name: str, config: Any, context: BindingContext) -> HubSystem:
    return HubSystem(name, context)
