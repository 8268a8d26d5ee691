"""Supporters whose words wait in the staff inbox, made directly in the database (the
inbound path that puts them there has its own tests): a phone or chat, a conversation, its
messages, and how long ago they wrote."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Identity, InboxConversation, InboxMessage, Supporter


def waiting(sessions: sessionmaker[Session], address: str, words: str | list[str],
            channel: str = "sms", flagged: bool = False, minutes_ago: float = 5,
            wrote_hours_ago: float | None = None) -> int:
    """A supporter on `channel` whose words wait for a person; the conversation's id.
    `wrote_hours_ago` moves their last message to the bot (WhatsApp's window) further back."""
    now = dt.datetime.now(dt.UTC)
    at = now - dt.timedelta(minutes=minutes_ago)
    last = now - dt.timedelta(hours=wrote_hours_ago) if wrote_hours_ago is not None else at
    texts = [words] if isinstance(words, str) else words
    with sessions.begin() as session:
        identity = session.scalar(select(Identity).where(Identity.channel == channel,
                                                         Identity.address == address))
        if identity is None:
            supporter = Supporter(phone=address if channel != "telegram" else None,
                                  created_at=at)
            session.add(supporter)
            session.flush()
            identity = Identity(supporter_id=supporter.id, channel=channel, address=address,
                                created_at=at, last_inbound_at=last)
            session.add(identity)
            session.flush()
        else:
            identity.last_inbound_at = last
        assert identity.supporter_id is not None
        conversation = InboxConversation(
            supporter_id=identity.supporter_id, open_supporter_id=identity.supporter_id,
            identity_id=identity.id, channel=channel, status="open", flagged=flagged,
            told=True, opened_at=at, last_message_at=at, waiting_since=at)
        session.add(conversation)
        session.flush()
        for text in texts:
            session.add(InboxMessage(conversation_id=conversation.id, kind="in", text=text,
                                     at=at, flagged=flagged))
        session.flush()
        return conversation.id


def messages_of(sessions: sessionmaker[Session], conversation_id: int) -> list[tuple[str, str]]:
    """(kind, text) of a conversation's entries, in order."""
    with sessions() as session:
        return [(m.kind, m.text) for m in session.scalars(
            select(InboxMessage).where(InboxMessage.conversation_id == conversation_id)
            .order_by(InboxMessage.id))]
