"""Ending the process without the interpreter's module teardown.

After a command whose work is done, tearing down Polars and the modules it pulled in takes 0.1 to 0.3 s of
wall time (measured after a reconciliation of a million lines). A command that has written and closed all
it produces calls :func:`allow`; the ``lead2cash`` executable then runs the exit handlers, flushes the
standard streams and ends the process. Callers of ``lead2cash.cli.main`` in-process are not affected.
"""

from __future__ import annotations

_allowed = False


def allow() -> None:
    global _allowed
    _allowed = True


def allowed() -> bool:
    return _allowed
