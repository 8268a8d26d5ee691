"""The `petitionbot` command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Any

import click

from bot.config import Config
from bot.settings import TELEGRAM_SECRET, Settings, quiet_library_loggers


def _settings() -> Settings:
    return Settings.from_env()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """Read and sign a campaign petition over SMS, WhatsApp and Telegram."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    quiet_library_loggers()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations (Alembic) up to the newest."""
    from models.db import make_engine
    from models.migrate import pending, upgrade

    engine = make_engine(_settings().database_url)
    behind = pending(engine)
    upgrade(engine)
    click.echo(f"Database is up to date ({len(behind)} migration(s) applied).")


def require_current_schema(settings: Settings) -> None:
    from models.db import make_engine
    from models.migrate import pending

    if pending(make_engine(settings.database_url)):
        raise click.ClickException(
            "the database schema is behind this version: run `petitionbot db upgrade` first")


def _config_or_exit(settings: Settings) -> Config:
    from bot.config import ConfigError, load_config

    try:
        return load_config(settings.config_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """All in one: migrate, then serve the web app and run the background parts."""
    from models.db import make_engine
    from models.migrate import upgrade

    settings = _settings()
    _config_or_exit(settings)
    upgrade(make_engine(settings.database_url))
    children = []
    if settings.telegram_bot_token and _has_command("telegram-poll"):
        children.append(subprocess.Popen([sys.executable, "-m", "bot", "telegram-poll"]))
    if _has_command("worker"):
        children.append(subprocess.Popen([sys.executable, "-m", "bot", "worker"]))
    click.echo(f"petitionbot is running: http://{host}:{port}/healthz  (Ctrl+C stops it)")
    click.echo(f"Twilio webhook: {settings.public_base_url}/twilio/messages"
               + ("" if settings.twilio_enabled else "  (set TWILIO_ACCOUNT_SID and "
                  "TWILIO_AUTH_TOKEN to accept messages)"))
    click.echo("Try the conversation in a terminal: petitionbot chat --channel sms "
               "--address +447700900123")
    try:
        _serve(host, port, workers=1, threads=8)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


def _has_command(name: str) -> bool:
    return name in main.commands


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=lambda: int(os.environ.get("WEB_CONCURRENCY", "2")),
              show_default="WEB_CONCURRENCY or 2", type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """The web part alone (webhooks, public JSON), under gunicorn."""
    settings = _settings()
    _config_or_exit(settings)
    require_current_schema(settings)
    _serve(host, port, workers=workers, threads=threads)


def _serve(host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from webhooks import create_app

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", None)

        def load(self) -> Any:
            return create_app()

    Server().run()


@main.command("telegram-poll")
def telegram_poll() -> None:
    """Receive Telegram messages by long polling (no public URL needed)."""
    from bot.channels.telegram import run_polling
    from bot.service import Service
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    if not settings.telegram_bot_token:
        raise click.ClickException("set TELEGRAM_BOT_TOKEN (from BotFather) first")
    require_current_schema(settings)
    service = Service(config, make_sessions(make_engine(settings.database_url)),
                      _budget(settings, config))
    service.sync_petitions()
    run_polling(service, settings.telegram_bot_token, settings.telegram_api_base_url)


def _budget(settings: Settings, config: Config) -> Any:
    from bot.budget import ReplyBudget

    return ReplyBudget.for_deployment(config.abuse.replies_per_window,
                                      config.abuse.window_seconds, settings.redis_url)


@main.group()
def telegram() -> None:
    """Telegram set-up."""


@telegram.command("set-webhook")
def telegram_set_webhook() -> None:
    """Register PUBLIC_BASE_URL/telegram/webhook with Telegram, with the secret token."""
    import asyncio

    from bot.channels.telegram import set_webhook

    settings = _settings()
    if not settings.telegram_bot_token:
        raise click.ClickException("set TELEGRAM_BOT_TOKEN (from BotFather) first")
    if not TELEGRAM_SECRET.match(settings.telegram_webhook_secret):
        raise click.ClickException(
            "set TELEGRAM_WEBHOOK_SECRET to 1-256 characters of A-Z, a-z, 0-9, _ and - "
            "(the webhook refuses every request without it)")
    url = settings.public_base_url + "/telegram/webhook"
    asyncio.run(set_webhook(settings.telegram_bot_token, settings.telegram_api_base_url, url,
                            settings.telegram_webhook_secret))
    click.echo(f"Telegram will deliver updates to {url}")


@main.command()
@click.option("--channel", type=click.Choice(["sms", "whatsapp", "telegram"]), default="sms",
              show_default=True)
@click.option("--address", required=True, help="A phone number, or a Telegram chat id.")
def chat(channel: str, address: str) -> None:
    """Talk to the bot in the terminal, exactly as CHANNEL would show it."""
    from bot.console import chat as run_chat

    settings = _settings()
    _config_or_exit(settings)
    require_current_schema(settings)
    logging.getLogger("petitionbot").setLevel(logging.WARNING)  # the chat is the output
    run_chat(settings, channel, address)


@main.command("export")
@click.option("--petition", "slug", required=True, help="The petition's slug.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
def export_signatures(slug: str, fmt: str) -> None:
    """Write the petition's signatures to standard output (streamed)."""
    from bot.export import write_signatures
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    try:
        config.petition(slug)
    except KeyError:
        raise click.ClickException(f"no petition with slug {slug!r}") from None
    sessions = make_sessions(make_engine(settings.database_url))
    with sessions() as session:
        write_signatures(session, slug, fmt, sys.stdout)


@main.command()
def stats() -> None:
    """Print the counts: totals, by channel, by nation, updates opt-ins."""
    from bot.export import campaign_stats
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    sessions = make_sessions(make_engine(settings.database_url))
    with sessions() as session:
        click.echo(campaign_stats(session, config))
