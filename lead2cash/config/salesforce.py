"""Config of a Salesforce system (``type: salesforce``)."""

from __future__ import annotations

from typing import Literal

from lead2cash.config.base import Strict


class SalesforceSystemConfig(Strict):
    type: Literal["salesforce"]
