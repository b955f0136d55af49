"""The one sandbox launcher of the tests and benchmarks: ``lead2cash sandbox --lead-to-cash`` in a child
process (its memory and GIL are not the hub's), as ``make demo`` builds the sandboxes
(``lead2cash.demo.environment.demo_sandboxes``), on free ports; what it printed, parsed."""

from __future__ import annotations

import copy
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lead2cash.demo.clients import HarnessError

SYSTEMS = ("salesforce", "lago", "sap")
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """The predicate's first truthy value, polled every ``interval`` s; HarnessError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")


def lead2cash_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lead2cash.cli", *args]


def _base_urls(printed: dict[str, Any]) -> dict[str, str]:
    # From the JSON, not the console lines above it (rich wraps those at 80 columns).
    urls = {}
    if "salesforce" in printed:
        urls["salesforce"] = str(printed["salesforce"]["instance_url"])
    if "lago" in printed:
        urls["lago"] = str(printed["lago"]["base_url"]).removesuffix("/api/v1")
    if "sap" in printed:
        urls["sap"] = str(printed["sap"]["base_url"])
    return urls


@dataclass
class SandboxesProcess:
    """``lead2cash sandbox --lead-to-cash`` in its own process. ``printed`` is the hub's ``systems:`` JSON
    it printed (every entry carries the CA bundle), ``urls`` the sandboxes' base URLs."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str]
    ca_bundle: Path
    printed: dict[str, Any]

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        seed: int = 42,
        seed_size: int = 60,
        only: Iterable[str] = SYSTEMS,
        timeout: float = 60,
    ) -> SandboxesProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        out, err = workdir / "sandboxes.out", workdir / "sandboxes.err"
        cmd = lead2cash_cmd(
            "sandbox",
            "--lead-to-cash",
            "--only",
            ",".join(only),
            "--seed",
            str(seed),
            "--seed-size",
            str(seed_size),
            "--state-dir",
            str(workdir / "sandbox-state"),
            "--salesforce-port",
            "0",
            "--lago-port",
            "0",
            "--sap-port",
            "0",
        )
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=workdir)

        def printed() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise HarnessError(f"the sandboxes exited ({proc.returncode}): {err.read_text()[-2000:]}")
            _, sep, rest = out.read_text(errors="replace").partition("hub config (systems:):\n")
            if not sep or not rest.rstrip().endswith("}"):
                return None
            try:
                return dict(json.loads(rest))
            except json.JSONDecodeError:
                return None

        try:
            systems = wait_for(printed, timeout, "the sandboxes to print their config")
            urls = _base_urls(systems)
            ca = Path(next(iter(systems.values()))["ca_bundle"])
            # Listening is not serving yet: wait until each answers its admin API.
            verify = ssl.create_default_context(cafile=str(ca))
            with httpx.Client(verify=verify, timeout=5, trust_env=False) as client:

                def up() -> bool:
                    try:
                        return all(
                            client.get(f"{u}/__sandbox/faults").status_code == 200 for u in urls.values()
                        )
                    except httpx.TransportError:
                        return False

                wait_for(up, timeout, "the sandboxes to answer")
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            raise
        return cls(proc, urls, ca, systems)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def hub_config(self) -> dict[str, Any]:
        """The printed ``systems:`` entries, a copy the caller may change (``SandboxCluster``'s face)."""
        return copy.deepcopy(self.printed)

    def base_url(self, name: str) -> str:
        return self.urls[name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
