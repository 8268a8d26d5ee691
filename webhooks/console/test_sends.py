"""Test sends: a staff member links their own phone or Telegram (by messaging the bot a
one-time code shown here) and unlinks it; "Send a test to me" on a draft then sends it
there. The rules live in bot/shell/staff_links.py; this module only asks and shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import phonenumbers
from flask import abort, flash, redirect, render_template, url_for

from bot.infra.settings import Settings
from bot.shell import staff_links
from bot.shell.staff_links import CHANNEL_NAMES, Code, Linked
from webhooks.console.access import bp, me, now, record, route
from webhooks.console.forms import ActionForm
from webhooks.runtime import runtime


@dataclass(frozen=True)
class Destination:
    """Where to send the code on one channel: to whom, and a link that starts the
    message on a phone (None: type it)."""

    channel: str
    to: str
    href: str | None = None


@dataclass(frozen=True)
class Reach:
    """Who a test of an announcement on `channels` reaches, for its page."""

    ready: list[Linked]  # the viewer's linked addresses that will get it
    held: list[Linked]   # theirs on those channels that will not (STOP, unreachable)
    operator: int        # the operator's `[staff] test_group` numbers on those channels
    channels: str        # the announcement's channels in words ("" for every channel)


@route("/account/test-sends", "editor")
def test_sends() -> Any:
    return _page()


@route("/account/test-sends/code", "editor", methods=["POST"])
def link_code() -> Any:
    """A new code (any earlier one stops working), shown in this answer only."""
    ActionForm()  # the CSRF token was checked before the view ran
    with runtime().sessions.begin() as session:
        code = staff_links.issue_code(session, me().id, now())
        record(session, "test_sends.code", f"staff:{me().id}",
               {"expires_at": code.expires_at.isoformat()})
    return _page(code)


@route("/account/test-sends/<channel>/unlink", "editor", methods=["POST"])
def unlink_address(channel: str) -> Any:
    ActionForm()
    if channel not in CHANNEL_NAMES:
        abort(404, "No such channel.")
    with runtime().sessions.begin() as session:
        unlinked = staff_links.unlink(session, me().id, channel)
        if unlinked:
            record(session, "test_sends.unlink", f"staff:{me().id}", {"channel": channel})
    if unlinked:
        flash(f"Your {CHANNEL_NAMES[channel]} is unlinked: tests no longer go there.", "info")
    else:
        flash(f"You had no {CHANNEL_NAMES[channel]} linked.", "info")
    return redirect(url_for("staff.test_sends"), code=303)


def _page(code: Code | None = None) -> Any:
    rt = runtime()
    with rt.sessions() as session:
        linked = staff_links.addresses(session, me().id)
        waiting = None if code else staff_links.waiting_code(session, me().id, now())
    return render_template(
        "staff/test_sends.html", linked=linked, code=code, code_waiting_until=waiting,
        destinations=destinations(rt.settings, rt.service.telegram_username, code),
        names=CHANNEL_NAMES, operator=len(rt.config.staff.test_group), action=ActionForm())


def destinations(settings: Settings, telegram_username: str,
                 code: Code | None) -> list[Destination]:
    """Where the bot can be messaged, as configured: its SMS and WhatsApp numbers, its
    Telegram @name once known (the bot learns it at its first Telegram request)."""
    text = quote(code.shown) if code else ""
    found: list[Destination] = []
    if settings.twilio_enabled and settings.twilio_sms_from:
        number = settings.twilio_sms_from
        found.append(Destination("sms", _readable(number),
                                 f"sms:{number}?&body={text}" if code else None))
    elif settings.twilio_enabled and settings.twilio_messaging_service_sid:
        found.append(Destination("sms", "the charity's SMS number"))
    if settings.twilio_enabled and settings.twilio_whatsapp_from:
        number = settings.twilio_whatsapp_from.removeprefix("whatsapp:")
        found.append(Destination("whatsapp", _readable(number),
                                 f"https://wa.me/{number.lstrip('+')}?text={text}"
                                 if code else None))
    if settings.telegram_bot_token:
        if telegram_username:
            found.append(Destination(
                "telegram", f"@{telegram_username}",
                f"https://t.me/{telegram_username}?start={code.start_payload}"
                if code else None))
        else:
            found.append(Destination("telegram", "the charity's Telegram bot"))
    return found


def _readable(number: str) -> str:
    """+447700900000 as people write it: +44 7700 900000."""
    try:
        parsed = phonenumbers.parse(number, "GB")
    except phonenumbers.NumberParseException:
        return number
    return str(phonenumbers.format_number(parsed,
                                          phonenumbers.PhoneNumberFormat.INTERNATIONAL))


@bp.app_context_processor
def test_send_helpers() -> dict[str, Any]:
    """`test_send_reach(channels)` for the "Send a test to me" button (asked only when
    shown)."""
    return {"test_send_reach": reach}


def reach(channels: list[str]) -> Reach:
    """Who a test on `channels` (none: every channel) reaches, for the logged-in viewer."""
    rt = runtime()
    with rt.sessions() as session:
        mine = [a for a in staff_links.addresses(session, me().id)
                if not channels or a.channel in channels]
    operator = [m for m in rt.config.staff.test_group
                if not channels or m.split(":", 1)[0] in channels]
    return Reach([a for a in mine if a.ready], [a for a in mine if not a.ready],
                 len(operator), " or ".join(CHANNEL_NAMES[c] for c in channels))
