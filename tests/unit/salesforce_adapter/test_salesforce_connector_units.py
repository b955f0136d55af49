"""Connector pieces without a server: SOQL built from hostile values, checkpoints, error classes, the
API governor, the token request, and exact numbers on the wire."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lead2cash.connectors.salesforce import (
    ApiGovernor,
    ChildQuery,
    Credentials,
    Cursor,
    QuerySpec,
    TokenProvider,
    classify,
    parse_limit_info,
)
from lead2cash.connectors.salesforce.soql import (
    by_ids_query,
    by_keys_query,
    changes_query,
    child_changes_query,
    child_count_after_query,
    identifier,
    sweep_query,
)
from lead2cash.connectors.salesforce.writer import dumps
from lead2cash.errors import PermanentError, ThrottledError, TransientError

INJECTIONS = [
    "x' OR Id != null OR Name = 'y",
    "x\\' OR Id != null OR Name = \\'y",
    "'; DELETE FROM Opportunity; --",
    "x') OR (Name LIKE '%",
    "\\",
    "' OR ''='",
    "Closed Won' LIMIT 1 --",
    "line\nbreak' OR IsWon = false OR Name='",
    '" OR "1"="1',
    "%' ORDER BY Name --",
]
_STRING = re.compile(r"'(?:\\.|[^'\\])*'")


def _skeleton(soql: str) -> str:
    """The query with every string literal replaced: what is left is its structure."""
    return _STRING.sub("'?'", soql)


SPEC = QuerySpec(
    "Opportunity",
    ("Name", "Account.Name"),
    (ChildQuery("OpportunityLineItems", ("Quantity", "PricebookEntry.Product2.ProductCode")),),
    (("StageName", "Closed Won"), ("Type", ["New", "Renewal"])),
)
CURSOR = Cursor(dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC), "006Dx0000000009IAA")
LINES = ChildQuery(
    "OpportunityLineItems",
    ("Quantity",),
    object="OpportunityLineItem",
    parent_field="OpportunityId",
    parent_relationship="Opportunity",
)
UPPER = dt.datetime(2025, 1, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_values_never_change_the_query_structure(evil: str) -> None:
    base = QuerySpec(SPEC.object, SPEC.fields, SPEC.children, (("StageName", "x"), ("Type", ["a", "b"])))
    hostile = QuerySpec(
        SPEC.object, SPEC.fields, SPEC.children, (("StageName", evil), ("Type", [evil, evil]))
    )
    assert _skeleton(changes_query(hostile, CURSOR, UPPER, 50)) == _skeleton(
        changes_query(base, CURSOR, UPPER, 50)
    )
    assert _skeleton(sweep_query(hostile, "", 50)) == _skeleton(sweep_query(base, "", 50))
    after = (CURSOR.ts, CURSOR.id)
    assert _skeleton(child_changes_query(hostile, LINES, after, UPPER, 50)) == _skeleton(
        child_changes_query(base, LINES, after, UPPER, 50)
    )
    with pytest.raises(ValueError):
        by_ids_query(base, [evil])
    assert _skeleton(by_keys_query("Opportunity", "Key__c", [evil], ["Name"])) == _skeleton(
        by_keys_query("Opportunity", "Key__c", ["k"], ["Name"])
    )
    # Identifiers cannot be quoted: they are refused; ids and checkpoints are parsed, never pasted.
    with pytest.raises(ValueError):
        identifier(evil)
    with pytest.raises(ValueError):
        QuerySpec("Opportunity", (evil,))
    with pytest.raises(ValueError):
        Cursor.loads(json.dumps({"ts": "2025-01-02T03:04:05.000Z", "id": evil}))
    with pytest.raises(ValueError):
        Cursor.loads(json.dumps({"ts": evil, "id": "006Dx0000000009IAA"}))
    with pytest.raises(ValueError):
        sweep_query(base, evil, 10)


def test_keyset_query_keeps_milliseconds_and_breaks_ties_by_id() -> None:
    soql = changes_query(SPEC, CURSOR, UPPER, 50)
    assert (
        "WHERE (SystemModstamp > 2025-01-02T03:04:05.678Z OR (SystemModstamp = 2025-01-02T03:04:05.678Z "
        "AND Id > '006Dx0000000009IAA')) AND SystemModstamp <= 2025-01-03T00:00:00.000Z "
        "AND StageName = 'Closed Won' AND Type IN ('New','Renewal') "
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT 50"
    ) in soql
    assert "(SELECT Id, Quantity, PricebookEntry.Product2.ProductCode FROM OpportunityLineItems" in soql
    assert "SystemModstamp >" not in changes_query(SPEC, Cursor(), UPPER, 50)


def test_line_items_are_followed_on_their_own_keyset_with_the_parents_filters() -> None:
    soql = child_changes_query(SPEC, LINES, (CURSOR.ts, "00kDx0000000009IAA"), UPPER, 20)
    assert soql == (
        "SELECT Id, SystemModstamp, OpportunityId FROM OpportunityLineItem WHERE (SystemModstamp > "
        "2025-01-02T03:04:05.678Z OR (SystemModstamp = 2025-01-02T03:04:05.678Z AND Id > "
        "'00kDx0000000009IAA')) AND SystemModstamp <= 2025-01-03T00:00:00.000Z AND Opportunity.StageName = "
        "'Closed Won' AND Opportunity.Type IN ('New','Renewal') ORDER BY SystemModstamp ASC, Id ASC LIMIT 20"
    )
    # A position without an Id (where a new checkpoint starts) is after every line of that stamp.
    assert "WHERE SystemModstamp > 2025-01-02T03:04:05.678Z AND" in child_changes_query(
        SPEC, LINES, (CURSOR.ts, None), UPPER, 20
    )
    assert by_ids_query(SPEC, ["006Dx0000000009IAA"]).endswith(
        "FROM Opportunity WHERE Id IN ('006Dx0000000009IAA') AND StageName = 'Closed Won' "
        "AND Type IN ('New','Renewal') ORDER BY Id ASC"
    )


def test_cursor_round_trip() -> None:
    cursor = Cursor(CURSOR.ts, CURSOR.id, "006Dx000000000AIAA", UPPER)
    assert Cursor.loads(cursor.dumps()) == cursor
    # A checkpoint written before line items were watched reads as one without a line position.
    assert "child_ts" not in cursor.dumps()
    lines = Cursor(CURSOR.ts, CURSOR.id, None, UPPER, UPPER, None)
    assert Cursor.loads(lines.dumps()) == lines
    lines = Cursor(CURSOR.ts, CURSOR.id, None, UPPER, UPPER, "00kDx0000000009IAA")
    assert Cursor.loads(lines.dumps()) == lines
    assert Cursor.loads(None) == Cursor()
    with pytest.raises(ValueError):
        Cursor.loads(json.dumps({"ts": "2025-01-02T03:04:05.000Z"}))


def test_a_started_cursor_keeps_its_floor_and_line_position_and_operators_may_type_both() -> None:
    from lead2cash.systems.salesforce.binding import SalesforceSource

    started = Cursor.starting_at(UPPER)
    # The line items start where the Opportunities do: a line changed at the start is read, none before.
    assert (started.child_ts, started.child_id, started.floor) == (UPPER, Cursor.FIRST_ID, UPPER)
    assert Cursor.loads(started.dumps()) == started
    # `checkpoint set` takes what the reader writes: the line position and the floor together.
    typed = json.dumps(
        {
            "ts": "2025-01-02T03:04:05.000Z",
            "id": "006Dx0000000009IAA",
            "sweep_after": None,
            "sweep_at": None,
            "child_ts": "2025-01-02T03:04:06.000Z",
            "child_id": "00kDx0000000009IAA",
            "floor": "2025-01-01T00:00:00.000Z",
        }
    )
    cursor = Cursor.loads(SalesforceSource.parse_checkpoint(typed))
    assert cursor.child_id == "00kDx0000000009IAA" and cursor.floor is not None
    with pytest.raises(ValueError, match="unknown checkpoint field"):
        SalesforceSource.parse_checkpoint(typed.replace('"floor"', '"flor"'))
    # What the safety lag held back on the line items, from their own position, the filters via the parent.
    assert _skeleton(child_count_after_query(SPEC, LINES, cursor)) == (
        "SELECT COUNT() FROM OpportunityLineItem WHERE (SystemModstamp > 2025-01-02T03:04:06.000Z OR "
        "(SystemModstamp = 2025-01-02T03:04:06.000Z AND Id > '?')) AND Opportunity.StageName = '?' AND "
        "Opportunity.Type IN ('?','?')"
    )


@pytest.mark.parametrize(
    ("status", "code", "klass"),
    [
        (403, "REQUEST_LIMIT_EXCEEDED", ThrottledError),
        (429, "REQUEST_LIMIT_EXCEEDED", ThrottledError),
        (503, "SERVER_UNAVAILABLE", ThrottledError),
        (None, "UNABLE_TO_LOCK_ROW", TransientError),
        (500, "UNKNOWN_EXCEPTION", TransientError),
        (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", PermanentError),
        (None, "REQUIRED_FIELD_MISSING", PermanentError),
        (400, "INVALID_FIELD", PermanentError),
        (404, "NOT_FOUND", PermanentError),
    ],
)
def test_error_classes(status: int | None, code: str, klass: type) -> None:
    content = (
        [{"errorCode": code, "message": "m", "fields": ["Amount__c"]}]
        if status
        else {"success": False, "errors": [{"statusCode": code, "message": "m", "fields": ["Amount__c"]}]}
    )
    err = classify(status, content, retry_after=2.0, limit_retry_after=600.0)
    assert type(err) is klass
    assert err.details["errorCode"] == code and err.details["fields"] == "Amount__c"
    if status == 403:
        assert err.retry_after == 600.0  # the daily allocation: pause long
    if status == 429:
        assert err.retry_after == 2.0  # rate limiting: as the server asks


def test_governor_pauses_below_the_threshold_and_lets_a_probe_through_later() -> None:
    gov = ApiGovernor(pause_below=0.1, retry_after=0.05)
    assert parse_limit_info("api-usage=95/100; per-app-api-usage=1/10(appName=x)") == (95, 100)
    gov.observe(50, 100)
    gov.check()
    gov.observe(95, 100)
    with pytest.raises(ThrottledError) as err:
        gov.check()
    assert err.value.retry_after is not None and 0 < err.value.retry_after <= 0.05
    import time

    time.sleep(0.06)
    gov.check()  # one call may go to learn whether budget returned
    gov.observe(10, 1000)
    gov.check()


def test_route_share_is_enforced() -> None:
    gov = ApiGovernor(pause_below=0.0)
    gov.observe(0, 100)
    budget = gov.budget("r", 0.05)
    for _ in range(5):
        budget.check()
        budget.count()
    with pytest.raises(ThrottledError, match="share"):
        budget.check()


def test_decimal_wire_text_is_exact() -> None:
    body = json.loads(
        dumps({"a": Decimal("1234.56"), "b": Decimal("0.1"), "c": Decimal("12345678901234567.89")})
    )
    assert body == {"a": 1234.56, "b": 0.1, "c": "12345678901234567.89"}
    assert repr(body["a"]) == "1234.56"


TOKEN_URL = "https://login.example.test/services/oauth2/token"


@respx.mock
def test_token_errors_pause_without_leaking_the_secret() -> None:
    secret = "s3cr3t-value"
    provider = TokenProvider(TOKEN_URL, Credentials("client_credentials", "cid", client_secret=secret))
    respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            400, json={"error": "invalid_client_id", "error_description": "client identifier invalid"}
        )
    )
    with pytest.raises(ThrottledError) as err:
        provider.fetch()
    assert "invalid_client_id" in err.value.describe() and secret not in err.value.describe()
    assert secret not in repr(provider.credentials)
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(TransientError):
        provider.fetch()
    respx.post(TOKEN_URL).mock(side_effect=httpx.ConnectError("boom"))
    with pytest.raises(TransientError):
        provider.fetch()


@respx.mock
def test_jwt_bearer_grant_signs_an_assertion(tmp_path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "key.pem").write_bytes(pem)
    creds = Credentials(
        "jwt_bearer", "cid", username="u@x", private_key_file=tmp_path / "key.pem", audience="https://login.x"
    )
    route = respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            200, json={"access_token": "tok", "instance_url": "https://i.example.test"}
        )
    )
    token = TokenProvider(TOKEN_URL, creds).fetch()
    assert token.access_token == "tok" and token.instance_url == "https://i.example.test"
    form = dict(httpx.QueryParams(route.calls.last.request.content.decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(form["assertion"], key.public_key(), algorithms=["RS256"], audience="https://login.x")
    assert claims["iss"] == "cid" and claims["sub"] == "u@x"
