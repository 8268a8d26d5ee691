"""Staff commands in a chat (Telegram): /announce TEXT previews a draft with Send and
Cancel buttons, /stats shows the count and delivery progress. Only staff ids from
config `[staff] telegram_ids` may use them; anyone else is an ordinary supporter."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import broadcast
from bot.service import Service
from bot.staff import audit
from models import Announcement, InboundMessage
from models.sql import insert_ignore

SEND = "ANNOUNCE_SEND_"
CANCEL = "ANNOUNCE_CANCEL_"
ACTION = re.compile(rf"^({SEND}|{CANCEL})(\d{{1,12}})$")


@dataclass(frozen=True)
class StaffReply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()


def is_staff_command(text: str) -> bool:
    first = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
    return first.split("@")[0] in ("/announce", "/stats") or bool(ACTION.match(text.strip()))


def handle(service: Service, user_id: int, text: str, provider_id: str) -> list[StaffReply]:
    """Carry out one staff command, once per provider message id."""
    config = service.config
    who = f"telegram:{user_id}"
    now = service.clock()
    with service.sessions.begin() as session:
        first = insert_ignore(session, InboundMessage, {
            "channel": "telegram", "provider_id": provider_id, "identity_id": None,
            "body": None, "received_at": now}, ["channel", "provider_id"],
            returning=InboundMessage.id)
        if first is None:
            return []
        command, _, rest = text.strip().partition(" ")
        command = command.split("@")[0].lower()
        try:
            if command == "/stats":
                return [StaffReply(_stats(service, session))]
            if command == "/announce":
                if not rest.strip():
                    return [StaffReply("Usage: /announce your message to supporters")]
                draft = broadcast.create(session, config, config.default_petition, rest, who,
                                         now=now)
                audit(session, who, "announcement.create", f"announcement:{draft.id}",
                      {"via": "telegram"}, now)
                lines = broadcast.preview(session, config, draft, now).lines()
                return [StaffReply("\n".join(lines), (("Send", f"{SEND}{draft.id}"),
                                                      ("Cancel", f"{CANCEL}{draft.id}")))]
            action = ACTION.match(text.strip())
            if action:
                found = session.get(Announcement, int(action.group(2)))
                if found is None:
                    return [StaffReply("That announcement no longer exists.")]
                if action.group(1) == SEND:
                    queued = broadcast.approve(session, config, found, who, now)
                    audit(session, who, "announcement.approve", f"announcement:{found.id}",
                          {"via": "telegram", "recipients": queued}, now)
                    return [StaffReply(f"Announcement {found.id} queued for {queued:,} "
                                       "recipient(s). /stats shows progress.")]
                broadcast.cancel(session, found, who, now)
                audit(session, who, "announcement.cancel", f"announcement:{found.id}",
                      {"via": "telegram"}, now)
                return [StaffReply(f"Announcement {found.id} cancelled.")]
        except broadcast.BroadcastError as error:
            return [StaffReply(str(error))]
    return []


def _stats(service: Service, session: Session) -> str:
    # The command's own session: on SQLite a second one in this thread would wait for it.
    counts = service.counts(session, fresh=True)
    lines = []
    for petition in service.config.petitions:
        here = counts.get(petition.slug, 0)
        total = here + petition.external_count
        lines.append(f"{petition.title}: {total:,} signatures ({here:,} here)")
    latest = session.scalars(select(Announcement).order_by(Announcement.id.desc())
                             .limit(3)).all()
    for a in latest:
        done = broadcast.progress(session, a.id)
        summary = ", ".join(f"{k} {v:,}" for k, v in done.items() if v) or "no deliveries"
        lines.append(f"#{a.id} {a.status}: {summary}")
    return "\n".join(lines)


__all__ = ["StaffReply", "handle", "is_staff_command"]
