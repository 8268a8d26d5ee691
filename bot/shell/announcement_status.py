"""Why an announcement is where it is, in words staff use, each with a code for programs.

An announcement that is not moving says why, on its page and in the API (DESIGN §9): held
by quiet hours, a channel this server has no sender for, no worker running, paused,
scheduled, waiting for a second approval, recipients WhatsApp's 24-hour window shuts out.
Once it is sending it also says why some recipients did not get it: the provider's refusal
codes and the product's own skip reasons, counted per code.

`explain` decides, purely, from what it is given: the clock, config.toml, the environment's
settings and what the outbox holds (`Outbox`). `status_of` gathers those facts: one GROUP
BY over the announcement's deliveries (before it starts: whom it would reach), plus the
workers' heartbeats, the pause in the audit log and the WhatsApp window where they matter.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import broadcast
from models import Announcement, AuditEntry, Delivery, Identity, Worker
from models.broadcast import DONE, OPEN

HOLD = "hold"        # why it, or part of it, is not being sent
OUTCOME = "outcome"  # why some recipients did not get it
# Workers beat every 2 s and are written off after 15 s of silence: a minute without a
# heartbeat means none is running.
WORKER_SILENT = dt.timedelta(seconds=60)
NOT_STARTED = ("draft", "approved", "scheduled")  # no deliveries yet
UNFINISHED = (*NOT_STARTED, "sending", "paused")
STATES = (*OPEN, *DONE)
CHANNEL_NAMES: dict[str, str] = {Channel.SMS: "SMS", Channel.WHATSAPP: "WhatsApp",
                                 Channel.TELEGRAM: "Telegram"}

# What a provider's refusal code means, as (label, what it means for the charity).
TWILIO_CODES = {
    "20003": ("Twilio refused our credentials",
              "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN on the server"),
    "21211": ("not a valid phone number", "the number is wrongly formed or does not exist"),
    "21408": ("cannot send to that country",
              "the Twilio account is not allowed to send there (Twilio's geographic "
              "permissions)"),
    "21606": ("our number cannot send SMS",
              "the sender number (TWILIO_SMS_FROM) cannot send text messages: check it in "
              "Twilio"),
    "21610": ("unsubscribed at the phone company",
              "the person texted STOP to our number, so Twilio will not send to them; they "
              "get nothing more from us"),
    "21612": ("cannot route to this number",
              "Twilio cannot carry a message from our number to this one"),
    "21614": ("not a mobile number", "the number cannot receive text messages"),
    "30003": ("phone unreachable",
              "the phone was off or out of signal for too long; a later message may arrive"),
    "30004": ("message blocked", "the person, or their phone company, blocks messages from us"),
    "30005": ("unknown number", "the number does not exist or is no longer in use"),
    "30006": ("landline or unreachable carrier",
              "the number is a landline, or its phone company cannot take text messages"),
    "30007": ("carrier filtering", "the phone company held the message back as likely spam"),
    "30008": ("unknown error at the phone company",
              "the phone company gave no reason; a later message may arrive"),
    "63003": ("not on WhatsApp", "the number has no WhatsApp account"),
    "63016": ("outside WhatsApp's 24-hour window",
              "the person had not written to us in the last 24 hours and there was no "
              "approved template to send instead"),
    "63024": ("not on WhatsApp", "WhatsApp says the number cannot receive messages"),
}
TELEGRAM_CODES = {
    "403": ("blocked the bot",
            "the person blocked the bot or deleted their Telegram account; they get nothing "
            "more from us"),
    "400 chat not found": ("chat not found",
                           "the chat no longer exists, or the person never started the bot"),
}
# Failures on our side of the provider, whatever the channel.
TRANSPORT_CODES = {
    "connection": ("could not connect", "the provider could not be reached"),
    "network": ("could not connect", "the provider could not be reached"),
    "timeout": ("no answer in time",
                "it may have arrived; in doubt it is not sent again"),
}
# The product's own reasons for not sending (deliveries.error_code), whatever the channel.
SKIP_REASONS = {
    "opted_out": ("said STOP", "they asked for no more messages before it reached them"),
    "unreachable": ("unreachable",
                    "an earlier message to them failed for good (they blocked the bot, or the "
                    "number stopped working)"),
    "frequency_cap": ("enough messages already",
                      "they had already had {cap} announcements in {days} days (config.toml "
                      "[broadcast] frequency_cap)"),
    "cancelled": ("cancelled", "the announcement was cancelled before it reached them"),
    "worker_lost": ("in doubt",
                    "the sending process stopped in the middle of sending, so whether it "
                    "arrived is unknown, and it is not sent again"),
}


@dataclass(frozen=True)
class Explanation:
    """One reason, in a sentence or two for staff (`text`), a few words for a list
    (`short`), and a `code` for programs."""

    code: str
    text: str
    short: str
    kind: str = HOLD
    count: int | None = None
    channel: str | None = None
    until: dt.datetime | None = None
    error_code: str | None = None  # the provider's code, or our own skip reason
    state: str | None = None       # the deliveries' state, for an outcome

    def as_dict(self) -> dict[str, Any]:
        """As JSON: only the fields that apply."""
        data: dict[str, Any] = {"code": self.code, "kind": self.kind, "text": self.text,
                                "short": self.short}
        for name in ("count", "channel", "error_code", "state"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.until is not None:
            data["until"] = self.until.isoformat()
        return data


@dataclass(frozen=True)
class Outbox:
    """What explain() needs to know of an announcement's recipients and of the workers."""

    counts: Mapping[str, int] = field(default_factory=dict)   # deliveries by state
    # per channel, recipients not yet sent to (before it starts: everyone it would reach)
    waiting: Mapping[str, int] = field(default_factory=dict)
    whatsapp_outside_window: int = 0                           # of the WhatsApp ones waiting
    # (state, channel, error code) -> deliveries that failed, were skipped or are in doubt
    refusals: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    worker_seen: dt.datetime | None = None                     # the latest heartbeat
    paused: tuple[str, dt.datetime] | None = None              # by whom, when


