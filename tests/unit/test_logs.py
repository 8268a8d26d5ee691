"""The log pipeline: readable or JSON lines, with the request id, and the last line of
defence that masks phone numbers and secrets whatever logged them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.infra import logs

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logs.make_handler(stream, "json", secrets=["s3cret-webhook-value"])
    logger = logging.getLogger("petitionbot.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("number", [
    "+447700900123", "07700900123", "07700 900123", "+44 7700 900123", "+44 (0)7700 900-123",
    "whatsapp:+447700900123", "tel:+14155550100", "700000123"])
def test_anything_that_looks_like_a_phone_number_is_masked(
        captured: tuple[logging.Logger, io.StringIO], number: str) -> None:
    logger, stream = captured
    logger.info("sending to %s now", number)
    [line] = lines(stream)
    message = str(line["message"])
    digits = "".join(c for c in number if c.isdigit())
    assert digits[3:-2] not in "".join(c for c in message if c.isdigit() or c == "*")
    assert "*" in message


@pytest.mark.parametrize("kept", [
    "2026-11-27 21:00:00", "delivery=12345 ms=35.2", "SM0123456789abcdef0123456789abcdef",
    "identity=42 step=review replies=1"])
def test_dates_ids_and_sids_are_left_alone(captured: tuple[logging.Logger, io.StringIO],
                                           kept: str) -> None:
    logger, stream = captured
    logger.info("seen %s", kept)
    assert lines(stream)[0]["message"] == f"seen {kept}"


def test_secrets_and_bot_tokens_are_replaced_in_messages_extras_and_tracebacks(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{TOKEN}/getMe for +447700900123")
    except RuntimeError:
        logger.exception("failed with s3cret-webhook-value", extra={"url": f"bot{TOKEN}"})
    text = stream.getvalue()
    assert TOKEN not in text and TOKEN.split(":")[1] not in text
    assert "s3cret-webhook-value" not in text
    assert "7700900123" not in text
    [line] = lines(stream)
    assert "RuntimeError" in str(line["exception"])
    assert line["url"] == "bot[secret]"


def test_json_lines_carry_the_request_id_and_the_extras(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    token = logs.request_id.set("abc123def456")
    try:
        logger.info("inbound channel=sms", extra={"channel": "sms", "outcome": "replied",
                                                  "ms": 3.2})
    finally:
        logs.request_id.reset(token)
    logger.info("outside any request")
    first, second = lines(stream)
    assert first["request_id"] == "abc123def456"
    assert (first["channel"], first["outcome"], first["ms"]) == ("sms", "replied", 3.2)
    assert first["level"] == "INFO" and first["logger"] == "petitionbot.test-logs"
    assert str(first["time"]).endswith("Z")
    assert second["request_id"] == "-"


def test_the_readable_format_shows_the_request_id() -> None:
    stream = io.StringIO()
    handler = logs.make_handler(stream, "text")
    record = logging.LogRecord("petitionbot.inbound", logging.INFO, __file__, 1,
                               "inbound channel=%s from %s", ("sms", "+447700900123"), None)
    token = logs.request_id.set("feedface00112233")
    try:
        handler.handle(record)
    finally:
        logs.request_id.reset(token)
    out = stream.getvalue()
    assert "INFO petitionbot.inbound [feedface00112233] inbound channel=sms from +447" in out
    assert "7700900123" not in out


def test_the_format_comes_from_log_format_and_secrets_from_the_environment() -> None:
    env = {"LOG_FORMAT": "json", "TELEGRAM_BOT_TOKEN": TOKEN, "TWILIO_AUTH_TOKEN": "tw-token-1",
           "DATABASE_URL": "postgresql://bot:pg-password-9@db/petitionbot"}
    config = logs.dict_config(environ=env)
    assert config["formatters"]["petitionbot"]["()"] == "bot.infra.logs.JsonFormatter"
    assert set(config["filters"]["redact"]["secrets"]) == {TOKEN, "tw-token-1", "pg-password-9"}
    assert logs.dict_config(environ={})["formatters"]["petitionbot"]["()"] == (
        "bot.infra.logs.TextFormatter")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.dict_config(environ={"LOG_FORMAT": "xml"})
