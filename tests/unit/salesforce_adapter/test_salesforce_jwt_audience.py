"""The JWT bearer assertion's ``aud`` is Salesforce's authorization server (login. or test.salesforce.com),
never the My Domain host the token request goes to: Salesforce answers that with "audience is invalid"."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lead2cash.config.salesforce import SalesforceSystemConfig
from lead2cash.connectors.salesforce.auth import jwt_audience
from lead2cash.systems import BindingContext
from lead2cash.systems.salesforce.binding import SalesforceBinding


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
    ],
)
@respx.mock
def test_the_assertion_names_the_authorization_server(tmp_path: Path, login_url: str, audience: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    config = SalesforceSystemConfig.model_validate(
        {
            "type": "salesforce",
            "login_url": login_url,
            "auth": {
                "grant_type": "jwt_bearer",
                "client_id": "cid",
                "username": "integration@acme.example",
                "private_key_file": "key.pem",
            },
        }
    )
    binding = SalesforceBinding("salesforce", config, BindingContext(None, {}, tmp_path))
    route = respx.post(f"{login_url}/services/oauth2/token").mock(
        return_value=httpx.Response(200, json={"access_token": "tok", "instance_url": "https://i.example"})
    )
    try:
        binding.client.tokens.fetch()
    finally:
        binding.close()
    form = dict(httpx.QueryParams(route.calls.last.request.content.decode()))
    claims = jwt.decode(form["assertion"], key.public_key(), algorithms=["RS256"], audience=audience)
    assert claims["iss"] == "cid" and claims["sub"] == "integration@acme.example"


def test_an_experience_cloud_site_keeps_its_url() -> None:
    assert jwt_audience("https://acme.my.site.com/customers/services/oauth2/token") == (
        "https://acme.my.site.com/customers"
    )
