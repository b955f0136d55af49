"""The ``hub`` system type: routes' confirmed deliveries, as a source for other routes."""

from __future__ import annotations

from lead2cash.config.hub import HubSystemConfig
from lead2cash.systems.registry import ANY, NoOptions, Operation, SystemType

SYSTEM = SystemType(
    name="hub",
    description="The hub itself: what a route delivered, with the target's reference, for another route.",
    config=HubSystemConfig,
    build="lead2cash.systems.hub.binding:build",
    sources=(Operation(ANY, "the confirmed deliveries of the route of this name", NoOptions),),
    adapters=("lead2cash.adapters.hub",),
)
