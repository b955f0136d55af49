"""Lago conformance fixtures: the real OpenAPI document (read in place), and a running sandbox."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.lago.receiver import WebhookReceiver
from lead2cash.sandbox.lago.webhooks import DispatchSettings

# The spec's servers are https://api.getlago.com/api/v1; requests are matched as if sent there.
SPEC_HOST = "https://api.getlago.com"
ERROR_SCHEMAS = {
    400: "ApiErrorBadRequest",
    401: "ApiErrorUnauthorized",
    404: "ApiErrorNotFound",
    405: "ApiErrorNotAllowed",
    422: "ApiErrorUnprocessableEntity",
}


@pytest.fixture(scope="session")
def lago_spec_path(specs_dir: Path) -> Path:
    path = specs_dir / "lago" / "openapi.yaml"
    assert path.is_file(), f"missing {path}"
    return path


@pytest.fixture(scope="session")
def lago_openapi(lago_spec_path: Path) -> OpenAPI:
    return OpenAPI.from_file_path(str(lago_spec_path))


@pytest.fixture(scope="session")
def lago_schemas(lago_spec_path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with lago_spec_path.open() as fh:
        return yaml.load(fh, Loader=loader)["components"]["schemas"]


# One sandbox per test module: the scenarios move its clock (one to a fixed date, others relative to
# today), and the clock only moves forward, so sharing it made a module's result depend on which ran first.
@pytest.fixture(scope="module")
def conformance_lago(start_sandboxes: Any) -> dict[str, Any]:
    sandbox = LagoSandbox(
        seed=1,
        seed_size=5,
        grace_period_days=2,  # subscription invoices stay drafts, so finalize can be exercised
        webhook_settings=DispatchSettings(retry_schedule_s=(0.05,), max_attempts=2),
        # Lago accepts KWD, but the document's Currency enum omits it: a KWD plan cannot validate here.
        unsupported_currencies=("KWD",),
    )
    receiver = WebhookReceiver()
    cluster = start_sandboxes(sandbox, receiver)
    sandbox.webhooks.set_verify(str(cluster.ca_bundle))
    tls = ssl.create_default_context(cafile=str(cluster.ca_bundle))
    client = httpx.Client(
        base_url=cluster.base_url("lago"),
        verify=tls,
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=10,
    )
    yield {
        "sandbox": sandbox,
        "receiver": receiver,
        "cluster": cluster,
        "client": client,
        "tls": tls,
        "receiver_url": cluster.base_url(receiver.name),
    }
    client.close()


def spec_request(request: httpx.Request) -> MockRequest:
    url = request.url
    return MockRequest(
        SPEC_HOST,
        request.method,
        url.path,
        args=list(url.params.multi_items()),
        headers=dict(request.headers),
        data=request.content or None,
        content_type=request.headers.get("content-type", "application/json"),
    )


@pytest.fixture(scope="session")
def conforms(lago_openapi: OpenAPI, lago_schemas: dict[str, Any]) -> Callable[..., httpx.Response]:
    """Validate an exchange against the spec: the request we sent, and the sandbox's response."""

    def check(response: httpx.Response, *, check_request: bool = True) -> httpx.Response:
        req = spec_request(response.request)
        if check_request and response.status_code < 400:
            lago_openapi.validate_request(req)  # provoked errors come from deliberately invalid requests
        content_type = response.headers.get("content-type", "").split(";")[0]
        resp = MockResponse(response.content, response.status_code, dict(response.headers), content_type)
        documented = _documented_statuses(lago_openapi, req)
        if str(response.status_code) in documented:
            lago_openapi.validate_response(req, resp)
        else:
            # Statuses the operation does not list still answer with Lago's error bodies.
            name = ERROR_SCHEMAS.get(response.status_code, "ApiErrorBadRequest")
            jsonschema.validate(response.json(), lago_schemas[name])
        return response

    return check


def _documented_statuses(openapi: OpenAPI, req: MockRequest) -> set[str]:
    from openapi_core.templating.paths.finders import APICallPathFinder

    finder = APICallPathFinder(openapi.spec)
    found = finder.find(req.method, f"{SPEC_HOST}{req.path}")
    return {str(code) for code in (found.operation / "responses").read_value()}
