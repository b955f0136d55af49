"""Transport to NATS JetStream: a durable pull consumer on one stream. Knows NATS, nothing of records.

The consumer acknowledges explicitly: a message is acked only when the caller says it is safe (the hub
acks after the inbox transaction committed). Until then JetStream keeps it pending, and redelivers it
``ack_wait`` after the last delivery: a crashed reader loses nothing, and reads some messages twice.

Errors: a server that cannot be reached (at start or mid-run) is ``TransientError``; nats-py reconnects
by itself, and the next read simply tries again. A read that finds nothing returns an empty list.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog

from lead2cash.errors import PermanentError, TransientError

log = structlog.get_logger("lead2cash.connectors.nats")


@dataclass(frozen=True)
class Fetched:
    """One message: its bytes, where it stands in the stream, and the handle that acknowledges it."""

    data: bytes
    subject: str
    stream_seq: int
    consumer_seq: int
    delivered: int  # 1 on the first delivery, more on a redelivery
    pending: int  # messages after this one not yet delivered to the consumer
    handle: Any


class JetStreamConsumer:
    """A durable pull consumer. Connects on first use and again after the connection was lost."""

    def __init__(
        self,
        servers: list[str],
        stream: str,
        subject: str,
        durable: str,
        *,
        subjects: list[str] | None = None,
        ack_wait: float = 30.0,
        max_ack_pending: int = 20_000,
        connect_timeout: float = 2.0,
        fetch_timeout: float = 1.0,
        auth: dict[str, str] | None = None,
    ) -> None:
        self.servers = servers
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.subjects = subjects
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.connect_timeout = connect_timeout
        self.fetch_timeout = fetch_timeout
        self._auth = auth or {}
        self._nc: Any = None
        self._sub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._down_logged = False

    async def _subscription(self) -> Any:
        from nats.js import api
        from nats.js.errors import NotFoundError

        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # tests and the CLI run several loops; a connection belongs to one
            self._nc = self._sub = None
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if self._sub is not None and self._nc is not None and not self._nc.is_closed:
                return self._sub
            try:
                # nats-py retries a first connect forever once reconnects are allowed: bound it, so a
                # read with NATS down fails (logged, transient) and the next poll tries again.
                nc = await asyncio.wait_for(self._connect(), timeout=self.connect_timeout * 2 + 1)
            except Exception as exc:
                raise self._unavailable("connect", exc) from exc
            try:
                js = nc.jetstream()
                try:
                    await js.stream_info(self.stream)
                except NotFoundError:
                    if not self.subjects:
                        raise PermanentError(
                            f"NATS stream {self.stream!r} does not exist (give subjects to create it)"
                        ) from None
                    await js.add_stream(name=self.stream, subjects=self.subjects)
                    log.info("stream created", stream=self.stream, subjects=self.subjects)
                config = api.ConsumerConfig(
                    durable_name=self.durable,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait,
                    max_deliver=-1,  # never drop a message the hub has not taken in
                    max_ack_pending=self.max_ack_pending,
                    filter_subject=self.subject,
                )
                self._sub = await js.pull_subscribe(
                    self.subject, durable=self.durable, stream=self.stream, config=config
                )
            except PermanentError:
                await nc.close()
                raise
            except Exception as exc:
                await nc.close()
                raise self._unavailable("subscribe", exc) from exc
            self._nc = nc
            if self._down_logged:
                log.info("NATS reachable again", servers=self.servers)
                self._down_logged = False
            return self._sub

    async def _connect(self) -> Any:
        import nats

        return await nats.connect(
            servers=self.servers,
            connect_timeout=self.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **self._auth,
        )

    def _unavailable(self, what: str, exc: BaseException) -> TransientError:
        if not self._down_logged:
            log.warning("NATS unavailable; the source waits for it", servers=self.servers, during=what)
            self._down_logged = True
        return TransientError(f"NATS {what} failed: {type(exc).__name__}: {exc}".strip())

    async def _on_error(self, exc: BaseException) -> None:
        log.debug("NATS client error", error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        log.warning("NATS disconnected; reconnecting", servers=self.servers)

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected", servers=self.servers)

    async def fetch(self, limit: int) -> list[Fetched]:
        """Up to ``limit`` messages; waits up to ``fetch_timeout`` for the first one."""
        import nats.errors

        sub = await self._subscription()
        try:
            msgs = await sub.fetch(batch=limit, timeout=self.fetch_timeout)
        except nats.errors.TimeoutError:
            return []
        except Exception as exc:
            if isinstance(exc, TimeoutError) and self._nc is not None and self._nc.is_connected:
                return []  # nothing came within fetch_timeout on a live connection
            raise self._unavailable("fetch", exc) from exc
        if self._down_logged:
            log.info("NATS reachable again", servers=self.servers)
            self._down_logged = False
        out = []
        for m in msgs:
            meta = m.metadata
            out.append(
                Fetched(
                    m.data,
                    m.subject,
                    meta.sequence.stream,
                    meta.sequence.consumer,
                    meta.num_delivered,
                    meta.num_pending,
                    m,
                )
            )
        return out

    async def ack(self, fetched: list[Fetched]) -> int:
        """Acknowledge; returns how many could not be (redelivered later: the reader dedupes them)."""
        failed = 0
        for f in fetched:
            try:
                await f.handle.ack()
            except Exception:
                failed += 1
        if failed:
            log.warning("acknowledgements not sent; JetStream will redeliver", count=failed)
        return failed

    async def position(self) -> dict[str, int] | None:
        """The consumer as the server holds it (None when unreachable)."""
        try:
            sub = await self._subscription()
            info = await sub.consumer_info()
        except Exception:
            return None
        return {
            "delivered_stream_seq": info.delivered.stream_seq,
            "ack_floor_stream_seq": info.ack_floor.stream_seq,
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
        }

    async def aclose(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except Exception as exc:
                log.debug("closing NATS failed", error=str(exc))
