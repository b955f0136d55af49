"""The reliability harness: the lead-to-cash flow as separate processes, and a checker of what it did.

Test-only code (the shipped package keeps what users run): ``tests/reliability`` and ``bench/chaos.py``
import it as ``harness`` (``tests/`` is on the path of both)."""
