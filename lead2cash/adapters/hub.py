"""Confirmed deliveries of another route -> the canonical entity, with the target's reference added."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def confirmation(record: Mapping[str, Any], options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``options.ref_system`` names the system the delivering route's target belongs to (e.g. ``sap``): its
    reference is recorded in ``refs`` under that name."""
    entity = dict(record["entity"])
    system = options.get("ref_system")
    if system and record.get("target_ref"):
        entity["refs"] = {**(entity.get("refs") or {}), str(system): str(record["target_ref"])}
    return entity


INBOUND = {"hub.confirmation": confirmation}
