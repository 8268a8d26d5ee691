"""The edges of the webhooks (DESIGN §8): 5xx means only "the database is unavailable,
retry" (503 with Retry-After); any other database error is a bug, a 500 with its
traceback in the log; a delivery report naming an id no row can have changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tests.conftest import PUBLIC_URL, TWILIO_SID
from tests.integration.twilio_helpers import new_sid, post, sign, sms_payload

AMIRA = "+447700900123"


def failing(error: Exception) -> Any:
    def receive(*_args: Any, **_kwargs: Any) -> Any:
        raise error
    return receive


def dbapi(kind: type[DBAPIError], invalidated: bool = False) -> DBAPIError:
    return kind("INSERT ...", {}, Exception("driver says no"), connection_invalidated=invalidated)


@pytest.mark.parametrize("error", [
    dbapi(OperationalError), dbapi(DBAPIError, invalidated=True), PoolTimeoutError("pool"),
])
def test_amiras_message_while_the_database_is_away_is_a_503_to_retry(
        error: Exception, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(app.extensions["petitionbot"].service, "receive", failing(error))
    response = post(client, sms_payload(AMIRA, "Hi"))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert b"<Message" not in response.get_data()
    [record] = [r for r in caplog.records if r.name == "petitionbot.web"]
    assert record.getMessage().startswith("database unavailable") and not record.exc_info


@pytest.mark.parametrize("error", [dbapi(DataError), dbapi(IntegrityError)])
def test_a_value_the_database_refuses_is_a_500_logged_with_where_not_what(
        error: Exception, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(app.extensions["petitionbot"].service, "receive", failing(error))
    response = post(client, sms_payload(AMIRA, "Hi"))
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    [record] = [r for r in caplog.records if r.name == "petitionbot.web"]
    # The type and the place, never the database's message (it may quote a phone number).
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert type(error).__name__ in record.getMessage()
    assert "driver says no" not in record.getMessage()


def report(client: FlaskClient, delivery: str, **fields: str) -> int:
    form = {"MessageSid": new_sid(), "MessageStatus": "delivered", "To": AMIRA,
            "AccountSid": TWILIO_SID, **fields}
    query = f"d={delivery}"
    url = f"{PUBLIC_URL}/twilio/status?{query}"
    response = client.post("/twilio/status", data=form, base_url=PUBLIC_URL,
                           query_string=query,
                           headers={"X-Twilio-Signature": sign(form, url=url)})
    return response.status_code


@pytest.mark.parametrize("delivery", [
    "12345678901234567890", "9223372036854775808", "18446744073709551616", "9" * 5000,
    "0", "00", "-1", "+1", "1.0", "", "x", "%D9%A3",  # ARABIC-INDIC DIGIT THREE
])
def test_a_status_report_for_a_delivery_no_row_can_have_is_a_204(
        delivery: str, client: FlaskClient) -> None:
    assert report(client, delivery) == 204


def test_a_status_report_with_a_nul_in_its_error_code_is_a_204(client: FlaskClient) -> None:
    assert report(client, "1", MessageStatus="undelivered", ErrorCode="300\x0005") == 204
