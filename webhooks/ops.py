"""Operations: /healthz, /metrics, a request id on every request (and every log line it
causes), and which reverse proxies to believe.

Forwarded headers are believed from exactly `TRUSTED_PROXIES` proxies (werkzeug's ProxyFix)
and from nobody by default: without a proxy, anyone can send X-Forwarded-For. Twilio's
signatures do not depend on any of this: they are checked against PUBLIC_BASE_URL.

/metrics answers a Bearer `METRICS_TOKEN`, or an address in `METRICS_ALLOW` (loopback by
default). A request that came through a proxy the app was not told to trust has an unknown
client address, so only the token opens /metrics to it.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from bot.infra import logs, metrics
from bot.infra.settings import Settings
from webhooks.runtime import runtime

bp = Blueprint("ops", __name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
FORWARDED = ("X-Forwarded-For", "Forwarded", "X-Real-Ip")
REDIS_TIMEOUT = 1.0  # seconds: a health check must answer quickly either way

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Ops:
    trusted_proxies: int
    metrics_token: str
    metrics_allow: tuple[Network, ...]
    redis: redis.Redis | None


def install(app: Flask, settings: Settings) -> None:
    """Proxy trust, request ids, /healthz and /metrics, on the app being built."""
    if settings.trusted_proxies:
        # Only what the proxy itself sets: the client's address and the scheme. Twilio
        # signatures use PUBLIC_BASE_URL, not the Host header, so x_host is left alone.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
            x_host=0, x_port=0, x_prefix=0)
    metrics.prepare()
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT) if settings.redis_url else None
    app.extensions["petitionbot.ops"] = Ops(settings.trusted_proxies, settings.metrics_token,
                                            allow_list(settings.metrics_allow), client)
    app.before_request(_begin)
    app.after_request(_tag)
    app.teardown_request(_end)
    app.register_blueprint(bp)


def allow_list(spec: str) -> tuple[Network, ...]:
    """METRICS_ALLOW: addresses or networks, separated by commas or spaces; "none": none."""
    items = [item for item in re.split(r"[,\s]+", spec.strip()) if item]
    if [item.lower() for item in items] == ["none"]:
        return ()
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"METRICS_ALLOW: {item!r} is not an IP address or network") from None
    return tuple(networks)


def _ops() -> Ops:
    found: Ops = current_app.extensions["petitionbot.ops"]
    return found


# Request ids ----------------------------------------------------------------------------

def _begin() -> None:
    # A trusted proxy's own id (nginx's $request_id) ties its log line to ours.
    given = request.headers.get("X-Request-Id", "") if _ops().trusted_proxies else ""
    g.request_id = given if REQUEST_ID.match(given) else logs.new_request_id()
    g.request_id_token = logs.request_id.set(g.request_id)


def _tag(response: Response) -> Response:
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


def _end(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        # ValueError: set in another context (a copied one): nothing to undo here.
        with contextlib.suppress(ValueError):
            logs.request_id.reset(token)


# Health ---------------------------------------------------------------------------------

@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Liveness, and whether the database and Redis answer (503 without the database)."""
    try:
        with runtime().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unreachable"
    client = _ops().redis
    if client is None:
        shared = "not configured"
    else:
        try:
            client.ping()
            shared = "ok"
        except (redis.RedisError, OSError):
            shared = "unreachable"
    if database != "ok":
        return jsonify(status="unavailable", database=database, redis=shared), 503
    status = "degraded" if shared == "unreachable" else "ok"
    return jsonify(status=status, database=database, redis=shared), 200


# Metrics --------------------------------------------------------------------------------

@bp.get("/metrics")
def metrics_page() -> Any:
    ops = _ops()
    if not _may_read_metrics(ops):
        if ops.metrics_token:
            return (jsonify(error="a Bearer token is required"), 401,
                    {"WWW-Authenticate": 'Bearer realm="metrics"'})
        return jsonify(error="not allowed from this address (METRICS_ALLOW)"), 403
    body, content_type = metrics.exposition(runtime().engine, request.headers.get("Accept"))
    return Response(body, content_type=content_type)


def _may_read_metrics(ops: Ops) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if ops.metrics_token and scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), ops.metrics_token.encode()):
        return True
    if not ops.metrics_allow:
        return False
    if not ops.trusted_proxies and any(h in request.headers for h in FORWARDED):
        return False  # relayed by a proxy we were not told about: the client is unknown
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in ops.metrics_allow)
