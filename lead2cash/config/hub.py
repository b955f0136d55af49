"""Config of the hub itself as a system (``type: hub``): routes' confirmed deliveries as a source."""

from __future__ import annotations

from typing import Literal

from lead2cash.config.base import Strict


class HubSystemConfig(Strict):
    """``source: {system: <this>, object: <route name>}`` reads what that route delivered, with the target's
    reference: how one route's outcome (an SAP document number) feeds another (the write-back)."""

    type: Literal["hub"]
