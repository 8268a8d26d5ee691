"""The staff simulator: chat with the real bot, on a database of its own.

Design: simulated messages go through the real Service (the same conversation core,
texts, rendering and effects as Twilio and Telegram messages), but the Service is bound to
a separate sandbox database. Nothing a simulated person does can reach the live tables,
so no total, export, API count, dashboard, broadcast audience or moderation queue can
ever include it, whatever queries are added later; and its engine records no events
(events.silence), so nothing done here reaches a receiver, even if the sandbox's URL were
the live database's. Before each message the sandbox's
counters are set to the live counts plus its own signatures (and the published voices
are copied in), so staff see the figures supporters see. Its content (petitions, the
bot's words) is the live database's, read as every process reads it: a summary an editor
just changed is in the simulator's next greeting.

Simulated identities still use a reserved address space, "sim:<staff id>:<channel>",
with the phone "sim:<staff id>" linking one staff member's SMS and WhatsApp chats as one
phone number would.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.render import Rendered, render
from bot.infra.config import Config
from bot.shell import events
from bot.shell.content import Content, LiveContent
from bot.shell.people import erase_supporter
from bot.shell.service import Handled, Received, Service
from models import (
    ChannelCount,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
    Voice,
)
from models.db import make_engine, make_sessions
from models.migrate import upgrade

PREFIX = "sim:"
VOICES_EVERY = 60.0


def address(staff_id: int, channel: Channel) -> str:
    return f"{PREFIX}{staff_id}:{channel.value}"


def phone(staff_id: int) -> str:
    return f"{PREFIX}{staff_id}"


class LiveDatabaseContent(LiveContent):
    """The live database's content, whichever connection asks: the sandbox's bot says what
    the real bot says now."""

    def __init__(self, live: Service) -> None:
        super().__init__(live.config)
        self.live = live

    def current(self, conn: Connection | Session) -> Content:
        return self.live.content()


@dataclass(frozen=True)
class Exchange:
    replies: tuple[Rendered, ...]
    step: str


class Sandbox:
    """The real Service on a database of its own, built on first use."""

    def __init__(self, config: Config, url: str, live: Service) -> None:
        self.config = config
        self.url = url
        self.live = live
        self._service: Service | None = None
        self._lock = threading.Lock()
        self._voices_at = 0.0

    @property
    def service(self) -> Service:
        with self._lock:
            if self._service is None:
                engine = make_engine(self.url)
                upgrade(engine)
                service = Service(self.config, make_sessions(events.silence(engine)),
                                  clock=self.live.clock)
                service.live = LiveDatabaseContent(self.live)
                service.sync_petitions()
                self._service = service
            return self._service

    def send(self, staff_id: int, channel: Channel, text: str,
             share_phone: bool = False) -> Exchange:
        """One message from the staff member's simulated person; the bot's replies."""
        service = self.service
        service.telegram_username = self.live.telegram_username
        self._mirror(service)
        message_id = f"sim-{uuid.uuid4().hex}"
        own = phone(staff_id) if channel != Channel.TELEGRAM or share_phone else ""
        handled: Handled = service.receive(Received(
            channel, address(staff_id, channel), "" if share_phone else text[:1600],
            message_id, phone=own, contact="own" if share_phone else ""))
        return Exchange(tuple(render(m, channel) for m in handled.replies), handled.step)

    def reset(self, staff_id: int) -> None:
        """Forget the staff member's simulated person on every channel."""
        with self.service.sessions.begin() as session:
            mine = Identity.address.like(f"{PREFIX}{staff_id}:%")
            people = set(session.scalars(select(Identity.supporter_id).where(
                mine, Identity.supporter_id.is_not(None))).all())
            people |= set(session.scalars(select(Supporter.id).where(
                Supporter.phone == phone(staff_id))).all())
            for person in people:
                erase_supporter(session, person, self.live.clock())
            ids = list(session.scalars(select(Identity.id).where(mine)).all())
            session.execute(update(InboundMessage).where(InboundMessage.identity_id.in_(ids))
                            .values(identity_id=None, body=None, replies=None))
            session.execute(delete(Subscription).where(Subscription.identity_id.in_(ids)))
            session.execute(delete(Conversation).where(Conversation.identity_id.in_(ids)))
            session.execute(delete(Identity).where(Identity.id.in_(ids)))

    def _mirror(self, sandbox: Service) -> None:
        """Live counters plus the sandbox's own signatures; published voices now and then;
        a row for a petition staff created since."""
        with self.live.sessions() as live:
            petitions = live.execute(select(Petition.slug, Petition.signature_count,
                                            Petition.last_number)).all()
            channels = live.execute(
                select(Petition.slug, ChannelCount.channel, ChannelCount.count)
                .join(Petition, Petition.id == ChannelCount.petition_id)).all()
            voices = self._live_voices(live)
        with sandbox.sessions() as session:
            known = set(session.scalars(select(Petition.slug)).all())
        if {p.slug for p in self.live.content().petitions} - known:
            sandbox.sync_petitions()
        with sandbox.sessions.begin() as session:
            ids = dict(session.execute(select(Petition.slug, Petition.id)).all())
            own = dict(session.execute(select(Signature.petition_id, func.count())
                                       .group_by(Signature.petition_id)).all())
            own_channel = {(p, c): n for p, c, n in session.execute(
                select(Signature.petition_id, Signature.channel, func.count())
                .group_by(Signature.petition_id, Signature.channel))}
            for slug, count, last in petitions:
                if slug in ids:
                    pid = ids[slug]
                    session.execute(update(Petition).where(Petition.id == pid).values(
                        signature_count=count + own.get(pid, 0),
                        last_number=func.max(Petition.last_number, last)
                        if session.get_bind().dialect.name == "sqlite" else
                        func.greatest(Petition.last_number, last)))
            for slug, channel, count in channels:
                if slug in ids:
                    pid = ids[slug]
                    session.execute(update(ChannelCount).where(
                        ChannelCount.petition_id == pid, ChannelCount.channel == channel)
                        .values(count=count + own_channel.get((pid, channel), 0)))
            if voices is not None:
                session.execute(delete(Voice).where(Voice.supporter_id.is_(None)))
                for slug, text, nation, at in voices:
                    if slug in ids:
                        session.add(Voice(petition_id=ids[slug], supporter_id=None, text=text,
                                          nation=nation, status="approved",
                                          publish_consent=True, flagged=False, created_at=at,
                                          moderated_by="live", moderated_at=at))

    def _live_voices(self, live: Session) -> list[tuple[str, str, str | None, dt.datetime]] | None:
        if time.monotonic() - self._voices_at < VOICES_EVERY:
            return None
        self._voices_at = time.monotonic()
        rows = live.execute(
            select(Petition.slug, Voice.text, Voice.nation, Voice.moderated_at)
            .join(Petition, Petition.id == Voice.petition_id)
            .where(Voice.status == "approved", Voice.publish_consent.is_(True),
                   Voice.moderated_at.is_not(None))
            .order_by(Voice.moderated_at.desc()).limit(50)).all()
        return [(slug, text, nation, at) for slug, text, nation, at in rows if at is not None]


__all__ = ["PREFIX", "Exchange", "Sandbox", "address", "phone"]
