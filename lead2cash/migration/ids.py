"""External ids of the migrated subscriptions in Lago.

The load gives each subscription the legacy contract number as ``external_id``. A cutover after a rollback
re-creates the subscriptions under ``<contract>~N`` (N the cutover number): the rolled-back subscription
keeps its id (terminated subscriptions keep their history in Lago) and the new one is told apart from it.
Whatever maps a subscription back to its contract (reconciliation, cutover gates) goes through
``contract_of``.
"""

from __future__ import annotations

import re

_SUFFIX = re.compile(r"^(?P<contract>.+)~(?P<n>[0-9]+)$")


def subscription_id(contract: str, cutover: int) -> str:
    """The subscription's external id at cutover ``cutover`` (1: the load's own subscription)."""
    return contract if cutover <= 1 else f"{contract}~{cutover}"


def contract_of(external_id: str) -> str:
    """The legacy contract of a Lago subscription's external id (``LC1~2`` -> ``LC1``)."""
    m = _SUFFIX.match(external_id)
    return m.group("contract") if m else external_id


def cutover_of(external_id: str) -> int:
    """The cutover that created the subscription (1 for the load's)."""
    m = _SUFFIX.match(external_id)
    return int(m.group("n")) if m else 1
