"""State store: SQLAlchemy Core on SQLite (default) or PostgreSQL."""

from lead2cash.store.store import (
    UNCHECKED,
    DeadLetter,
    Effect,
    EffectState,
    Instance,
    Message,
    MessageStatus,
    NewDeadLetter,
    NewMessage,
    RouteState,
    Store,
    XrefWrite,
    is_unavailable,
    normalise_url,
)

__all__ = [
    "UNCHECKED",
    "DeadLetter",
    "Effect",
    "EffectState",
    "Instance",
    "Message",
    "MessageStatus",
    "NewDeadLetter",
    "NewMessage",
    "RouteState",
    "Store",
    "XrefWrite",
    "is_unavailable",
    "normalise_url",
]
