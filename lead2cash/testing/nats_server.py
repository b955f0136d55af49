"""A private NATS server with JetStream for tests and benchmarks: its own port and store directory, so it
can be stopped and started again (an outage) without touching the machine's shared server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

NATS_SERVER_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")


def nats_server_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return next((p for p in NATS_SERVER_PATHS if Path(p).exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class NatsServer:
    """``nats-server -js`` on 127.0.0.1 and a free port, storing under ``store_dir``."""

    def __init__(self, store_dir: Path, binary: str | None = None) -> None:
        self.binary = binary or nats_server_binary()
        if self.binary is None:
            raise RuntimeError("nats-server is not installed (Debian package nats-server)")
        self.store_dir = store_dir
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = (self.store_dir / "nats-server.log").open("ab")
        cmd = [
            self.binary or "nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
            "-m",
            str(self.monitor_port),
        ]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own argv
        log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}); see {self.store_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not listen in time")
            time.sleep(0.05)

    def connections(self) -> int:
        """Clients connected now, from the server's monitoring endpoint (``/connz``)."""
        import httpx

        reply = httpx.get(f"http://127.0.0.1:{self.monitor_port}/connz", timeout=2, trust_env=False)
        reply.raise_for_status()
        return int(reply.json()["num_connections"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
