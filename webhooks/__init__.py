"""The web application: Twilio and Telegram webhooks, public JSON, health, staff console."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Request, Response, jsonify
from flask.sessions import NullSession, SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from bot.channels.telegram.gateway import TelegramGateway
from bot.channels.telegram.inbound import raised_at
from bot.infra.config import Config, load_config
from bot.infra.db_errors import database_unavailable
from bot.infra.settings import Settings, local_secret_key, quiet_library_loggers
from bot.shell import bot_texts, petition_content
from bot.shell.service import Service
from models.db import make_engine, make_sessions
from webhooks import api, api_v1, console, guards, ops, twilio
from webhooks import telegram as telegram_webhook
from webhooks.runtime import Runtime

log = logging.getLogger("petitionbot.web")

MAX_BODY = 64 * 1024  # Twilio's largest form is a few KiB; anything near this is not Twilio
RETRY_AFTER_SECONDS = 5  # a 503's Retry-After: how soon a database outage may be over


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for the staff console; none for the providers' webhooks and
    the machine endpoints, which never carry one (opening and signing an empty session was
    a tenth of an inbound message's time)."""

    SESSIONLESS = ("/twilio/", "/telegram/", "/api/", "/healthz", "/metrics")

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.SESSIONLESS):
            return NullSession()
        return super().open_session(app, request)



def tell_overridden(engine: Engine, config: Config) -> None:
    """Tell the operator which parts of config.toml staff have changed since (DESIGN §3):
    the database holds the live version, so editing the file changes nothing there."""
    with engine.connect() as conn:
        lines = (petition_content.overridden(conn, config)
                 + bot_texts.overridden(conn, config))
    for line in lines:
        logging.getLogger("petitionbot").warning("config.toml overridden: %s", line)


def create_app(config: Settings | None = None) -> Flask:
    """Build the app from settings (default: the environment) and the config file."""
    settings = config or Settings.from_env()
    quiet_library_loggers()
    content = load_config(settings.config_path)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    secret_key = settings.secret_key or local_secret_key(Path("instance"))
    service = Service(content, sessions, secret=secret_key)
    service.sync_petitions()
    tell_overridden(engine, content)

    app = Flask(__name__)
    app.session_interface = ConsoleSessions()
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=MAX_BODY,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
    )
    telegram = TelegramGateway(settings.telegram_bot_token, settings.telegram_api_base_url) if (
        settings.telegram_bot_token) else None
    app.extensions["petitionbot"] = Runtime(settings, content, engine, sessions, service,
                                            telegram)

    csrf = CSRFProtect(app)  # every form; providers' webhooks authenticate by signature
    csrf.exempt(twilio.bp)
    csrf.exempt(telegram_webhook.bp)
    csrf.exempt(api_v1.bp)  # a bearer token, never a cookie: nothing to forge
    app.register_blueprint(twilio.bp)
    app.register_blueprint(telegram_webhook.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api_v1.bp)
    console.init_app(app)
    ops.install(app, settings)  # proxy trust, request ids, /healthz, /metrics
    # Text no database holds is refused on every route; the providers' webhooks wait for
    # the database no longer than their providers wait for an answer.
    guards.install(app, providers=(twilio.bp.name, telegram_webhook.bp.name))

    @app.errorhandler(SQLAlchemyError)
    def database_error(error: SQLAlchemyError) -> tuple[Response, int]:
        # The transaction was rolled back, nothing committed. Only an unavailable database
        # is a 503 (the provider retries, and so may the caller); any other database error
        # is a bug (the same request would fail again), logged with its traceback.
        if database_unavailable(error):
            log.error("database unavailable: %s", type(error).__name__)
            response = jsonify(error="service unavailable, try again")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response, 503
        # Where, not what: a database's message may quote a value (a phone number in a
        # constraint's DETAIL), which hide_parameters does not cover.
        log.error("database error: %s (%s) at %s", type(error).__name__,
                  type(getattr(error, "orig", None)).__name__, raised_at(error))
        return jsonify(error="internal error"), 500

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        if isinstance(error, guards.Unstorable):  # which field to fix, as the API says it
            return jsonify(error=error.description, field=error.field), 400
        return jsonify(error=error.description), error.code or 500

    return app
