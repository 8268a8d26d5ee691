"""Staff commands in a chat (Telegram): /announce TEXT previews a draft with Send and
Cancel buttons, /approve ID shows another's draft with the same buttons, /stats shows the
count and delivery progress. Only staff ids from config `[staff] telegram_ids` may use
them; anyone else is an ordinary supporter.

Send goes through broadcast.approve like the console's Approve: when config requires a
second approval, the author (or last editor) of a draft cannot send it, and another staff
member uses /approve. The Send button names the version it showed (broadcast.digest), so
a draft changed since is not sent unseen."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.shell import broadcast
from bot.shell.service import Service
from bot.shell.staff import audit
from models import Announcement, InboundMessage
from models.sql import insert_ignore

SEND = "ANNOUNCE_SEND_"
CANCEL = "ANNOUNCE_CANCEL_"
# ANNOUNCE_SEND_<id>_<digest>: 64 bytes at most, Telegram's limit for callback data.
ACTION = re.compile(rf"^({SEND}|{CANCEL})(\d{{1,12}})(?:_([0-9a-f]{{16}}))?$")
APPROVE = re.compile(r"^\d{1,12}$")


@dataclass(frozen=True)
class StaffReply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()


def is_staff_command(text: str) -> bool:
    first = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
    return first.split("@")[0] in ("/announce", "/approve", "/stats") or bool(
        ACTION.match(text.strip()))


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
                return [_for_approval(session, service, draft, who)]
            if command == "/approve":
                if not APPROVE.match(rest.strip()):
                    return [StaffReply("Usage: /approve ID (the announcement's number)")]
                shown = session.get(Announcement, int(rest.strip()))
                if shown is None:
                    return [StaffReply("That announcement no longer exists.")]
                if shown.status != "draft":
                    return [StaffReply(f"Announcement {shown.id} is {shown.status}, not a "
                                       "draft.")]
                return [_for_approval(session, service, shown, who)]
            action = ACTION.match(text.strip())
            if action:
                # Locked (PostgreSQL) so an edit cannot slip in between check and approval.
                found = session.get(Announcement, int(action.group(2)), with_for_update=True)
                if found is None:
                    return [StaffReply("That announcement no longer exists.")]
                if action.group(1) == SEND:
                    queued = broadcast.approve(session, config, found, who, now,
                                               seen=action.group(3))
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


def _for_approval(session: Session, service: Service, found: Announcement,
                  who: str) -> StaffReply:
    """The preview with Send and Cancel; only Cancel (and who approves) for whoever may
    not approve it themselves."""
    lines = broadcast.preview(session, service.config, found, service.clock()).lines()
    cancel = ("Cancel", f"{CANCEL}{found.id}")
    refusal = broadcast.approval_refusal(service.config, found, who)
    if refusal:
        lines.append(f"{refusal[:1].upper()}{refusal[1:]}, so another staff member must "
                     f"approve it: they send /approve {found.id}")
        return StaffReply("\n".join(lines), (cancel,))
    send = ("Send", f"{SEND}{found.id}_{broadcast.digest(found)}")
    return StaffReply("\n".join(lines), (send, cancel))


def _stats(service: Service, session: Session) -> str:
    # The command's own session: on SQLite a second one in this thread would wait for it.
    counts = service.counts(session, fresh=True)
    lines = []
    for petition in service.content(session).petitions:
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
