"""Config of a NATS JetStream system (``type: nats``): a source of records from a stream, read by a
durable pull consumer.

```yaml
systems:
  bus:
    type: nats
    servers: [nats://127.0.0.1:4222]
    stream: USAGE
    subjects: [usage.>]          # create the stream with these subjects when it does not exist
routes:
  - name: usage-to-lago
    source:
      system: bus
      object: usage.>            # the consumer's filter subject
      trigger: {type: poll, interval: 1s}
      options: {durable: lead2cash-usage, ack_wait: 30s}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from lead2cash.config.base import Duration, Strict


class NatsSystemConfig(Strict):
    type: Literal["nats"]
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, description="NATS server URLs"
    )
    stream: str = Field(description="the JetStream stream the routes read")
    subjects: list[str] | None = Field(
        None, description="create the stream with these subjects if it does not exist (else it must exist)"
    )
    connect_timeout: Duration = Field(2.0, description="how long one connection attempt may take")
    fetch_timeout: Duration = Field(
        1.0, description="how long one read waits for the first record when the consumer has none"
    )
    user: str | None = Field(None, description="user name (with password)")
    password: SecretStr | None = Field(None, description="password of user")
    token: SecretStr | None = Field(None, description="authentication token, instead of user and password")


class NatsSourceOptions(Strict):
    """``source.options`` of a route reading a NATS system."""

    durable: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,200}$",
        description="the durable consumer's name (default: lead2cash_<system>_<subject>)",
    )
    ack_wait: Duration = Field(
        30.0, description="a message not acknowledged this long after its delivery is delivered again"
    )
    max_ack_pending: int = Field(20_000, ge=1, le=1_000_000)
