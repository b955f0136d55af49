"""Support for ``bench/lead_to_cash.py``: the three sandboxes in a process of their own, and the lead-to-cash
environment on top of them.

``LeadToCash`` (lead2cash/demo/environment.py) serves the sandboxes from a thread of the hub's own process:
on this 2-core machine the hub and three simulators then share one GIL, which understates the hub. Here the
sandboxes are built exactly as ``LeadToCash`` builds them (``demo_sandboxes``) but served by a child process,
``lead2cash sandbox --lead-to-cash``, started by the tests' launcher (``tests/harness/sandboxes.py``);
``RemoteLeadToCash`` is ``LeadToCash`` with its sandboxes there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the sandbox launcher (tests/harness)

from harness.sandboxes import SandboxesProcess

from lead2cash.demo.environment import CONFIG_DIR, ROUTE_FILES, LeadToCash, demo_sandboxes, free_port
from lead2cash.hub import Hub

# Of the seeded opportunities, 80 % are open and 10 % already won (sandbox/salesforce/seed.py, STAGES).
OPEN_SHARE = 0.8
WON_SHARE = 0.1


def seed_size_for(won: int) -> int:
    """A seed size whose already-won plus open opportunities cover ``won`` (with a margin)."""
    return max(20, math.ceil(won / (OPEN_SHARE + WON_SHARE) * 1.06))


def set_latency(sandboxes: Any, ms: int) -> None:
    """Every sandbox API answers ``ms`` later, as a system across a network does (0: at once). Webhooks
    the billing engine sends and the sandboxes' admin API are not delayed."""
    rules = {"*": {"latency_ms": ms}} if ms else {}
    with httpx.Client(verify=str(sandboxes.ca_bundle), timeout=10, trust_env=False) as client:
        for name in ("salesforce", "lago", "sap"):
            client.put(
                f"{sandboxes.base_url(name)}/__sandbox/faults", json={"rules": rules}
            ).raise_for_status()


def set_lago_rate_limit(sandboxes: Any, per_s: int | None) -> None:
    """The Lago sandbox answers 429 beyond ``per_s`` requests/s (events aside), as Lago does per
    organization; None: no limit."""
    with httpx.Client(verify=str(sandboxes.ca_bundle), timeout=10, trust_env=False) as client:
        client.put(
            f"{sandboxes.base_url('lago')}/__sandbox/lago/rate_limit", json={"per_s": per_s}
        ).raise_for_status()


class SandboxThread:
    """The same sandboxes served from a thread of this process (as ``LeadToCash`` does), same face."""

    def __init__(self, state_dir: Path, *, seed: int = 42, seed_size: int = 60) -> None:
        from lead2cash.sandbox.server import SandboxCluster

        systems: list[Any] = list(demo_sandboxes(seed, seed_size))
        self.cluster = SandboxCluster(systems=systems, state_dir=state_dir)
        self.cluster.start_in_thread()
        self.ca_bundle = self.cluster.ca_bundle

    def hub_config(self) -> dict[str, Any]:
        return self.cluster.hub_config()

    def base_url(self, name: str) -> str:
        return self.cluster.base_url(name)

    def stop(self) -> None:
        self.cluster.stop()


class Org:
    """Salesforce as sales uses it, over the sandbox's REST API: count won deals, close more as won."""

    def __init__(self, sandboxes: SandboxesProcess | SandboxThread) -> None:
        sf = sandboxes.hub_config()["salesforce"]
        self.client = httpx.Client(
            base_url=sandboxes.base_url("salesforce"),
            verify=str(sandboxes.ca_bundle),
            timeout=60,
            trust_env=False,
        )
        form = {k: sf["auth"][k] for k in ("client_id", "client_secret")}
        r = self.client.post("/services/oauth2/token", data={"grant_type": "client_credentials", **form})
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def soql(self, query: str) -> list[dict[str, Any]]:
        r = self.client.get("/services/data/v62.0/query", params={"q": query}, headers=self.headers)
        r.raise_for_status()
        page = r.json()
        records = list(page["records"])
        while not page.get("done", True):
            r = self.client.get(page["nextRecordsUrl"], headers=self.headers)
            r.raise_for_status()
            page = r.json()
            records.extend(page["records"])
        return records

    def close_won(self, count: int = 0, ids: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"ids": ids} if ids is not None else {"count": count}
        r = self.client.post("/__sandbox/salesforce/close-won", json=body)
        r.raise_for_status()
        return dict(r.json())

    def close(self) -> None:
        self.client.close()


