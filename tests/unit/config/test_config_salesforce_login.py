"""Salesforce's client credentials flow is refused on login.salesforce.com and test.salesforce.com: the
config check says so, with the file and line, instead of the first run failing with a token error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lead2cash.cli import app

SYSTEMS = """
state: {{url: "sqlite:///{db}"}}
systems:
  salesforce:
    type: salesforce
    login_url: {login_url}
    auth: {{grant_type: {grant}, client_id: cid, client_secret: s3cret, username: u@x, private_key_file: k.pem}}
"""


@pytest.mark.parametrize("login_url", ["https://login.salesforce.com", "https://test.salesforce.com/"])
def test_client_credentials_on_a_generic_login_host_is_a_config_error(tmp_path: Path, login_url: str) -> None:
    path = tmp_path / "systems.yaml"
    path.write_text(SYSTEMS.format(db=tmp_path / "s.db", login_url=login_url, grant="client_credentials"))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert (
        f"{path}:5:5: systems.salesforce" in result.output
        and "needs the org's My Domain login URL" in result.output
    )
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("login_url", "grant"),
    [
        ("https://acme.my.salesforce.com", "client_credentials"),
        ("https://acme--uat.sandbox.my.salesforce.com", "client_credentials"),
        ("https://login.salesforce.com", "jwt_bearer"),
    ],
)
def test_my_domain_or_another_flow_passes(tmp_path: Path, login_url: str, grant: str) -> None:
    (tmp_path / "k.pem").write_text("not checked offline")
    path = tmp_path / "systems.yaml"
    path.write_text(SYSTEMS.format(db=tmp_path / "s.db", login_url=login_url, grant=grant))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
