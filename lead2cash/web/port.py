"""What the web app needs of the hub, and nothing more: ``create_app`` takes a ``HubPort``, not the hub.

The hub satisfies it as it is (structurally: mypy checks ``create_app(hub)`` in ``hub.py``); a test serves
the app over a small stand-in. import-linter keeps ``lead2cash.web`` from importing the hub, the CLI or the
connectors, so the admin API and the webhook receivers cannot grow into the hub's internals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from lead2cash.config.schema import HubConfig, RouteConfig
from lead2cash.store import DeadLetter, XrefWrite


class RoutePort(Protocol):
    """A route as the web app sees it: its source (a webhook source verifies its own deliveries) and its
    inbox."""

    @property
    def source(self) -> object: ...

    def submit_counted(
        self,
        records: list[Mapping[str, Any]],
        *,
        receipt: tuple[str, str] | None = ...,
        xrefs: Sequence[XrefWrite] = ...,
    ) -> tuple[int, int] | None:
        """(messages queued, dead letters written), or None for a duplicate receipt."""


class StorePort(Protocol):
    """The store, read-only: its backend (for ``/health``) and the dead letters (admin API)."""

    @property
    def backend(self) -> str: ...

    def dlq_list(
        self, route: str | None = ..., status: str | None = ..., limit: int = ...
    ) -> list[DeadLetter]: ...

    def dlq_get(self, dead_letter_id: int) -> DeadLetter | None: ...


class MetricsPort(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def webhook_events(self) -> Counter: ...


class HubPort(Protocol):
    @property
    def config(self) -> HubConfig:
        """The loaded configuration: the admin token, and each system's type (webhook receivers)."""

    @property
    def route_configs(self) -> Mapping[str, RouteConfig]: ...

    @property
    def routes(self) -> Mapping[str, RoutePort]: ...

    @property
    def store(self) -> StorePort: ...

    @property
    def metrics(self) -> MetricsPort: ...

    @property
    def summary(self) -> Any:
        """The billing summary keeper (``.state.summaries(customer)``), or None when not configured."""

    @property
    def store_unavailable(self) -> str | None:
        """Why the store does not answer, or None: ``/health``'s readiness."""

    def store_failed(self, exc: BaseException) -> None:
        """A webhook's inbox write found the store unavailable."""

    def wake(self, name: str) -> None:
        """Route ``name`` has new work in its inbox."""
