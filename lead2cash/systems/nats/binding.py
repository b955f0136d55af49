"""NATS JetStream as a system (``type: nats``): a source of records from a stream.

Safe hand-over: a read fetches messages from the durable pull consumer and returns them as records; the
router writes them to the inbox (mapped, or dead-lettered with the reason) in one transaction, and only
then calls ``committed``, which acknowledges them. A hub killed in between has acknowledged nothing: the
messages come again after ``ack_wait``, and the inbox's unique ``(route, idempotency key)`` takes each
record once. The checkpoint is informational (the consumer's position lives on the server): the last
stream sequence passed to the inbox and what the consumer still had pending, shown by ``checkpoint show``.

A Kafka source has the same shape (``docs/usage.md``): ``read`` polls a consumer group with auto-commit
off, ``committed`` commits the offsets of the batch; the partition offsets are the checkpoint to show.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lead2cash.config.errors import ConfigProblems
from lead2cash.config.nats import NatsSourceOptions, NatsSystemConfig
from lead2cash.connectors.nats import Fetched, JetStreamConsumer
from lead2cash.routes.interfaces import Source, SourceBatch, Target
from lead2cash.systems import BindingContext


class JetStreamSource:
    def __init__(self, name: str, consumer: JetStreamConsumer) -> None:
        self.name = name
        self.consumer = consumer

    @staticmethod
    def parse_checkpoint(value: str) -> str:
        raise ValueError(
            "a JetStream consumer keeps its position on the server: to read again, delete the durable "
            "consumer (nats consumer rm) and create it with a start sequence; to skip, acknowledge there"
        )

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        fetched = await self.consumer.fetch(limit)
        if not fetched:
            return SourceBatch([], checkpoint, more=False)
        records: list[Mapping[str, Any]] = []
        rejects: list[tuple[str, str]] = []
        for f in fetched:
            try:
                record = json.loads(f.data)
            except ValueError as exc:
                rejects.append((f.data.decode("utf-8", "replace"), f"{self._where(f)}: not JSON: {exc}"))
                continue
            if not isinstance(record, dict):
                rejects.append((f.data.decode("utf-8", "replace"), f"{self._where(f)}: not a JSON object"))
                continue
            records.append(record)
        last = fetched[-1]
        position = f"stream {self.consumer.stream} seq {last.stream_seq} (pending {last.pending})"
        return SourceBatch(
            records, position, more=len(fetched) >= limit, rejects=rejects, meta={"fetched": fetched}
        )

    @staticmethod
    def _where(f: Fetched) -> str:
        return f"{f.subject} stream seq {f.stream_seq}"

    async def committed(self, batch: SourceBatch) -> None:
        """The batch is in the inbox: acknowledge it (an ack lost now means one more redelivery)."""
        fetched = batch.meta.get("fetched")
        if fetched:
            await self.consumer.ack(fetched)

    async def aclose(self) -> None:
        await self.consumer.aclose()


class NatsSystem:
    def __init__(self, name: str, config: NatsSystemConfig) -> None:
        self.name = name
        self.config = config
        self._sources: list[JetStreamSource] = []

    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        try:
            opts = NatsSourceOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ConfigProblems(
                [(("options", *map(str, e["loc"])), e["msg"]) for e in exc.errors()]
            ) from None
        cfg = self.config
        auth: dict[str, str] = {}
        if cfg.user:
            auth["user"] = cfg.user
        if cfg.password is not None:
            auth["password"] = cfg.password.get_secret_value()
        if cfg.token is not None:
            auth["token"] = cfg.token.get_secret_value()
        durable = opts.durable or re.sub(r"[^A-Za-z0-9_-]", "_", f"lead2cash_{self.name}_{object}")
        consumer = JetStreamConsumer(
            cfg.servers,
            cfg.stream,
            object,
            durable,
            subjects=cfg.subjects,
            ack_wait=opts.ack_wait,
            max_ack_pending=opts.max_ack_pending,
            connect_timeout=cfg.connect_timeout,
            fetch_timeout=cfg.fetch_timeout,
            auth=auth,
        )
        source = JetStreamSource(f"{self.name}/{object}", consumer)
        self._sources.append(source)
        return source

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        raise ValueError("a NATS system is a source only")

    async def aclose(self) -> None:
        for source in self._sources:
            await source.aclose()


def build(name: str, config: NatsSystemConfig, context: BindingContext) -> NatsSystem:
    return NatsSystem(name, config)
