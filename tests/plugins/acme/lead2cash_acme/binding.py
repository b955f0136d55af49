"""Acme's sources and targets over its JSON Lines files."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lead2cash.connectors.file import JsonLinesFile
from lead2cash.routes.interfaces import SourceBatch, WebhookDelivery
from lead2cash.systems import BindingContext
from lead2cash_acme.system import AcmeConfig


class OrdersSource:
    def __init__(self, name: str, file: JsonLinesFile, secret: str, region: str | None) -> None:
        self.name = name
        self.file = file
        self.secret = secret.encode()
        self.region = region

    def _wanted(self, record: Mapping[str, Any]) -> bool:
        return self.region is None or record.get("region") == self.region

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        result = self.file.read_from(int(checkpoint or 0), limit)
        records = [r for r in result.records if self._wanted(r)]
        return SourceBatch(records, str(result.offset), more=result.more, rejects=result.rejects)

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookDelivery | None:
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-acme-signature", "")):
            return None
        payload = json.loads(body)
        records = payload if isinstance(payload, list) else [payload]
        return WebhookDelivery(headers.get("x-acme-delivery"), [r for r in records if self._wanted(r)])


class PostTarget:
    def __init__(self, name: str, file: JsonLinesFile, journal: str) -> None:
        self.name = name
        self.file = file
        self.journal = journal

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        line = self.file.append({"key": key, "journal": self.journal, **entity.model_dump(mode="json")})
        return f"acme:{line}"

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        line = self.file.find(key)
        return f"acme:{line}" if line is not None else None


class AcmeSystem:
    def __init__(self, name: str, config: AcmeConfig, context: BindingContext) -> None:
        self.name = name
        directory = Path(config.directory)
        self.directory = directory if directory.is_absolute() else context.base_dir / directory
        self.secret = config.webhook_secret.get_secret_value()

    def source(self, object: str, options: Mapping[str, Any]) -> OrdersSource:
        file = JsonLinesFile(self.directory / f"{object}.jsonl")
        return OrdersSource(f"{self.name}/{object}", file, self.secret, options.get("region"))

    def target(self, action: str, options: Mapping[str, Any]) -> PostTarget:
        file = JsonLinesFile(self.directory / "posted.jsonl")
        return PostTarget(f"{self.name}/{action}", file, str(options["journal"]))


def build(name: str, config: AcmeConfig, context: BindingContext) -> AcmeSystem:
    return AcmeSystem(name, config, context)