@dataclass(frozen=True)
class AnnouncementStatus:
    status: str
    counts: dict[str, int]  # deliveries by state, every state of models.broadcast
    explanations: tuple[Explanation, ...]

    @property
    def holds(self) -> list[Explanation]:
        return [e for e in self.explanations if e.kind == HOLD]

    @property
    def outcomes(self) -> list[Explanation]:
        return [e for e in self.explanations if e.kind == OUTCOME]

    @property
    def moving(self) -> bool:
        """Sending, with nothing holding it back."""
        return self.status == "sending" and not self.holds

    def as_dict(self) -> dict[str, Any]:
        """For the API: the states of DESIGN §7 (a `claimed` row is still pending)."""
        counts = {s: n for s, n in self.counts.items() if s != "claimed"}
        counts["pending"] = self.counts.get("pending", 0) + self.counts.get("claimed", 0)
        return {"status": self.status, "counts": counts, "total": sum(counts.values()),
                "moving": self.moving,
                "explanations": [e.as_dict() for e in self.explanations]}


# Quiet hours ---------------------------------------------------------------------------------

def quiet_until(moment: dt.datetime, config: Config) -> dt.datetime | None:
    """When the quiet hours `moment` falls in end (UTC), or None outside them. The worker
    holds announcements exactly then (bot.entry.worker.in_quiet_hours asks this)."""
    quiet = config.broadcast.quiet_hours
    if quiet is None:
        return None
    zone = zoneinfo.ZoneInfo(config.broadcast.timezone)
    local = moment.astimezone(zone)
    start, end = quiet
    clock = local.time().replace(tzinfo=None)
    if start > end and clock >= start:        # the evening part of a night
        day = local.date() + dt.timedelta(days=1)
    elif (start > end and clock < end) or start <= clock < end:
        day = local.date()
    else:
        return None
    return dt.datetime.combine(day, end, zone).astimezone(dt.UTC)


@dataclass(frozen=True)
class Start:
    """When an approval made now would start sending, and the warning if quiet hours hold
    it."""

    at: dt.datetime
    warning: Explanation | None


def approval_start(now: dt.datetime, config: Config, at: dt.datetime | None = None) -> Start:
    """Approving now (or for `at`): when sending starts, and a warning when that is held by
    quiet hours, worded for the person about to approve."""
    moment = at if at is not None and at > now else now
    until = quiet_until(moment, config)
    if until is None:
        return Start(moment, None)
    if moment == now:
        text = (f"It is {_clock(now, config)} in {_place(config)}, within quiet hours "
                f"({_quiet_label(config)}). If you approve now it will start sending at "
                f"{when_in_words(until, now, config)}.")
    else:
        text = (f"The time chosen, {when_in_words(moment, now, config)}, is within quiet "
                f"hours ({_quiet_label(config)}) in {_place(config)}: it will start sending "
                f"at {when_in_words(until, now, config)}.")
    return Start(until, Explanation("quiet_hours", text, _quiet_short(until, config),
                                    until=until))


# Explanations --------------------------------------------------------------------------------

