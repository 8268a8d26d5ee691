"""An announcement that is not moving says why (bot/shell/announcement_status.py): quiet
hours until when, a channel this server has no sender for, no worker running, paused,
scheduled, a second approval awaited, WhatsApp's 24-hour window; and why some people did
not get it, per provider code. Every clock here is fixed: London, Saturday 5 December 2026.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bot.entry.worker import in_quiet_hours
from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import broadcast
from bot.shell.announcement_status import (
    HOLD,
    OUTCOME,
    AnnouncementStatus,
    approval_start,
    meaning,
    quiet_until,
    status_of,
)
from bot.shell.service import Service
from bot.shell.staff import audit
from models import Announcement, Delivery, Identity, Subscription, Supporter, Worker
from models.supporters import petition_id

LONDON = zoneinfo.ZoneInfo("Europe/London")
NIGHT = dt.datetime(2026, 12, 5, 22, 40, tzinfo=LONDON).astimezone(dt.UTC)
NOON = dt.datetime(2026, 12, 5, 12, 0, tzinfo=LONDON).astimezone(dt.UTC)
TOMORROW_8 = dt.datetime(2026, 12, 6, 8, 0, tzinfo=LONDON).astimezone(dt.UTC)
EDITOR, ADMIN = "editor@planets.example", "admin@planets.example"
TEMPLATE = "HX" + "c" * 32


def at_london(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=LONDON).astimezone(dt.UTC)


@pytest.fixture
def petition(service: Service, sessions: sessionmaker[Session]) -> int:
    """The shipped petition, in the database."""
    with sessions() as session:
        found = petition_id(session, "sirt")
    assert found is not None
    return found


def subscribe(sessions: sessionmaker[Session], petition: int, channel: str, address: str,
              wrote: dt.datetime | None = NIGHT) -> int:
    """Someone who gets updates on `channel`, who last wrote to us at `wrote`."""
    with sessions.begin() as session:
        person = Supporter(created_at=NIGHT)
        session.add(person)
        session.flush()
        identity = Identity(supporter_id=person.id, channel=channel, address=address,
                            last_inbound_at=wrote, created_at=NIGHT)
        session.add(identity)
        session.flush()
        session.add(Subscription(identity_id=identity.id, petition_id=petition,
                                 created_at=NIGHT))
        return identity.id


@pytest.fixture
def audience(sessions: sessionmaker[Session], petition: int) -> None:
    """Two SMS subscribers and one on Telegram."""
    subscribe(sessions, petition, "sms", "+447700900201")
    subscribe(sessions, petition, "sms", "+447700900202")
    subscribe(sessions, petition, "telegram", "4201")


def draft(sessions: sessionmaker[Session], config: Config, now: dt.datetime = NIGHT,
          approve_at: dt.datetime | None = None, approve: bool = False) -> int:
    with sessions.begin() as session:
        made = broadcast.create(session, config, "sirt", "The hand-in is on Friday.", EDITOR,
                                now=now)
        if approve or approve_at:
            broadcast.approve(session, config, made, ADMIN, now, at=approve_at)
        return made.id


def explained(sessions: sessionmaker[Session], announcement_id: int, config: Config,
              settings: Settings, now: dt.datetime = NIGHT) -> AnnouncementStatus:
    with sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        return status_of(session, found, now, config, settings)


def by_code(status: AnnouncementStatus) -> dict[str, str]:
    return {e.code: e.text for e in status.explanations}


def without(config: Config, quiet: bool = True) -> Config:
    """The config with quiet hours off."""
    return dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=None if quiet else config.broadcast.quiet_hours))


# Quiet hours ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("local", "ends"), [
    ((2026, 12, 5, 20, 59), None),
    ((2026, 12, 5, 21, 0), (2026, 12, 6, 8, 0)),
    ((2026, 12, 5, 23, 59), (2026, 12, 6, 8, 0)),
    ((2026, 12, 6, 0, 0), (2026, 12, 6, 8, 0)),
    ((2026, 12, 6, 7, 59), (2026, 12, 6, 8, 0)),
    ((2026, 12, 6, 8, 0), None),
    ((2026, 3, 28, 23, 0), (2026, 3, 29, 8, 0)),   # the night the clocks go forward
    ((2026, 10, 24, 22, 0), (2026, 10, 25, 8, 0)),  # and back
    ((2026, 7, 1, 21, 30), (2026, 7, 2, 8, 0)),
])
def test_quiet_hours_end_when_the_worker_starts_sending_again(
        config: Config, local: tuple[int, ...], ends: tuple[int, ...] | None) -> None:
    moment = at_london(*local)
    until = quiet_until(moment, config)
    assert until == (at_london(*ends) if ends else None)
    assert (until is not None) is in_quiet_hours(moment, config)  # the worker's own rule


def test_quiet_hours_agree_with_the_worker_all_year_and_in_daytime_windows(
        config: Config) -> None:
    daytime = dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=(dt.time(9), dt.time(17))))
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    while moment.year == 2026:
        for each in (config, daytime, without(config)):
            assert (quiet_until(moment, each) is not None) is in_quiet_hours(moment, each)
        moment += dt.timedelta(minutes=53)


def test_approving_at_night_says_the_local_time_and_when_it_starts(config: Config) -> None:
    start = approval_start(NIGHT, config)
    assert start.at == TOMORROW_8
    assert start.warning is not None
    assert start.warning.text == (
        "It is 22:40 in London, within quiet hours (21:00-08:00). If you approve now it will "
        "start sending at 08:00 tomorrow.")
    assert (start.warning.code, start.warning.until) == ("quiet_hours", TOMORROW_8)
    after_midnight = approval_start(at_london(2026, 12, 6, 1, 15), config)
    assert after_midnight.warning is not None
    assert after_midnight.warning.text.endswith("start sending at 08:00 today.")


def test_a_time_chosen_within_quiet_hours_warns_too_and_daytime_does_not(
        config: Config) -> None:
    late = approval_start(NOON, config, at_london(2026, 12, 7, 23, 0))
    assert late.at == at_london(2026, 12, 8, 8, 0)
    assert late.warning is not None and late.warning.text == (
        "The time chosen, 23:00 on Monday 7 December, is within quiet hours (21:00-08:00) in "
        "London: it will start sending at 08:00 on Tuesday 8 December.")
    assert approval_start(NOON, config) == approval_start(NOON, config, None)
    assert approval_start(NOON, config).warning is None
    assert approval_start(NOON, config).at == NOON
    assert approval_start(NOON, config, at_london(2026, 12, 7, 9, 0)).warning is None
    assert approval_start(NIGHT, without(config)).warning is None


# What holds it ---------------------------------------------------------------------------------

def test_approved_at_night_without_an_sms_sender_it_says_why_in_words(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    no_sms = dataclasses.replace(settings, twilio_sms_from="", twilio_messaging_service_sid="")
    aid = draft(sessions, config, approve=True)
    status = explained(sessions, aid, config, no_sms)
    assert status.status == "sending" and not status.moving
    assert status.counts["pending"] == 3
    words = by_code(status)
    assert words["quiet_hours"] == ("It is 22:40 in London, within quiet hours (21:00-08:00): "
                                    "sending waits until 08:00 tomorrow.")
    assert words["no_sms_sender"] == (
        "No SMS sender is set up on this server (TWILIO_SMS_FROM or "
        "TWILIO_MESSAGING_SERVICE_SID), so 2 SMS recipients will not get it until one is. "
        "Ask whoever runs the server.")
    assert words["no_telegram_bot"].startswith("No Telegram bot is set up on this server "
                                               "(TELEGRAM_BOT_TOKEN), so 1 Telegram recipient")
    assert words["no_worker"].startswith("No sending process is running, so nothing is "
                                         "being sent.")
    quiet = status.holds[0]
    assert (quiet.code, quiet.until, quiet.short) == ("quiet_hours", TOMORROW_8,
                                                     "quiet hours until 08:00")
    sms = next(e for e in status.holds if e.code == "no_sms_sender")
    assert (sms.count, sms.channel, sms.short) == (2, "sms", "no SMS sender")
    assert status.outcomes == []


def test_with_every_sender_and_a_live_worker_in_the_day_it_is_moving(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    everything = dataclasses.replace(settings, telegram_bot_token="123:abc")
    aid = draft(sessions, config, now=NOON, approve=True)
    with sessions.begin() as session:
        session.add(Worker(id="worker-1", started_at=NOON, last_seen=NOON))
    status = explained(sessions, aid, config, everything, now=NOON + dt.timedelta(seconds=5))
    assert status.moving and status.explanations == ()
    later = NOON + dt.timedelta(minutes=10)  # the worker has not beaten since
    assert by_code(explained(sessions, aid, config, everything, now=later))["no_worker"] == (
        "No sending process has been heard from since 12:00 today, so nothing is being sent. "
        "Ask whoever runs the server to start one (petitionbot run, or petitionbot worker).")


def test_without_twilio_credentials_sms_and_whatsapp_say_so(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        petition: int) -> None:
    subscribe(sessions, petition, "sms", "+447700900203")
    subscribe(sessions, petition, "whatsapp", "+447700900204")
    bare = dataclasses.replace(settings, twilio_account_sid="", twilio_auth_token="")
    status = explained(sessions, draft(sessions, config, now=NOON, approve=True), config,
                       bare, now=NOON)
    missing = [(e.channel, e.count) for e in status.holds if e.code == "no_twilio_credentials"]
    assert missing == [("sms", 1), ("whatsapp", 1)]
    assert "Twilio is not set up on this server (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)" \
        in status.holds[-1].text


def test_whatsapp_recipients_outside_the_window_without_a_template_are_counted(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        petition: int) -> None:
    subscribe(sessions, petition, "whatsapp", "+447700900205", wrote=NOON - dt.timedelta(hours=1))
    subscribe(sessions, petition, "whatsapp", "+447700900206", wrote=NOON - dt.timedelta(days=2))
    subscribe(sessions, petition, "whatsapp", "+447700900207", wrote=None)
    waiting = draft(sessions, config, now=NOON)
    window = next(e for e in explained(sessions, waiting, config, settings, NOON).holds
                  if e.code == "whatsapp_window")
    assert window.count == 2
    assert window.text == (
        "2 WhatsApp recipients have not written to us in the last 24 hours and there is no "
        "approved template, so WhatsApp will not let us message them: they will be skipped. "
        "Add a template (its Content SID) to reach them.")
    sending = draft(sessions, config, now=NOON, approve=True)
    assert by_code(explained(sessions, sending, config, settings, NOON))[
        "whatsapp_window"].endswith("they will be skipped.")
    with sessions.begin() as session:
        templated = broadcast.create(session, config, "sirt", "With a template.", EDITOR,
                                     now=NOON, content_sid=TEMPLATE).id
    assert "whatsapp_window" not in by_code(explained(sessions, templated, config, settings,
                                                      NOON))


def test_a_paused_announcement_says_by_whom_and_when(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    aid = draft(sessions, config, now=NOON, approve=True)
    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.pause(session, found)
        audit(session, ADMIN, "announcement.pause", f"announcement:{aid}", {}, NOON)
    status = explained(sessions, aid, config, settings, NIGHT)
    assert status.holds[0].text == (f"Paused by {ADMIN}, 12:00 today: nothing more is sent "
                                    "until an admin resumes it.")
    assert "quiet_hours" not in by_code(status)  # the pause holds it, whatever the hour
    assert "no_worker" not in by_code(status)


def test_a_scheduled_one_says_when_and_that_quiet_hours_hold_it_then(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    aid = draft(sessions, config, now=NOON, approve_at=at_london(2026, 12, 6, 23, 0))
    words = by_code(explained(sessions, aid, config, settings, NOON))
    assert words["scheduled"] == ("Scheduled for 23:00 tomorrow (London time): nothing is "
                                  "sent before then.")
    assert words["quiet_hours"] == (
        "The time chosen, 23:00 tomorrow, is within quiet hours (21:00-08:00) in London: it "
        "will start sending at 08:00 on Monday 7 December.")
    assert "no_worker" in words  # nothing would start it at its time


def test_a_draft_waits_for_someone_other_than_its_author_and_last_editor(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    aid = draft(sessions, config, now=NOON)
    assert explained(sessions, aid, config, settings, NOON).holds[0].text == (
        "Waiting for an admin to approve it: someone other than its author.")
    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.edit(session, found, "Changed words.", broadcast.Audience(), ADMIN)
    first = explained(sessions, aid, config, settings, NOON).holds[0]
    assert (first.code, first.text, first.short) == (
        "awaiting_second_approval",
        "Waiting for an admin to approve it: someone other than its author and its last "
        "editor.", "waiting for a second approval")
    relaxed = dataclasses.replace(config, console=dataclasses.replace(
        config.console, require_second_approval=False))
    assert explained(sessions, aid, relaxed, settings, NOON).holds[0].code == \
        "awaiting_approval"


def test_a_sent_or_cancelled_announcement_has_nothing_holding_it(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        audience: None) -> None:
    aid = draft(sessions, config, approve=True)
    with sessions.begin() as session:
        session.execute(update(Delivery).where(Delivery.announcement_id == aid)
                        .values(status="delivered"))
        session.execute(update(Announcement).where(Announcement.id == aid)
                        .values(status="sent"))
    status = explained(sessions, aid, config, settings)
    assert (status.explanations, status.counts["delivered"]) == ((), 3)
    discarded = draft(sessions, config)
    with sessions.begin() as session:
        found = session.get(Announcement, discarded)
        assert found is not None
        broadcast.cancel(session, found, EDITOR, NIGHT)
    assert explained(sessions, discarded, config, settings).explanations == ()


# Why some people did not get it --------------------------------------------------------------

def test_refusals_are_counted_per_code_with_what_they_mean(
        config: Config, settings: Settings, sessions: sessionmaker[Session],
        petition: int) -> None:
    people = [subscribe(sessions, petition, "sms", f"+4477009003{n:02}") for n in range(6)]
    people += [subscribe(sessions, petition, "telegram", f"43{n}") for n in range(2)]
    aid = draft(sessions, config, now=NOON, approve=True)
    outcomes = [("failed", "30007"), ("failed", "30007"), ("failed", "21610"),
                ("skipped", "opted_out"), ("skipped", "frequency_cap"), ("sent", None),
                ("failed", "403"), ("skipped", "opted_out")]
    with sessions.begin() as session:
        for identity, (state, code) in zip(people, outcomes, strict=True):
            session.execute(update(Delivery).where(
                Delivery.announcement_id == aid, Delivery.identity_id == identity)
                .values(status=state, error_code=code))
    status = explained(sessions, aid, config, settings, NOON)
    assert status.holds == []  # nothing left to send
    assert [(e.code, e.error_code, e.count, e.channel, e.kind) for e in status.outcomes] == [
        ("provider_refused", "30007", 2, "sms", OUTCOME),
        ("skipped_by_us", "opted_out", 2, None, OUTCOME),  # an SMS and a Telegram one
        ("provider_refused", "21610", 1, "sms", OUTCOME),
        ("provider_refused", "403", 1, "telegram", OUTCOME),
        ("skipped_by_us", "frequency_cap", 1, None, OUTCOME),
    ]
    texts = [e.text for e in status.outcomes]
    assert texts[0] == ("2 SMS messages failed (carrier filtering, Twilio code 30007): the "
                        "phone company held the message back as likely spam.")
    assert texts[1] == ("2 recipients were skipped (said STOP): they asked for no more "
                        "messages before it reached them.")
    assert texts[4] == ("1 recipient was skipped (enough messages already): they had already "
                        "had 3 announcements in 7 days (config.toml [broadcast] "
                        "frequency_cap).")
    assert texts[3].startswith("1 Telegram message failed (blocked the bot, Telegram code "
                               "403): the person blocked the bot")
    assert status.counts["failed"] == 4 and status.as_dict()["counts"]["skipped"] == 3


@pytest.mark.parametrize(("channel", "code", "words"), [
    ("sms", "21610", "texted STOP to our number"),
    ("sms", "21211", "not a valid phone number"),
    ("sms", "21408", "not allowed to send there"),
    ("sms", "21612", "cannot carry a message from our number"),
    ("sms", "30003", "off or out of signal"),
    ("sms", "30004", "blocks messages from us"),
    ("sms", "30005", "does not exist or is no longer in use"),
    ("sms", "30006", "landline"),
    ("sms", "30007", "likely spam"),
    ("sms", "30008", "gave no reason"),
    ("whatsapp", "63016", "last 24 hours"),
    ("whatsapp", "63003", "no WhatsApp account"),
    ("whatsapp", "63024", "cannot receive messages"),
    ("telegram", "403", "blocked the bot"),
    ("telegram", "400 Chat not found", "never started the bot"),
    ("telegram", "400 Message is too long", "Telegram said: Message is too long"),
    ("sms", "99999", "Twilio's error dictionary"),
    ("sms", "opted_out", "asked for no more messages"),
    ("telegram", "unreachable", "failed for good"),
    ("sms", "frequency_cap", "3 announcements in 7 days"),
    ("sms", "cancelled", "cancelled before it reached them"),
    ("whatsapp", "worker_lost", "whether it arrived is unknown"),
    ("sms", "connection", "could not be reached"),
])
def test_each_code_the_product_meets_has_a_meaning_in_words(
        config: Config, channel: str, code: str, words: str) -> None:
    label, means = meaning(channel, code, config)
    assert label and words in f"{label}: {means}"


def test_as_json_a_claimed_delivery_is_still_pending(config: Config) -> None:
    status = AnnouncementStatus("sending", {"pending": 2, "claimed": 3, "sending": 1,
                                            "sent": 4}, ())
    data = status.as_dict()
    assert data["counts"] == {"pending": 5, "sending": 1, "sent": 4}
    assert (data["total"], data["moving"], data["explanations"]) == (10, True, [])
    assert HOLD != OUTCOME
