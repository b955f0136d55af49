"""A private nats-server per test (its own port and store, so a test can stop it for an outage)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lead2cash.testing.nats_server import NatsServer, nats_server_binary


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if nats_server_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is not installed: .ci/ensure-nats installs it")
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()
