"""The `petitionbot` command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.infra.settings import TELEGRAM_SECRET, Settings, quiet_library_loggers

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def _settings() -> Settings:
    return Settings.from_env()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """Read and sign a campaign petition over SMS, WhatsApp and Telegram."""
    from bot.infra import logs

    try:  # readable, or JSON with LOG_FORMAT=json; phone numbers and secrets masked
        logs.configure(logging.DEBUG if verbose else logging.INFO)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if verbose:
        logging.getLogger("alembic").setLevel(logging.DEBUG)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from bot.infra import metrics

        metrics.prepare()
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
    from bot.infra.config import ConfigError, load_config

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
    children = _background(settings)
    click.echo(f"petitionbot is running: http://{host}:{port}/healthz  (Ctrl+C stops it)")
    click.echo(f"Twilio webhook: {settings.public_base_url}/twilio/messages"
               + ("" if settings.twilio_enabled else "  (set TWILIO_ACCOUNT_SID and "
                  "TWILIO_AUTH_TOKEN to accept messages)"))
    click.echo("Try the conversation in a terminal: petitionbot chat --channel sms "
               "--address +447700900123")
    click.echo(f"Staff console: http://{host}:{port}/staff/")
    if not _has_staff(settings):
        click.echo("No staff account yet. Create the first admin (it asks for a password), "
                   "then log in:\n  petitionbot staff add you@example.org --role admin")
    try:
        _serve(host, port, workers=1, threads=8)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


def _has_staff(settings: Settings) -> bool:
    from bot.shell.staff import has_staff
    from models.db import make_engine, make_sessions

    engine = make_engine(settings.database_url)
    try:
        with make_sessions(engine)() as session:
            return has_staff(session)
    finally:
        engine.dispose()


@main.group()
def staff() -> None:
    """Staff accounts for the console at /staff/."""


@staff.command("add")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "editor", "viewer"]),
              help="viewer reads; editor also drafts; admin also approves, sends, exports, "
                   "erases and manages colleagues.")
def staff_add(email: str, role: str) -> None:
    """Create a console account. The password is read from standard input when it is not
    a terminal (one line), else asked for twice. (In the console, admins invite
    colleagues instead: Colleagues, Invite a colleague.)"""
    from bot.shell import staff as accounts

    sessions = _staff_sessions()  # a database that is behind is refused before the password
    password = _read_password()
    now = utcnow()
    with sessions.begin() as session:
        try:
            user = accounts.add_staff(session, email, role, password, now)
        except accounts.StaffError as error:
            raise click.ClickException(str(error)) from None
        accounts.audit(session, accounts.OPERATOR, "staff.add", f"staff:{user.email}",
                       {"role": role}, now)
        added = user.email
    click.echo(f"{added} may now log in to the staff console at /staff/ as {role}.")


@staff.command("list")
def staff_list() -> None:
    """Every account: email, role, whether it is active and uses two-factor sign-in, its
    last sign-in and name."""
    from bot.shell import staff as accounts
    from bot.shell import two_factor

    with _staff_sessions()() as session:
        people = accounts.colleagues(session)
    for user in people:
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        click.echo("\t".join([
            user.email, user.role, "active" if user.active else "deactivated",
            f"two-factor {'on' if two_factor.is_on(user) else 'off'}",
            f"last sign-in {last}", user.name or ""]).rstrip())
    if not people:
        click.echo("No staff accounts yet: petitionbot staff add EMAIL --role admin")


@staff.command("reset-two-factor")
@click.argument("email")
def staff_reset_two_factor(email: str) -> None:
    """Turn off two-factor sign-in for someone who lost their phone and recovery codes.
    Their sign-ins end; they sign in with their password, and an admin who must use
    two-factor sign-in is then asked to set it up again."""
    from bot.shell import staff as accounts
    from bot.shell import two_factor

    with _staff_sessions().begin() as session:
        try:
            user = accounts.find(session, email)
        except accounts.StaffError as error:
            raise click.ClickException(str(error)) from None
        two_factor.reset(session, user, None, utcnow())
        done = user.email
    click.echo(f"Two-factor sign-in is off for {done}: they can sign in with their "
               "password now.")


def _staff_sessions() -> sessionmaker[Session]:
    """Sessions on the configured database, refused while its schema is behind."""
    from models.db import make_engine, make_sessions

    settings = _settings()
    require_current_schema(settings)
    return make_sessions(make_engine(settings.database_url))


def _read_password() -> str:
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("The same password again: ") != first:
        raise click.ClickException("the two passwords differ; nothing was changed")
    return first


@main.group()
def token() -> None:
    """Staff API tokens (/api/v1): each acts with its staff member's role and name."""


