"""The ``nats`` system type: records from a NATS JetStream stream, read by a durable pull consumer."""

from __future__ import annotations

from lead2cash.config.nats import NatsSourceOptions, NatsSystemConfig
from lead2cash.systems.registry import ANY, Operation, SystemType

SYSTEM = SystemType(
    name="nats",
    description="NATS JetStream: a durable pull consumer on a stream; a message is acknowledged only once "
    "the hub's inbox holds it.",
    config=NatsSystemConfig,
    build="lead2cash.systems.nats.binding:build",
    sources=(
        Operation(ANY, "the messages of this subject (the consumer's filter subject)", NatsSourceOptions),
    ),
    adapters=("lead2cash.adapters.usage",),
)