def close_won_total(sandboxes: SandboxesProcess | SandboxThread, total: int) -> int:
    """Close open deals as won until ``total`` are won (the seed already holds some); returns the count."""
    org = Org(sandboxes)
    try:
        already = len(org.soql("SELECT Id FROM Opportunity WHERE IsWon = true"))
        if total > already:
            org.close_won(total - already)
        return len(org.soql("SELECT Id FROM Opportunity WHERE IsWon = true"))
    finally:
        org.close()


class _RemoteWebhooks:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @property
    def pending(self) -> int:
        # drain with no wait answers at once with the count of deliveries still queued or retrying.
        r = self._client.post("/__sandbox/lago/webhooks/drain", params={"timeout_s": 0})
        return int(r.json()["pending"])


class _RemoteSalesforce:
    def __init__(self, auth: dict[str, Any]) -> None:
        self.client_id = str(auth["client_id"])
        self.client_secret = str(auth["client_secret"])


class _RemoteLago:
    def __init__(self, api_key: str, client: httpx.Client) -> None:
        self.api_key = api_key
        self.webhooks = _RemoteWebhooks(client)


@contextlib.contextmanager
def pg_schema(base: str, prefix: str) -> Iterator[str]:
    """A throwaway PostgreSQL schema at ``base``: yields a store URL whose search_path is that schema."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class RemoteLeadToCash(LeadToCash):
    """``LeadToCash`` whose sandboxes run in a child process (what ``LeadToCash.__init__`` does, minus the
    in-process cluster); every other method is the environment's own."""

    def __init__(
        self,
        workdir: Path,
        *,
        seed: int = 42,
        seed_size: int = 60,
        store_url: str | None = None,
        safety_lag: str = "1s",
        log_level: str = "WARNING",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_token = None
        self.cluster = SandboxesProcess.start(self.workdir / "sandbox", seed=seed, seed_size=seed_size)  # type: ignore[assignment]
        self.web_port = free_port()
        self.store_url = store_url or f"sqlite:///{self.workdir / 'state.db'}"
        self.systems_file = self.workdir / "systems.yaml"
        self.systems_file.write_text(json.dumps(self.systems_config(safety_lag, log_level), indent=2))
        self.config_files = [self.systems_file, *(CONFIG_DIR / name for name in ROUTE_FILES)]
        self.hub = Hub.from_files(self.config_files)
        ca = str(self.cluster.ca_bundle)
        self.http = {
            name: httpx.Client(base_url=self.cluster.base_url(name), verify=ca, timeout=60, trust_env=False)
            for name in ("salesforce", "lago", "sap")
        }
        self._sf_token = None
        printed = self.cluster.hub_config()
        self.salesforce = _RemoteSalesforce(printed["salesforce"]["auth"])  # type: ignore[assignment]
        self.lago = _RemoteLago(str(printed["lago"]["api_key"]), self.http["lago"])  # type: ignore[assignment]


def spy_summary(raw: Path, top: int = 25) -> str:
    """Own and inclusive time per function, per process, from ``py-spy record --format raw`` output
    (``py-spy record --subprocesses --format raw -o FILE -- .venv/bin/python bench/lead_to_cash.py ...``)."""
    import re
    from collections import Counter, defaultdict

    total: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # A child process's stacks hang under the parent's; the last "process ..." frame names the owner.
        at = max(i for i, f in enumerate(frames) if f.startswith("process "))
        proc = "sandboxes" if "lead2cash.cli sandbox" in frames[at] else "hub/bench"
        names = [re.sub(r" \((.*?):\d+\)", r" (\1)", f) for f in frames[at + 1 :]]
        n = int(count)
        total[proc] += n
        if names:
            own[proc][names[-1]] += n
        for name in set(names):
            incl[proc][name] += n
    out = []
    for proc, n in total.items():
        out.append(f"{proc}: {n} samples (busy threads only)")
        out.append("  own time:")
        out += [f"    {c:6d} {100 * c / n:5.1f}%  {f[:120]}" for f, c in own[proc].most_common(top)]
        out.append("  inclusive:")
        out += [f"    {c:6d} {100 * c / n:5.1f}%  {f[:120]}" for f, c in incl[proc].most_common(top * 2)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("spy-summary", help="summarise a py-spy raw profile per process")
    p.add_argument("raw", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(spy_summary(args.raw, args.top))


if __name__ == "__main__":
    main()
