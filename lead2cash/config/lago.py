"""Config of a Lago system (``type: lago``)."""

from __future__ import annotations

from typing import Literal

from lead2cash.config.base import Strict


class LagoSystemConfig(Strict):
    type: Literal["lago"]