def explain(announcement: Announcement, outbox: Outbox, now: dt.datetime, config: Config,
            settings: Settings) -> list[Explanation]:
    """Every reason that applies to this announcement now, what holds it first."""
    status = announcement.status
    found: list[Explanation] = []
    if status == "draft":
        found.append(_awaiting_approval(announcement, config))
    elif status == "paused":
        found.append(_paused(outbox.paused, now, config))
    elif status == "scheduled" and announcement.scheduled_at is not None:
        found.append(_scheduled(announcement.scheduled_at, now, config))
    if status in UNFINISHED and any(outbox.waiting.values()):
        quiet = _quiet_hours(announcement, now, config)
        if quiet is not None:
            found.append(quiet)
        if status in ("scheduled", "sending") and (
                outbox.worker_seen is None or now - outbox.worker_seen > WORKER_SILENT):
            found.append(_no_worker(status, outbox.worker_seen, now, config))
        found += _no_sender(outbox.waiting, settings)
        if outbox.whatsapp_outside_window and not announcement.whatsapp_content_sid:
            found.append(_whatsapp_window(outbox.whatsapp_outside_window, status))
    return found + _refusals(outbox.refusals, config)


def _awaiting_approval(announcement: Announcement, config: Config) -> Explanation:
    """The second-approval rule as broadcast.approval_refusal applies it, in words."""
    if config.console.require_second_approval and not announcement.test_group:
        who = "its author" + (" and its last editor" if announcement.edited_by else "")
        return Explanation("awaiting_second_approval",
                           f"Waiting for an admin to approve it: someone other than {who}.",
                           "waiting for a second approval")
    return Explanation("awaiting_approval", "Waiting for an admin to approve it.",
                       "waiting for approval")


def _paused(paused: tuple[str, dt.datetime] | None, now: dt.datetime,
            config: Config) -> Explanation:
    by = f" by {paused[0]}, {when_in_words(paused[1], now, config)}" if paused else ""
    return Explanation("paused", f"Paused{by}: nothing more is sent until an admin resumes "
                       "it.", "paused")


def _scheduled(at: dt.datetime, now: dt.datetime, config: Config) -> Explanation:
    return Explanation("scheduled", f"Scheduled for {when_in_words(at, now, config)} "
                       f"({_place(config)} time): nothing is sent before then.",
                       f"scheduled for {_local(at, config):%d %b %H:%M}", until=at)


def _quiet_hours(announcement: Announcement, now: dt.datetime,
                 config: Config) -> Explanation | None:
    """Quiet hours that hold it now, or, for a scheduled one, at its time."""
    if announcement.status == "paused":
        return None  # the pause holds it; quiet hours may be over by the time it resumes
    if announcement.status == "draft":
        return approval_start(now, config).warning
    scheduled = announcement.scheduled_at
    if announcement.status == "scheduled" and scheduled is not None and scheduled > now:
        return approval_start(now, config, scheduled).warning
    until = quiet_until(now, config)
    if until is None:
        return None
    return Explanation("quiet_hours", f"It is {_clock(now, config)} in {_place(config)}, "
                       f"within quiet hours ({_quiet_label(config)}): sending waits until "
                       f"{when_in_words(until, now, config)}.", _quiet_short(until, config),
                       until=until)


def _no_worker(status: str, seen: dt.datetime | None, now: dt.datetime,
               config: Config) -> Explanation:
    since = ("No sending process is running" if seen is None else
             f"No sending process has been heard from since {when_in_words(seen, now, config)}")
    effect = ("it will not start at its time" if status == "scheduled"
              else "nothing is being sent")
    return Explanation("no_worker", f"{since}, so {effect}. Ask whoever runs the server to "
                       "start one (petitionbot run, or petitionbot worker).",
                       "no worker running")


def missing_senders(settings: Settings) -> dict[str, str]:
    """channel -> why this server cannot send on it (a code), for each such channel; as
    bot.entry.cli builds the worker's senders from the same settings."""
    missing: dict[str, str] = {}
    if not settings.twilio_enabled:
        missing[Channel.SMS] = missing[Channel.WHATSAPP] = "no_twilio_credentials"
    else:
        if not (settings.twilio_sms_from or settings.twilio_messaging_service_sid):
            missing[Channel.SMS] = "no_sms_sender"
        if not settings.twilio_whatsapp_from:
            missing[Channel.WHATSAPP] = "no_whatsapp_sender"
    if not settings.telegram_bot_token:
        missing[Channel.TELEGRAM] = "no_telegram_bot"
    return missing


