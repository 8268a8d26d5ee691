"""The staff inbox in the console: the lists (flagged first, then the newest waiting), a
conversation's page (messages in order, notes set apart, what we hold, the reply box and
what the channel will do with the text), replies through the outbox, assign, notes, saved
replies, close, follow-ups of flagged messages; viewers read and never write; the waiting
count in the navigation and on the dashboard."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.core.gsm import segments
from bot.core.outcomes import Job, Result, SendResult
from bot.entry.worker import BroadcastWorker
from bot.infra.config import Config
from models import AuditEntry, Delivery, FollowUp, Identity, InboxConversation, SavedReply
from tests.integration.console_helpers import Browser, add_people, email_of, signer
from tests.integration.inbox_helpers import messages_of, waiting

AMIRA, BEN, CARYS = "+447700900123", "+447700900456", "+447700900789"
ROW = re.compile(r'data-conversation="(\d+)"')


@pytest.fixture
def app(app: Flask, tmp_path: Path) -> Flask:
    app.config.update(WTF_CSRF_ENABLED=False, STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    return app


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], app: Flask) -> dict[str, int]:
    return add_people(sessions)


def browser(app: Flask, role: str) -> Browser:
    b = Browser(app.test_client(), csrf=False)
    assert b.login(email_of(role)).status_code == 302
    return b


def page(b: Browser, path: str) -> str:
    response = b.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def order(html: str) -> list[int]:
    return [int(n) for n in ROW.findall(html)]


@dataclasses.dataclass
class Recorder:
    sent: list[Job] = dataclasses.field(default_factory=list)

    def send(self, job: Job) -> SendResult:
        self.sent.append(job)
        return SendResult(Result.SENT, provider_id=f"fake-{job.delivery_id}")


def send_outbox(config: Config, sessions: sessionmaker[Session]) -> dict[str, Recorder]:
    senders = {c: Recorder() for c in ("sms", "whatsapp", "telegram")}
    awake = dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=None))
    BroadcastWorker(awake, sessions, senders).run(until_idle=True)
    return senders


# The lists -----------------------------------------------------------------------------------

def test_the_inbox_lists_flagged_first_then_the_newest_waiting_with_the_count(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    older = waiting(sessions, AMIRA, "Is there a march?", minutes_ago=90)
    flagged = waiting(sessions, BEN, "I can't cope any more", flagged=True, minutes_ago=300)
    newer = waiting(sessions, "4242", "Thank you <b>all</b>", channel="telegram",
                    minutes_ago=3)
    viewer = browser(app, "viewer")
    html = page(viewer, "/staff/inbox")
    assert order(html) == [flagged, newer, older]
    assert f'class="flagged" data-conversation="{flagged}"' in html
    assert "Thank you &lt;b&gt;all&lt;/b&gt;" in html  # escaped, never markup
    assert "5 h" in html and "3 min" in html and "Telegram" in html
    assert 'id="inbox-waiting" aria-label="3 waiting">3<' in html  # the navigation's count
    dashboard = page(viewer, "/staff/")
    assert re.search(r'id="inbox-card">\s*<h2>Inbox</h2>\s*<p class="figure">3</p>',
                     dashboard)
    assert "No closed conversations." in page(viewer, "/staff/inbox?view=closed")
    assert order(page(viewer, "/staff/inbox?view=nonsense")) == [flagged, newer, older]


def test_assign_puts_it_under_mine_and_close_moves_it_to_closed(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    first = waiting(sessions, AMIRA, "Is there a march?")
    second = waiting(sessions, BEN, "Where do I sign on paper?")
    editor = browser(app, "editor")
    assert "No open conversations are assigned to you." in page(editor, "/staff/inbox?view=mine")
    assert editor.post(f"/staff/inbox/{second}/assign").status_code == 303
    assert order(page(editor, "/staff/inbox?view=mine")) == [second]
    assert f"assigned to {email_of('editor')}" in page(editor, f"/staff/inbox/{second}")
    assert order(page(browser(app, "admin"), "/staff/inbox?view=mine")) == []

    closed = editor.post(f"/staff/inbox/{first}/close")
    assert closed.status_code == 303 and closed.headers["Location"].endswith("/staff/inbox")
    assert order(page(editor, "/staff/inbox")) == [second]
    assert order(page(editor, "/staff/inbox?view=closed")) == [first]
    html = page(editor, f"/staff/inbox/{first}")
    assert 'id="status">closed<' in html and "This conversation is closed" in html
    assert re.search(r'id="send"\s+disabled', html)
    with sessions() as session:
        actions = session.scalars(select(AuditEntry.action).where(
            AuditEntry.actor == email_of("editor"), AuditEntry.action.like("inbox.%"))
            .order_by(AuditEntry.id)).all()
    assert actions == ["inbox.assign", "inbox.close"]


# A conversation ------------------------------------------------------------------------------

def test_a_conversation_shows_messages_in_order_notes_apart_and_what_we_hold(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        client: FlaskClient) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    conversation = waiting(sessions, AMIRA, ["My mum has NETs.", "Can she come too?"])
    editor = browser(app, "editor")
    assert editor.post(f"/staff/inbox/{conversation}/note",
                       {"note": "Ask Sam about the hand-in list"}).status_code == 303
    html = page(editor, f"/staff/inbox/{conversation}")
    assert html.index("My mum has NETs.") < html.index("Can she come too?") < html.index(
        "Ask Sam about the hand-in list")
    assert re.search(r'class="entry note" data-kind="note"[^>]*>\s*<span class="who">'
                     r"Internal note by editor@planets.example", html)
    # What we hold: the signature, the channel (masked), consent, updates.
    facts = html[html.index('id="facts"'):]
    assert "Amira Khan" in facts and "EH1 1AA" in facts and "no. 1" in facts
    assert AMIRA not in html  # the number is masked
    assert "sirt on SMS" in facts and "sign granted" in facts
    # The reply box for editors, with the saved replies and the live preview's hooks.
    assert 'id="reply"' in html and 'data-channel="sms"' in html
    assert "preview.json" in html and "inbox.js" in html
    assert messages_of(sessions, conversation)[-1] == ("note", "Ask Sam about the hand-in list")
    assert editor.get("/staff/inbox/999999").status_code == 404


def test_a_viewer_reads_but_cannot_reply_note_assign_or_close(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, AMIRA, "Is there a march?", flagged=True)
    [(_, message)] = _in_messages(sessions, conversation)
    viewer = browser(app, "viewer")
    html = page(viewer, f"/staff/inbox/{conversation}")
    assert "Is there a march?" in html and 'id="read-only"' in html
    # What we hold about them (number, name, consent) is for those who answer them.
    assert 'id="facts-hidden"' in html and 'id="facts"' not in html and AMIRA not in html
    for absent in ('id="reply"', "Assign to me", "Add the note", "Record the follow-up",
                   ">Close<", "inbox.js"):
        assert absent not in html, absent
    for path, data in ((f"/staff/inbox/{conversation}/reply", {"text": "Yes"}),
                       (f"/staff/inbox/{conversation}/note", {"note": "x"}),
                       (f"/staff/inbox/{conversation}/assign", {}),
                       (f"/staff/inbox/{conversation}/close", {}),
                       (f"/staff/inbox/{conversation}/preview.json", {"text": "Yes"}),
                       (f"/staff/inbox/{conversation}/messages/{message}/follow-up",
                        {"action": "Rang them"}),
                       ("/staff/inbox/replies", {"title": "t", "text": "x"})):
        response = viewer.post(path, data)
        assert response.status_code == 403, path
    assert viewer.get("/staff/inbox/replies").status_code == 403
    assert messages_of(sessions, conversation) == [("in", "Is there a march?")]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def _in_messages(sessions: sessionmaker[Session], conversation: int) -> list[tuple[str, int]]:
    from models import InboxMessage

    with sessions() as session:
        return [(m.text, m.id) for m in session.scalars(select(InboxMessage).where(
            InboxMessage.conversation_id == conversation, InboxMessage.kind == "in"))]


# Replies -------------------------------------------------------------------------------------

def test_an_editor_replies_and_the_supporter_receives_it_on_their_channel(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        config: Config) -> None:
    conversation = waiting(sessions, AMIRA, "Is there a march?")
    editor = browser(app, "editor")
    sent = editor.post(f"/staff/inbox/{conversation}/reply",
                       {"text": "Yes \u2013 Friday at 10am \U0001F389"}, follow_redirects=True)
    html = sent.get_data(as_text=True)
    assert "Reply queued" in html
    assert "Yes - Friday at 10am ?" in html  # as SMS carries it: GSM-7
    assert 'data-delivery="queued"' in html
    assert 'id="inbox-waiting"' not in html  # nobody waits now
    recorded = send_outbox(config, sessions)
    assert [(j.address, j.text) for j in recorded["sms"].sent] == [
        (AMIRA, "Yes - Friday at 10am ?")]
    assert 'data-delivery="sent"' in page(editor, f"/staff/inbox/{conversation}")
    with sessions() as session:
        assert session.scalar(select(AuditEntry.actor).where(
            AuditEntry.action == "inbox.reply")) == email_of("editor")


def test_whatsapp_outside_the_window_says_why_and_sends_nothing(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    late = waiting(sessions, CARYS, "Hello?", channel="whatsapp", wrote_hours_ago=30)
    recent = waiting(sessions, BEN, "Hi", channel="whatsapp", wrote_hours_ago=2)
    editor = browser(app, "editor")
    html = page(editor, f"/staff/inbox/{late}")
    assert 'data-can-send="no"' in html and "24-hour window" in html
    assert "approved template" in html
    assert re.search(r'id="send"\s+disabled', html)
    refused = editor.post(f"/staff/inbox/{late}/reply", {"text": "Sorry for the wait"},
                          follow_redirects=True)
    assert "Not sent." in refused.get_data(as_text=True)
    inside = page(editor, f"/staff/inbox/{recent}")
    assert 'data-can-send="yes"' in inside and "Inside WhatsApp's 24-hour window" in inside
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_stop_and_unreachable_are_respected_by_the_reply_box(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    stopped = waiting(sessions, AMIRA, "Why?")
    gone = waiting(sessions, "4242", "Bye", channel="telegram")
    with sessions.begin() as session:
        session.execute(update(Identity).where(Identity.address == AMIRA)
                        .values(opted_out_at=dt.datetime.now(dt.UTC)))
        session.execute(update(Identity).where(Identity.address == "4242")
                        .values(unreachable_at=dt.datetime.now(dt.UTC)))
    editor = browser(app, "editor")
    assert "said STOP" in page(editor, f"/staff/inbox/{stopped}")
    assert "cannot be reached" in page(editor, f"/staff/inbox/{gone}")
    for conversation in (stopped, gone):
        editor.post(f"/staff/inbox/{conversation}/reply", {"text": "Hello"})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_the_live_preview_says_what_each_channel_does_with_the_text(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        config: Config) -> None:
    sms = waiting(sessions, AMIRA, "Is there a march?")
    telegram = waiting(sessions, "4242", "Hi", channel="telegram")
    late = waiting(sessions, CARYS, "Hello?", channel="whatsapp", wrote_hours_ago=30)
    editor = Browser(app.test_client(), csrf=False)
    editor.login(email_of("editor"))
    curly = "We\u2019re nearly there \U0001F389"
    data = editor.post(f"/staff/inbox/{sms}/preview.json", {"text": curly}).get_json()
    s = data["sms"]
    assert s["text"] == "We're nearly there ?" and s["gsm7"] is False
    assert s["segments"] == segments("We're nearly there ?") == 1
    assert s["cost"] == round(config.console.sms_price, 2)
    assert [u["character"] for u in s["replaced"]] == ["\u2019", "\U0001F389"]
    assert data["reach"]["can_send"] is True
    long = editor.post(f"/staff/inbox/{sms}/preview.json", {"text": "word " * 120}).get_json()
    assert long["sms"]["segments"] == 4 and long["sms"]["too_long"] is True
    assert long["sms"]["cost"] == round(4 * config.console.sms_price, 2)

    shown = editor.post(f"/staff/inbox/{telegram}/preview.json",
                        {"text": "Fish & <chips>"}).get_json()
    assert shown["telegram"]["html"] == "Fish &amp; &lt;chips&gt;"
    window = editor.post(f"/staff/inbox/{late}/preview.json", {"text": "Hi"}).get_json()
    assert window["reach"]["can_send"] is False
    assert "24-hour window" in window["reach"]["reason"]
    assert editor.post("/staff/inbox/999999/preview.json", {"text": "Hi"}).status_code == 404


# Notes, saved replies, follow-ups ------------------------------------------------------------

def test_saved_replies_fill_the_box_and_can_be_managed(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, AMIRA, "When is the hand-in?")
    editor = browser(app, "editor")
    assert "No saved replies yet." in page(editor, "/staff/inbox/replies")
    made = editor.post("/staff/inbox/replies", {"title": "Hand-in date",
                                                "text": "The hand-in is on 12 March."})
    assert made.status_code == 303
    with sessions() as session:
        saved = session.scalar(select(SavedReply))
        assert saved is not None and saved.created_by == email_of("editor")
    html = page(editor, f"/staff/inbox/{conversation}")
    assert (f'<option value="{saved.id}" data-text="The hand-in is on 12 March.">'
            "Hand-in date</option>") in html
    assert editor.post("/staff/inbox/replies", {"title": "", "text": "x"}).status_code == 400
    assert editor.post(f"/staff/inbox/replies/{saved.id}/delete").status_code == 303
    again = editor.post(f"/staff/inbox/replies/{saved.id}/delete", follow_redirects=True)
    assert "already deleted" in again.get_data(as_text=True)
    assert 'id="saved-reply"' not in page(editor, f"/staff/inbox/{conversation}")


def test_a_flagged_message_gets_a_follow_up_record_of_who_when_and_what(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, BEN, "I can't cope any more", flagged=True)
    other = waiting(sessions, AMIRA, "Hello")
    [(_, message)] = _in_messages(sessions, conversation)
    admin = browser(app, "admin")
    html = page(admin, f"/staff/inbox/{conversation}")
    assert "No follow-up recorded yet." in html and 'role="alert">Flagged' in html
    done = admin.post(f"/staff/inbox/{conversation}/messages/{message}/follow-up",
                      {"action": "Rang them; pointed them to the helpline."},
                      follow_redirects=True)
    text = done.get_data(as_text=True)
    assert "Follow-up recorded." in text
    assert re.search(r"<li>\d\d \w{3} \d{4} \d\d:\d\d, admin@planets.example: Rang them; "
                     r"pointed them to the helpline.</li>", text)
    # A message is followed up only through its own conversation.
    assert admin.post(f"/staff/inbox/{other}/messages/{message}/follow-up",
                      {"action": "x"}).status_code == 404
    blank = admin.post(f"/staff/inbox/{conversation}/messages/{message}/follow-up",
                       {"action": ""}, follow_redirects=True)
    assert "Say what was done" in blank.get_data(as_text=True)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(FollowUp)) == 1
        assert session.scalar(select(InboxConversation.flagged).where(
            InboxConversation.id == conversation)) is True
