"""Config of a Sap system (``type: sap``)."""

from __future__ import annotations

from typing import Literal

from lead2cash.config.base import Strict


class SapSystemConfig(Strict):
    type: Literal["sap"]
