"""Operations endpoints and the reverse proxy (docs/deploy.md): /healthz says what answers,
/metrics is for the token or the allow-list only, forwarded headers are believed from
TRUSTED_PROXIES proxies and from nobody by default, and Twilio's signatures still validate
behind the proxy (they are checked against PUBLIC_BASE_URL)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from bot.infra.settings import Settings
from models.db import make_engine, make_sessions
from tests.integration.twilio_helpers import PATH, replies, sign, sms_payload

OUTSIDE = "203.0.113.7"  # TEST-NET-3: somewhere on the internet
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")

MakeClient = Callable[..., FlaskClient]


@pytest.fixture
def make_client(settings: Settings) -> Iterator[MakeClient]:
    """A test client for an app built with these settings changed."""
    apps: list[Flask] = []

    def make(**changes: Any) -> FlaskClient:
        from webhooks import create_app

        app = create_app(dataclasses.replace(settings, **changes))
        app.config["TESTING"] = True

        @app.get("/_probe")
        def probe() -> Any:  # what the app believes about the request
            return jsonify(scheme=request.scheme, remote=request.remote_addr)

        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["petitionbot"].engine.dispose()


def redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


# /healthz ------------------------------------------------------------------------------------

def test_healthz_reports_the_database_and_redis_separately(make_client: MakeClient) -> None:
    plain = make_client().get("/healthz")
    assert (plain.status_code, plain.get_json()) == (
        200, {"status": "ok", "database": "ok", "redis": "not configured"})

    away = make_client(redis_url="redis://127.0.0.1:1/0").get("/healthz")
    assert (away.status_code, away.get_json()) == (
        200, {"status": "degraded", "database": "ok", "redis": "unreachable"})

    if not redis_available():
        if os.environ.get("PETITIONBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis is not answering at {REDIS_URL}")
        pytest.skip(f"needs Redis at {REDIS_URL}")
    shared = make_client(redis_url=REDIS_URL).get("/healthz")
    assert (shared.status_code, shared.get_json()) == (
        200, {"status": "ok", "database": "ok", "redis": "ok"})


def test_healthz_is_503_without_the_database(make_client: MakeClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    runtime = client.application.extensions["petitionbot"]
    down = make_engine("postgresql+psycopg://127.0.0.1:1/x", pool_timeout=5)
    monkeypatch.setattr(runtime, "engine", down)
    monkeypatch.setattr(runtime, "sessions", make_sessions(down))
    try:
        response = client.get("/healthz")
    finally:
        monkeypatch.undo()
        down.dispose()
    assert (response.status_code, response.get_json()) == (
        503, {"status": "unavailable", "database": "unreachable", "redis": "not configured"})


# /metrics: who may read it -------------------------------------------------------------------

def test_metrics_answer_loopback_only_by_default(make_client: MakeClient) -> None:
    client = make_client()
    local = client.get("/metrics")
    assert local.status_code == 200
    assert local.mimetype == "text/plain"
    names = {f.name for f in text_string_to_metric_families(local.get_data(as_text=True))}
    assert {"petitionbot_database_up", "petitionbot_outbox_depth",
            "petitionbot_petition_signatures"} <= names
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": OUTSIDE}).status_code == 403
    # Through a proxy nobody said to trust, the real client is unknown: refused.
    relayed = client.get("/metrics", headers={"X-Forwarded-For": OUTSIDE})
    assert relayed.status_code == 403


def test_metrics_answer_the_bearer_token_from_anywhere(make_client: MakeClient) -> None:
    client = make_client(metrics_token="m3trics-token-value", metrics_allow="none")
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer m3trics-token-value"},
                       environ_base={"REMOTE_ADDR": OUTSIDE})
    assert right.status_code == 200


def test_metrics_allow_list_takes_addresses_and_networks(make_client: MakeClient) -> None:
    client = make_client(metrics_allow="10.0.0.0/8, 192.0.2.10")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer on the list
    with pytest.raises(ValueError, match="METRICS_ALLOW"):
        make_client(metrics_allow="10.0.0.0/8, prometheus.internal")


# Behind a reverse proxy ----------------------------------------------------------------------

FORWARDED = {"X-Forwarded-For": f"127.0.0.1, {OUTSIDE}", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_are_ignored_unless_proxies_are_trusted(
        make_client: MakeClient) -> None:
    untrusted = make_client().get("/_probe", headers=FORWARDED).get_json()
    assert untrusted == {"scheme": "http", "remote": "127.0.0.1"}
    trusted = make_client(trusted_proxies=1).get("/_probe", headers=FORWARDED).get_json()
    # One proxy: its own entry (the last) is the client; the spoofed first one is ignored.
    assert trusted == {"scheme": "https", "remote": OUTSIDE}
    client = make_client(trusted_proxies=1)
    assert client.get("/metrics", headers=FORWARDED).status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_twilio_signatures_validate_behind_the_proxy(make_client: MakeClient) -> None:
    for trusted, sender in ((0, "+447700900777"), (1, "+447700900778")):
        params = sms_payload(sender, "Hi")
        headers = {"X-Twilio-Signature": sign(params), **FORWARDED}
        # The proxy reaches the app on its private address, not the public URL.
        response = make_client(trusted_proxies=trusted).post(
            PATH, data=params, headers=headers, base_url="http://127.0.0.1:5000")
        assert "Hello from PLANETS" in replies(response)[0]
    forged = make_client(trusted_proxies=1).post(
        PATH, data=params, headers={**headers, "X-Twilio-Signature": "forged"},
        base_url="http://127.0.0.1:5000")
    assert forged.status_code == 403


def test_settings_read_the_proxy_and_metrics_variables() -> None:
    settings = Settings.from_env({"TRUSTED_PROXIES": "2", "METRICS_TOKEN": " t0ken ",
                                  "METRICS_ALLOW": "10.0.0.0/8"})
    assert (settings.trusted_proxies, settings.metrics_token, settings.metrics_allow) == (
        2, "t0ken", "10.0.0.0/8")
    default = Settings.from_env({})
    assert (default.trusted_proxies, default.metrics_allow) == (0, "127.0.0.0/8, ::1")
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "yes"})


# Request ids ---------------------------------------------------------------------------------

def test_every_response_carries_a_request_id(make_client: MakeClient) -> None:
    client = make_client()
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert len(first) == 16 and first != second
    # A client's own id is not believed; a trusted proxy's is.
    given = {"X-Request-Id": "nginx-0123456789abcdef"}
    assert client.get("/healthz", headers=given).headers["X-Request-Id"] != given["X-Request-Id"]
    proxied = make_client(trusted_proxies=1)
    assert proxied.get("/healthz", headers=given).headers["X-Request-Id"] == (
        "nginx-0123456789abcdef")
    junk = proxied.get("/healthz", headers={"X-Request-Id": "a b;c=d!"}).headers["X-Request-Id"]
    assert len(junk) == 16