@token.command("create")
@click.argument("email")
@click.option("--name", default="API token", show_default=True,
              help="What the token is for, e.g. CRM sync.")
def token_create(email: str, name: str) -> None:
    """Make a token for a staff member. It is printed once, alone on the last line; only
    its hash is kept."""
    from bot.shell import api_tokens
    from bot.shell import staff as accounts
    from models.db import make_engine, make_sessions

    settings = _settings()
    require_current_schema(settings)
    now = utcnow()
    with make_sessions(make_engine(settings.database_url)).begin() as session:
        try:
            issued = api_tokens.issue_for_email(session, email, name, now)
        except accounts.StaffError as error:
            raise click.ClickException(str(error)) from None
        accounts.audit(session, "cli:" + os.environ.get("USER", "operator"), "token.create",
                       f"token:{issued.id}", {"staff": accounts.normalise_email(email)}, now)
    click.echo(f"Token {issued.id} ({issued.name}) for {accounts.normalise_email(email)}; "
               "it is shown only now:")
    click.echo(issued.secret)


@token.command("list")
@click.argument("email", required=False)
def token_list(email: str | None) -> None:
    """Tokens (one staff member's, or everyone's), newest first; never the tokens."""
    from sqlalchemy import select

    from bot.shell import api_tokens
    from bot.shell.staff import normalise_email
    from models import StaffUser
    from models.db import make_engine, make_sessions

    settings = _settings()
    require_current_schema(settings)
    with make_sessions(make_engine(settings.database_url))() as session:
        emails = dict(session.execute(select(StaffUser.id, StaffUser.email)).tuples().all())
        user_id = None
        if email is not None:
            user_id = next((i for i, e in emails.items() if e == normalise_email(email)), None)
            if user_id is None:
                raise click.ClickException(f"{normalise_email(email)} has no staff account")
        rows = api_tokens.tokens_of(session, user_id)
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.id}\t{emails.get(row.staff_user_id, '?')}\t{row.name}\t"
                   f"created {row.created_at:%Y-%m-%d %H:%M}\tlast used {used}\t{state}")
    if not rows:
        click.echo("No tokens.")


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(1, 2**63 - 1))
def token_revoke(token_id: int) -> None:
    """Revoke a token by its number (`petitionbot token list`): it opens nothing from now."""
    from bot.shell import api_tokens
    from bot.shell import staff as accounts
    from models.db import make_engine, make_sessions

    settings = _settings()
    require_current_schema(settings)
    now = utcnow()
    with make_sessions(make_engine(settings.database_url)).begin() as session:
        row = api_tokens.revoke(session, token_id, now)
        if row is None:
            raise click.ClickException(f"there is no token {token_id}")
        accounts.audit(session, "cli:" + os.environ.get("USER", "operator"), "token.revoke",
                       f"token:{token_id}", None, now)
    click.echo(f"Token {token_id} is revoked.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=lambda: int(os.environ.get("WEB_CONCURRENCY", "0")),
              show_default="WEB_CONCURRENCY, or as gunicorn.conf.py: by database and cores",
              type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """The web part alone (webhooks, public JSON), under gunicorn."""
    from bot.infra.settings import web_processes

    settings = _settings()
    _config_or_exit(settings)
    require_current_schema(settings)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    _serve(host, port, workers=workers or web_processes(settings.database_url, cores),
           threads=threads)


def _background(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """The worker (announcements) and, with a token, Telegram polling: child processes
    beside the web server, stopped with it."""
    children = [subprocess.Popen([sys.executable, "-m", "bot", "worker"])]
    if settings.telegram_bot_token:
        children.append(subprocess.Popen([sys.executable, "-m", "bot", "telegram-poll"]))
    return children


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
            self.cfg.set("accesslog", None)  # request lines would carry nothing we need
            self.cfg.set("control_socket_disable", True)  # stopped by signals, as in production

        def load(self) -> Any:
            return create_app()

    Server().run()


def _senders(settings: Settings) -> dict[str, Any]:
    """A sender for every channel the environment configures."""
    senders: dict[str, Any] = {}
    if settings.twilio_enabled:
        from bot.channels.twilio.outbound import TwilioSender

        if settings.twilio_sms_from or settings.twilio_messaging_service_sid:
            senders["sms"] = TwilioSender(settings, "sms")
        if settings.twilio_whatsapp_from:
            senders["whatsapp"] = TwilioSender(settings, "whatsapp")
    if settings.telegram_bot_token:
        from bot.channels.telegram.gateway import TelegramGateway
        from bot.channels.telegram.outbound import TelegramSender

        senders["telegram"] = TelegramSender(
            TelegramGateway(settings.telegram_bot_token, settings.telegram_api_base_url))
    return senders


@main.command()
@click.option("--until-idle", is_flag=True,
              help="Exit once nothing is left to send or wait for (for cron and tests).")
@click.option("--batch", default=50, show_default=True, help="Deliveries claimed at a time.")
@click.option("--stale-after", default=15.0, show_default=True, type=float,
              help="Seconds after which a silent worker's deliveries are recovered.")
def worker(until_idle: bool, batch: int, stale_after: float) -> None:
    """Send announcements and direct messages at each channel's rate, post events to
    their receivers, record outcomes (--until-idle also waits for events due within a few
    seconds, not for one in a longer backoff)."""
    from bot.entry.worker import BroadcastWorker, stdout_if_tty
    from bot.infra.metrics import MeteredPacer, MeteredSender
    from bot.infra.pacing import make_pacer
    from bot.shell.retention import DailyRetention
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    senders = {channel: MeteredSender(sender, channel)
               for channel, sender in _senders(settings).items()}
    if not senders:
        click.echo("No channel is configured to send on (set the Twilio or Telegram "
                   "variables); deliveries will wait.", err=True)
    pacer = MeteredPacer(make_pacer(dict(config.broadcast.rates), settings.redis_url))
    sessions = make_sessions(make_engine(settings.database_url))
    runner = BroadcastWorker(config, sessions, senders, pacer, batch=batch,
                             stale_after=stale_after, out=stdout_if_tty())
    retention = DailyRetention(config, sessions)  # config.toml [retention], once a day
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    retention.start()
    try:
        runner.run(until_idle=until_idle)
    finally:
        retention.stop()


@main.command()
@click.option("--petition", "slug", required=True, help="The petition's slug.")
@click.option("--text", required=True, help="The message; the charity's name and how to "
              "stop are added where missing.")
@click.option("--channel", "channels", multiple=True,
              type=click.Choice(["sms", "whatsapp", "telegram"]), help="Only these channels.")
@click.option("--nation", "nations", multiple=True, help="Only signers in these nations.")
@click.option("--area", "areas", multiple=True, help="Only these postcode areas (e.g. EH).")
@click.option("--test-group", is_flag=True, help="Only the staff test group.")
@click.option("--template-sid", default=None,
              help="WhatsApp template (ContentSid) for those outside the 24-hour window.")
@click.option("--template-var", "template_vars", multiple=True, help="Template variable N=VALUE.")
@click.option("--send", is_flag=True, help="Approve and queue it now.")
@click.option("--schedule", "at", default=None, help="Approve and send at this local time "
              "(YYYY-MM-DD HH:MM).")
@click.option("--wait", is_flag=True, help="Follow the progress until it is sent.")
def announce(slug: str, text: str, channels: tuple[str, ...], nations: tuple[str, ...],
             areas: tuple[str, ...], test_group: bool, template_sid: str | None,
             template_vars: tuple[str, ...], send: bool, at: str | None, wait: bool) -> None:
    """Create an announcement: a draft and its preview, or (--send/--schedule) queue it."""
    from bot.shell import broadcast
    from bot.shell.staff import audit
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    if send and at:
        raise click.UsageError("use --send or --schedule, not both")
    variables = dict(v.split("=", 1) for v in template_vars if "=" in v) or None
    when = _local_time(at, config) if at else None
    sessions = make_sessions(make_engine(settings.database_url))
    now = utcnow()
    by = "cli:" + os.environ.get("USER", "operator")
    try:
        with sessions.begin() as session:
            announcement = broadcast.create(
                session, config, slug, text, by, broadcast.Audience(
                    channels, tuple(n.lower() for n in nations), areas, test_group),
                now=now, content_sid=template_sid, variables=variables)
            for line in broadcast.preview(session, config, announcement, now).lines():
                click.echo(line)
            audit(session, by, "announcement.create", f"announcement:{announcement.id}",
                  {"via": "cli"}, now)
            if send or when:
                # The operator approves their own draft: the second-approval rule is
                # for staff (console, Telegram), not for whoever runs the server.
                queued = broadcast.approve(session, config, announcement, by, now, at=when,
                                           operator=True)
                audit(session, by, "announcement.approve", f"announcement:{announcement.id}",
                      {"via": "cli", "recipients": queued}, now)
            announcement_id = announcement.id
    except broadcast.BroadcastError as error:
        raise click.ClickException(str(error)) from None
    if when:
        click.echo(f"Announcement {announcement_id} scheduled for {at} "
                   f"({config.broadcast.timezone}).")
    elif send:
        click.echo(f"Announcement {announcement_id} queued for {queued:,} recipient(s); "
                   "workers are sending it.")
    else:
        click.echo(f"Draft {announcement_id} saved. Approve it with: petitionbot announcement "
                   f"approve {announcement_id}")
    if wait and (send or when):
        _follow(sessions, announcement_id)


def _follow(sessions: Any, announcement_id: int) -> None:
    import time

    from bot.entry.worker import _Progress
    from bot.shell import broadcast
    from models import Announcement

    printer = _Progress(sys.stdout if sys.stdout.isatty() else None)
    while True:
        with sessions() as session:
            status = session.get(Announcement, announcement_id).status
            counts = broadcast.progress(session, announcement_id)
        if status in ("sent", "cancelled"):
            printer.show(counts, final=True)
            click.echo(f"Announcement {announcement_id} {status}.")
            return
        printer.show(counts)
        time.sleep(1)


def _local_time(text: str, config: Config) -> Any:
    import datetime as dt
    import zoneinfo

    try:
        naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD HH:MM", param_hint="--schedule") from None
    return naive.replace(tzinfo=zoneinfo.ZoneInfo(config.broadcast.timezone)).astimezone(
        dt.UTC)


@main.group()
def announcement() -> None:
    """List, approve, pause, resume or cancel announcements."""


@announcement.command("list")
def announcement_list() -> None:
    from sqlalchemy import select

    from bot.shell import broadcast
    from models import Announcement
    from models.db import make_engine, make_sessions

    settings = _settings()
    require_current_schema(settings)
    with make_sessions(make_engine(settings.database_url))() as session:
        for a in session.scalars(select(Announcement).order_by(Announcement.id.desc())
                                 .limit(50)):
            counts = broadcast.progress(session, a.id)
            done = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
            click.echo(f"{a.id:>5}  {a.status:<10} {a.created_at:%Y-%m-%d %H:%M}  "
                       f"{a.text[:50]!r}  {done}")


@announcement.command("approve")
@click.argument("announcement_id", type=int)
@click.option("--schedule", "at", default=None, help="Send at this local time instead of now.")
def announcement_approve(announcement_id: int, at: str | None) -> None:
    _act(announcement_id, "approve", at)


@announcement.command("cancel")
@click.argument("announcement_id", type=int)
def announcement_cancel(announcement_id: int) -> None:
    _act(announcement_id, "cancel")


@announcement.command("pause")
@click.argument("announcement_id", type=int)
def announcement_pause(announcement_id: int) -> None:
    _act(announcement_id, "pause")


@announcement.command("resume")
@click.argument("announcement_id", type=int)
def announcement_resume(announcement_id: int) -> None:
    _act(announcement_id, "resume")


def _act(announcement_id: int, action: str, at: str | None = None) -> None:
    from bot.shell import broadcast
    from bot.shell.staff import audit
    from models import Announcement
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    by = "cli:" + os.environ.get("USER", "operator")
    now = utcnow()
    try:
        with make_sessions(make_engine(settings.database_url)).begin() as session:
            found = session.get(Announcement, announcement_id)
            if found is None:
                raise broadcast.BroadcastError(f"no announcement {announcement_id}")
            if action == "approve":
                broadcast.approve(session, config, found, by, now,  # the operator's tool
                                  at=_local_time(at, config) if at else None, operator=True)
            elif action == "cancel":
                broadcast.cancel(session, found, by, now)
            elif action == "pause":
                broadcast.pause(session, found)
            else:
                broadcast.resume(session, found)
            audit(session, by, f"announcement.{action}", f"announcement:{announcement_id}",
                  {"via": "cli"}, now)
            status = found.status
    except broadcast.BroadcastError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Announcement {announcement_id} is now {status}.")


@main.command("telegram-poll")
def telegram_poll() -> None:
    """Receive Telegram messages by long polling (no public URL needed)."""
    from bot.channels.telegram.inbound import run_polling
    from bot.shell.service import Service
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    if not settings.telegram_bot_token:
        raise click.ClickException("set TELEGRAM_BOT_TOKEN (from BotFather) first")
    require_current_schema(settings)
    from pathlib import Path

    from bot.infra.settings import local_secret_key

    service = Service(config, make_sessions(make_engine(settings.database_url)),
                      secret=settings.secret_key or local_secret_key(Path("instance")))
    service.sync_petitions()
    run_polling(service, settings.telegram_bot_token, settings.telegram_api_base_url)


@main.group()
def telegram() -> None:
    """Telegram set-up."""


@telegram.command("set-webhook")
def telegram_set_webhook() -> None:
    """Register PUBLIC_BASE_URL/telegram/webhook with Telegram, with the secret token."""
    import asyncio

    from bot.channels.telegram.inbound import set_webhook

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
    from bot.entry.chat import chat as run_chat

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
    from bot.shell.export import write_signatures
    from bot.shell.petition_content import live_petition
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    sessions = make_sessions(make_engine(settings.database_url))
    with sessions() as session:
        try:
            live_petition(session, config, slug)  # staff may have created it
        except KeyError:
            raise click.ClickException(f"no petition with slug {slug!r}") from None
        write_signatures(session, slug, fmt, sys.stdout)


@main.command()
def stats() -> None:
    """Print the counts: totals, by channel, by nation, updates opt-ins."""
    from bot.shell.export import campaign_stats
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    sessions = make_sessions(make_engine(settings.database_url))
    with sessions() as session:
        click.echo(campaign_stats(session, config))


# Imports --------------------------------------------------------------------------------

@main.group("import")
def import_group() -> None:
    """Import CSV files: a suppression list, or signatures collected on paper."""


@import_group.command("suppressions")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path))
@click.option("--source", default=None,
              help="Where the list comes from, e.g. \"Fundraising Preference Service\" "
                   "(default: the file's name).")