SENDER_WORDS = {  # code -> (what is missing, the variables that set it, a short label)
    "no_twilio_credentials": ("Twilio is not set up on this server",
                              "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", "Twilio not set up"),
    "no_sms_sender": ("No SMS sender is set up on this server",
                      "TWILIO_SMS_FROM or TWILIO_MESSAGING_SERVICE_SID", "no SMS sender"),
    "no_whatsapp_sender": ("No WhatsApp sender is set up on this server",
                           "TWILIO_WHATSAPP_FROM", "no WhatsApp sender"),
    "no_telegram_bot": ("No Telegram bot is set up on this server", "TELEGRAM_BOT_TOKEN",
                        "no Telegram bot"),
}
SET_UP = {"no_twilio_credentials": "it is"}  # "until one is" otherwise


def _no_sender(waiting: Mapping[str, int], settings: Settings) -> list[Explanation]:
    found = []
    for channel, code in missing_senders(settings).items():
        count = waiting.get(channel, 0)
        if not count:
            continue
        what, variables, short = SENDER_WORDS[code]
        found.append(Explanation(
            code, f"{what} ({variables}), so {_recipients(count, channel)} will not get it "
            f"until {SET_UP.get(code, 'one is')}. Ask whoever runs the server.", short,
            count=count, channel=channel))
    return found


def _whatsapp_window(count: int, status: str) -> Explanation:
    advice = (" Add a template (its Content SID) to reach them." if status == "draft"
              else "")
    people = _recipients(count, Channel.WHATSAPP)
    return Explanation(
        "whatsapp_window",
        f"{people} {'has' if count == 1 else 'have'} not written to us in the last 24 hours "
        "and there is no approved template, so WhatsApp will not let us message them: they "
        f"will be skipped.{advice}",
        f"{count:,} outside WhatsApp's 24-hour window", count=count,
        channel=Channel.WHATSAPP)


def meaning(channel: str, code: str, config: Config) -> tuple[str, str]:
    """(label, what it means) of a delivery's error code, a provider's or our own."""
    if code in SKIP_REASONS:
        label, means = SKIP_REASONS[code]
        return label, means.format(cap=config.broadcast.frequency_cap,
                                   days=config.broadcast.frequency_days)
    if code.lower() in TRANSPORT_CODES:
        return TRANSPORT_CODES[code.lower()]
    if channel == Channel.TELEGRAM:
        said = code.partition(" ")[2]  # "400 Chat not found": Telegram's own words
        return TELEGRAM_CODES.get(code.lower()) or (
            "refused by Telegram", f"Telegram said: {said}" if said else "Telegram gave no "
            "reason")
    return TWILIO_CODES.get(code) or (
        "refused by Twilio",
        "look the code up in Twilio's error dictionary (twilio.com/docs/api/errors)")


def _source(channel: str | None, code: str) -> str:
    """", Twilio code 30007": whose code it is, for a provider's (not our own reasons)."""
    if channel is None or code.lower() in TRANSPORT_CODES:
        return ""
    provider = "Telegram" if channel == Channel.TELEGRAM else "Twilio"
    return f", {provider} code {code.split(' ', 1)[0]}"


FATES = {"failed": ("failed", "failed"), "skipped": ("was skipped", "were skipped"),
         "unknown": ("may not have arrived", "may not have arrived")}


def _refusals(refusals: Mapping[tuple[str, str, str], int],
              config: Config) -> list[Explanation]:
    """One outcome per reason, the most frequent first (then failed before skipped): our
    own reasons whatever the channel ("12 recipients were skipped"), a provider's per
    channel ("3 SMS messages failed")."""
    merged: dict[tuple[str, str | None, str], int] = {}
    for (state, channel, code), count in refusals.items():
        key = (state, None if code in SKIP_REASONS else channel, code)
        merged[key] = merged.get(key, 0) + count
    found = []
    for (state, where, code), count in sorted(
            merged.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or "", kv[0][2])):
        label, means = meaning(where or "", code, config)
        one, many = FATES.get(state, (state, state))
        noun = (f"{CHANNEL_NAMES.get(where, where)} message" if where is not None
                else "message" if state == "unknown" else "recipient")
        who = f"{count:,} {noun}{'' if count == 1 else 's'}"
        found.append(Explanation(
            "skipped_by_us" if where is None else "provider_refused",
            f"{who} {one if count == 1 else many} ({label}{_source(where, code)}): "
            f"{means}.",
            f"{count:,} {label}", kind=OUTCOME, count=count, channel=where,
            error_code=code, state=state))
    return found


# Words for times and people -------------------------------------------------------------------

