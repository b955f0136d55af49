"""Salesforce record ids: 15-character base id plus the 3-character case-safe checksum suffix.

The suffix encodes, for each 5-character chunk of the 15-character id, which characters are upper-case
letters (bit i set when character i is A-Z), mapped onto ``A-Z0-5``. That is the real algorithm, so ids
minted here pass any client-side 15->18 conversion check.
"""

from __future__ import annotations

import itertools
import threading

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# ASCII order (digits < upper < lower), so lexical order of minted ids equals creation order.
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_CHARS = frozenset(_BASE62)
POD = "Dx"  # the two "instance" characters after the key prefix, as in 001Dx...


def checksum(id15: str) -> str:
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = 0
        for i, ch in enumerate(chunk):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX_ALPHABET[bits])
    return "".join(out)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def normalize(value: str) -> str | None:
    """A 15- or 18-character id in its 18-character form, or None when it is not a well-formed id."""
    if len(value) == 15 and _ID_CHARS.issuperset(value):
        return to18(value)
    if (
        len(value) == 18
        and _ID_CHARS.issuperset(value[:15])
        and checksum(value[:15]).upper() == value[15:].upper()
    ):
        return value[:15] + checksum(value[:15])
    return None


def _base62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, r = divmod(n, 62)
        chars.append(_BASE62[r])
    return "".join(reversed(chars))


class IdMinter:
    """Mints ids per key prefix from a counter; thread-safe (the seed and the app share it)."""

    def __init__(self, start: int = 1) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._start = start
        self._lock = threading.Lock()

    def mint(self, prefix: str) -> str:
        with self._lock:
            counter = self._counters.setdefault(prefix, itertools.count(self._start))
            n = next(counter)
        return to18(f"{prefix}{POD}0{_base62(n, 9)}")
