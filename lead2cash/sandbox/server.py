"""Serve the simulators over HTTPS with uvicorn: in the foreground (CLI) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from lead2cash.sandbox.faults import DropConnections, EffectCounter, Faults
from lead2cash.sandbox.tls import TlsFiles, ensure_ca


class SystemSandbox(Protocol):
    """What each simulator (salesforce, lago, sap) exposes to the server."""

    name: str
    faults: Faults
    effects: EffectCounter

    def asgi(self) -> Any: ...

    def hub_config(self, base_url: str) -> dict[str, Any]:
        """The ``systems:`` entry the hub needs to reach this sandbox."""
        ...


@dataclass
class RunningSandbox:
    system: SystemSandbox
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"


@dataclass
class SandboxCluster:
    """Binds one port per system (0 = any free port), then serves all of them on one event loop."""

    systems: list[SystemSandbox]
    state_dir: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    tls: TlsFiles | None = None
    running: dict[str, RunningSandbox] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tls = ensure_ca(self.state_dir)
        self._sockets: dict[str, socket.socket] = {}
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        for system in self.systems:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Without uvloop, accepted sockets would keep Nagle on and stall small responses ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self.ports.get(system.name, 0)))
            sock.listen(2048)
            sock.set_inheritable(True)
            self._sockets[system.name] = sock
            self.running[system.name] = RunningSandbox(system, self.host, sock.getsockname()[1])

    @property
    def ca_bundle(self) -> Path:
        assert self.tls is not None
        return self.tls.ca_bundle

    def base_url(self, name: str) -> str:
        return self.running[name].base_url

    def hub_config(self) -> dict[str, Any]:
        """The hub's ``systems:`` entries for these sandboxes, trusting this cluster's CA."""
        return {
            name: {**r.system.hub_config(r.base_url), "ca_bundle": str(self.ca_bundle.resolve())}
            for name, r in self.running.items()
        }

    def _make_servers(self, loop_impl: str) -> list[uvicorn.Server]:
        assert self.tls is not None
        servers = []
        for system in self.systems:
            config = uvicorn.Config(
                DropConnections(system.asgi()),
                ssl_certfile=str(self.tls.cert_chain),
                ssl_keyfile=str(self.tls.key),
                log_level="warning",
                access_log=False,
                http="httptools",
                loop=loop_impl,
                lifespan="off",
                timeout_keep_alive=30,
                # A client that keeps an idle keep-alive connection must not hold up stopping the sandbox.
                timeout_graceful_shutdown=1,
                # A simulator with its own clock (server-time skew tests) sends its own Date header.
                date_header=not getattr(system, "sends_date_header", False),
                backlog=2048,
            )
            servers.append(uvicorn.Server(config))
        return servers

    async def serve(self) -> None:
        """Serve until cancelled or until ``stop()`` asks the servers to exit."""
        self._servers = self._make_servers("none")
        await asyncio.gather(
            *(
                server.serve(sockets=[self._sockets[system.name]])
                for server, system in zip(self._servers, self.systems, strict=True)
            )
        )

    def run(self) -> None:
        """Serve in this thread on uvloop (about twice the request rate of the default loop)."""
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.serve())
        finally:
            loop.close()

    def start_in_thread(self, timeout: float = 15.0) -> None:
        def run() -> None:
            self.run()

        self._thread = threading.Thread(target=run, name="lead2cash-sandboxes", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._servers and all(s.started for s in self._servers):
                return
            time.sleep(0.02)
        raise RuntimeError("sandboxes did not start in time")

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for sock in self._sockets.values():
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def running_cluster(systems: list[SystemSandbox], state_dir: Path) -> Iterator[SandboxCluster]:
    cluster = SandboxCluster(systems=systems, state_dir=state_dir)
    cluster.start_in_thread()
    try:
        yield cluster
    finally:
        cluster.stop()


class _QuietDrops(logging.Filter):
    """Noise the sandboxes cause on purpose: dropped responses (fault injection), and the 1 s graceful
    shutdown running out on a client's idle keep-alive connection (logged by uvicorn as an ERROR)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "sandbox dropped the response" in message
            or "without starting response" in message
            or "timeout graceful shutdown exceeded" in message
        )


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