@click.option("--dry-run", is_flag=True, help="Say what it would do; change nothing.")
def import_suppressions(path: Path, source: str | None, dry_run: bool) -> None:
    """Numbers never to be messaged again, on any channel, from now on: a CSV file whose
    first line names a phone column (phone, number, mobile...). Nobody's consent or
    opt-in changes."""
    _import("suppressions", path, dry_run, source=source)


@import_group.command("signatures")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path))
@click.option("--petition", "slug", required=True, help="The petition's slug.")
@click.option("--dry-run", is_flag=True, help="Say what it would do; change nothing.")
def import_signatures(path: Path, slug: str, dry_run: bool) -> None:
    """Signatures collected on paper or at events: a CSV file with the columns name,
    postcode, date (YYYY-MM-DD or DD/MM/YYYY) and source. They count, and are handed in,
    with the others; they are never messaged."""
    _import("signatures", path, dry_run, petition=slug)


def _import(kind: str, path: Path, dry_run: bool, petition: str | None = None,
            source: str | None = None) -> None:
    """Run an import (bot/shell/imports.py) and print what it did; bad rows exit 1."""
    from bot.shell import imports
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    if path.stat().st_size > imports.MAX_BYTES:
        raise click.ClickException(f"{path.name} is larger than "
                                   f"{imports.MAX_BYTES // 2**20} MiB: split it")
    engine = make_engine(settings.database_url)
    try:
        summary = imports.run(make_sessions(engine), config, kind, path.read_bytes(),
                              filename=path.name, petition=petition, source=source,
                              actor="cli:" + os.environ.get("USER", "operator"),
                              now=utcnow(), dry_run=dry_run)
    except imports.Refused as error:
        raise click.ClickException(f"{path.name}: {error}; nothing was imported") from None
    finally:
        engine.dispose()
    for line in summary.lines():
        click.echo(line)
    if summary.bad_rows:
        sys.exit(1)


