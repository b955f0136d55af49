"""The JetStream source on a real nats-server: NATS absent at start is a transient read error (the hub
waits and logs), then records flow once it is up; nothing is acknowledged before ``committed``, so what a
reader took but never committed comes again; a payload that is not a JSON object is rejected with the
stream position, not dropped."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lead2cash.config.nats import NatsSystemConfig
from lead2cash.errors import TransientError
from lead2cash.systems.nats.binding import NatsSystem
from lead2cash.testing.nats_server import NatsServer, nats_server_binary


@pytest.fixture()
def server(tmp_path: Path) -> NatsServer:
    if nats_server_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is not installed: .ci/ensure-nats installs it")
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    return NatsServer(tmp_path / "nats")  # not started: the test starts it


def _source(server: NatsServer, ack_wait: float = 1.0):  # type: ignore[no-untyped-def]
    config = NatsSystemConfig(type="nats", servers=[server.url], stream="T", subjects=["t.>"],
                              connect_timeout=0.5, fetch_timeout=0.3)  # fmt: skip
    return NatsSystem("bus", config).source("t.usage", {"durable": "test", "ack_wait": ack_wait})


async def _publish(url: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(servers=[url])
    js = nc.jetstream()
    for p in payloads:
        await js.publish("t.usage", p)
    await nc.close()


def test_nats_down_at_start_then_up_and_redelivery_until_committed(server: NatsServer) -> None:
    source = _source(server)

    async def scenario() -> None:
        with pytest.raises(TransientError, match="NATS connect failed"):
            await source.read(None, 10)
        server.start()
        try:
            first = await source.read(None, 10)  # creates the stream and the consumer: nothing yet
            assert first.records == [] and first.checkpoint is None
            await _publish(server.url, [b'{"n": 1}', b"[1, 2]", b'{"n": 2}'])
            batch = await source.read(None, 10)
            assert batch.records == [{"n": 1}, {"n": 2}]
            assert (
                len(batch.rejects) == 1 and "t.usage stream seq 2: not a JSON object" in batch.rejects[0][1]
            )
            assert batch.checkpoint == "stream T seq 3 (pending 0)"
            # Not committed: after ack_wait the same messages come again.
            await asyncio.sleep(1.3)
            again = await source.read(None, 10)
            assert again.records == [{"n": 1}, {"n": 2}]
            await source.committed(again)
            await asyncio.sleep(1.3)
            assert (await source.read(None, 10)).records == []
        finally:
            await source.aclose()
            server.stop()

    asyncio.run(scenario())
