"""Demos: the lead-to-cash flow against the sandboxes, and the smallest real route."""

from lead2cash.demo.minimal import run_minimal_demo, sample_orders

__all__ = ["run_minimal_demo", "sample_orders"]
