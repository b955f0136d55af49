"""NATS JetStream as a system (``type: nats``)."""