def _local(moment: dt.datetime, config: Config) -> dt.datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(config.broadcast.timezone))


def _clock(moment: dt.datetime, config: Config) -> str:
    return f"{_local(moment, config):%H:%M}"


def when_in_words(moment: dt.datetime, now: dt.datetime, config: Config) -> str:
    """ "08:00 today", "08:00 tomorrow", "09:00 on Monday 7 December" (local time)."""
    local, today = _local(moment, config), _local(now, config).date()
    if local.date() == today:
        day = "today"
    elif local.date() == today + dt.timedelta(days=1):
        day = "tomorrow"
    else:
        day = f"on {local:%A} {local.day} {local:%B}"
        if local.year != today.year:
            day += f" {local.year}"
    return f"{local:%H:%M} {day}"


def _place(config: Config) -> str:
    """ "Europe/London" -> "London": where the campaign's clock is."""
    return config.broadcast.timezone.rsplit("/", 1)[-1].replace("_", " ")


def _quiet_label(config: Config) -> str:
    quiet = config.broadcast.quiet_hours
    return "" if quiet is None else f"{quiet[0]:%H:%M}-{quiet[1]:%H:%M}"


def _quiet_short(until: dt.datetime, config: Config) -> str:
    return f"quiet hours until {_clock(until, config)}"


def _recipients(count: int, channel: str) -> str:
    return f"{count:,} {CHANNEL_NAMES.get(channel, channel)} " \
           f"recipient{'' if count == 1 else 's'}"


# Reading the facts ----------------------------------------------------------------------------

def status_of(session: Session, announcement: Announcement, now: dt.datetime, config: Config,
              settings: Settings) -> AnnouncementStatus:
    """The announcement's status, its deliveries by state, and every explanation."""
    outbox = read_outbox(session, announcement, now, config)
    counts = {state: outbox.counts.get(state, 0) for state in STATES}
    return AnnouncementStatus(announcement.status, counts,
                              tuple(explain(announcement, outbox, now, config, settings)))


def read_outbox(session: Session, announcement: Announcement, now: dt.datetime,
                config: Config) -> Outbox:
    """The facts explain() needs, read in as few small queries as the status allows."""
    status = announcement.status
    worker_seen = (session.scalar(select(func.max(Worker.last_seen)))
                   if status in ("scheduled", "sending") else None)
    if status in NOT_STARTED:
        ahead = broadcast.preview(session, config, announcement, now)
        return Outbox(waiting=ahead.recipients,
                      whatsapp_outside_window=ahead.whatsapp_outside_window,
                      worker_seen=worker_seen)
    counts: dict[str, int] = {}
    waiting: dict[str, int] = {}
    refusals: dict[tuple[str, str, str], int] = {}
    for state, channel, code, count in session.execute(
            select(Delivery.status, Delivery.channel, Delivery.error_code, func.count())
            .where(Delivery.announcement_id == announcement.id)
            .group_by(Delivery.status, Delivery.channel, Delivery.error_code)):
        counts[state] = counts.get(state, 0) + count
        if state in ("pending", "claimed"):
            waiting[channel] = waiting.get(channel, 0) + count
        elif state in ("failed", "skipped", "unknown") and code:
            refusals[(state, channel, code)] = count
    outside = 0
    if (status in ("sending", "paused") and waiting.get(Channel.WHATSAPP)
            and not announcement.whatsapp_content_sid):
        outside = session.scalar(
            select(func.count()).select_from(Delivery)
            .join(Identity, Identity.id == Delivery.identity_id)
            .where(Delivery.announcement_id == announcement.id,
                   Delivery.channel == Channel.WHATSAPP,
                   Delivery.status.in_(("pending", "claimed")),
                   or_(Identity.last_inbound_at.is_(None),
                       Identity.last_inbound_at < now - broadcast.WHATSAPP_WINDOW))) or 0
    paused = None
    if status == "paused":
        row = session.execute(
            select(AuditEntry.actor, AuditEntry.at)
            .where(AuditEntry.action == "announcement.pause",
                   AuditEntry.target == f"announcement:{announcement.id}")
            .order_by(AuditEntry.id.desc()).limit(1)).first()
        paused = (row.actor, row.at) if row else None
    return Outbox(counts=counts, waiting=waiting, whatsapp_outside_window=outside,
                  refusals=refusals, worker_seen=worker_seen, paused=paused)


__all__ = ["HOLD", "OUTCOME", "AnnouncementStatus", "Explanation", "Outbox", "Start",
           "approval_start", "explain", "meaning", "missing_senders", "quiet_until",
           "read_outbox", "status_of", "when_in_words"]