# Backups and retention -------------------------------------------------------------------

@db.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Copy the SQLite database to PATH while the bot runs (PostgreSQL: use pg_dump)."""
    import sqlite3

    from sqlalchemy.engine import make_url

    from bot.infra.backup import BackupError, backup_sqlite, pg_dump_command

    url = make_url(_settings().database_url)
    if url.get_backend_name() != "sqlite":
        raise click.ClickException(
            "`petitionbot db backup` copies SQLite databases; this one is PostgreSQL. "
            "Back it up with pg_dump, e.g.\n\n    "
            + pg_dump_command(_settings().database_url, str(path))
            + "\n\nand restore it with pg_restore (docs/deploy.md, \"Backups\").")
    database = Path(url.database or "")
    try:
        size = backup_sqlite(database, path)
    except (BackupError, sqlite3.Error, OSError) as error:
        raise click.ClickException(f"backup failed: {error}") from None
    click.echo(f"Backed up {database} to {path} ({size:,} bytes).")


@main.group("retention")
def retention_group() -> None:
    """Enforce config.toml [retention] (the worker also does this daily)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Report what would be removed; change nothing.")
def retention_run(dry_run: bool) -> None:
    """Purge and anonymise what the retention periods say must go, and report it."""
    import os

    from bot.shell.retention import run
    from models.db import make_engine, make_sessions

    settings = _settings()
    config = _config_or_exit(settings)
    require_current_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        report = run(make_sessions(engine), config, utcnow(),
                     actor="cli:" + os.environ.get("USER", "operator"), dry_run=dry_run)
    finally:
        engine.dispose()
    for line in report.lines():
        click.echo(line)
