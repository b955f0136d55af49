"""Acme order -> canonical record (the route's mapping names it ``acme.order``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def order(record: Mapping[str, Any], options: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"id": record["id"], "name": record["name"], "version": record.get("version", 1)}


INBOUND = {"acme.order": order}
