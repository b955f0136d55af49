"""Subset matching with diffs that name the field: what a config test expects against what it got.

An expected mapping matches when every key it names matches (the actual may hold more); an expected list
matches a list of the same length element by element. Numbers compare as exact decimals, so ``1200`` in a
test file matches the canonical ``"1200.00"`` and ``0.1`` never meets binary floating point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def show(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def subset_diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every place where ``actual`` does not match ``expected``, as ``path: expected X, got Y``."""
    where = path or "<root>"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where}: expected an object, got {show(actual)}"]
        out: list[str] = []
        for key, value in expected.items():
            child = _join(path, str(key))
            if key not in actual:
                out.append(f"{child}: missing (expected {show(value)})")
            else:
                out.extend(subset_diff(value, actual[key], child))
        return out
    if isinstance(expected, Sequence) and not isinstance(expected, str | bytes):
        if not isinstance(actual, Sequence) or isinstance(actual, str | bytes):
            return [f"{where}: expected a list, got {show(actual)}"]
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} item(s), got {len(actual)}: {show(actual)}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(subset_diff(e, a, _join(path, i)))
        return out
    if expected == actual and type(expected) is type(actual):
        return []
    if not (isinstance(expected, str) and isinstance(actual, str)):
        # A number on either side: exact decimal comparison (two strings compare as text: "01" != "1").
        e, a = _decimal(expected), _decimal(actual)
        if e is not None and a is not None:
            return [] if e == a else [f"{where}: expected {show(expected)}, got {show(actual)}"]
    return [f"{where}: expected {show(expected)}, got {show(actual)}"]
