"""The core's effects carried out, in order, in the message's unit of work: consent
records, the signature and its counters, subscriptions, voices, STOP and START, erasure;
and the events they make for other systems (bot/shell/events.py), in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, insert, select, update

from bot.core import conversation as core
from bot.core.conversation import Channel, Signed
from bot.core.postcodes import postcode_area
from bot.infra.config import Config, Petition
from bot.shell import events, inbox, people
from bot.shell.broadcast import milestone_drafts, skip_pending_for
from bot.shell.content import Content
from bot.shell.counts import Counts
from bot.shell.unit_of_work import UnitOfWork
from models import Voice
from models.base import BigId
from models.sql import insert_ignore_statement
from models.supporters import PETITION_ID
from models.tables import (
    channel_counts,
    consent_records,
    petitions,
    signatures,
    subscriptions,
)

log = logging.getLogger("petitionbot.inbound")

NEW_CONSENT = (insert(consent_records)
               .values({c: bindparam(f"p_{c}") for c in (
                   "supporter_id", "petition_id", "purpose", "action", "text_version",
                   "channel", "evidence", "created_at")})
               .returning(consent_records.c.id))
COUNT_SIGNATURE = (update(petitions).where(petitions.c.id == bindparam("p_petition"))
                   .values(signature_count=petitions.c.signature_count + 1,
                           last_number=petitions.c.last_number + 1)
                   .returning(petitions.c.last_number, petitions.c.signature_count))
COUNT_CHANNEL = (update(channel_counts)
                 .where(channel_counts.c.petition_id == bindparam("p_petition"),
                        channel_counts.c.channel == bindparam("p_channel"))
                 .values(count=channel_counts.c.count + 1))
LATEST_SIGN_CONSENT = (select(func.max(consent_records.c.id))
                       .where(consent_records.c.supporter_id == bindparam("p_supporter"),
                              consent_records.c.petition_id == bindparam("p_petition"),
                              consent_records.c.purpose == "sign")
                       .scalar_subquery())
NEW_SIGNATURE = insert(signatures).values(
    petition_id=bindparam("p_petition"), supporter_id=bindparam("p_supporter"),
    number=bindparam("p_number"), name=bindparam("p_name"), postcode=bindparam("p_postcode"),
    postcode_area=bindparam("p_postcode_area"), country=bindparam("p_country"),
    nation=bindparam("p_nation"), channel=bindparam("p_channel"),
    referral=bindparam("p_referral"),
    # Without consent given in this message, the signature cites the latest given.
    consent_id=func.coalesce(bindparam("p_consent", type_=BigId), LATEST_SIGN_CONSENT),
    signed_at=bindparam("p_now")).returning(signatures.c.id)
SIGNED_NATION = select(signatures.c.nation).where(
    signatures.c.petition_id == bindparam("petition"),
    signatures.c.supporter_id == bindparam("supporter"))


class NewSignature(NamedTuple):
    """A signature as NEW_SIGNATURE writes it (its id once written): its event's data,
    without reading the row back."""

    id: int
    number: int
    supporter_id: int
    name: str
    postcode: str | None
    country: str | None
    nation: str
    channel: str
    source: str | None
    referral: str | None
    signed_at: datetime


@dataclass(frozen=True)
class Counted:
    """A new signature: its petition, and the petition's signatures here with it."""

    petition: str
    here: int


@dataclass(frozen=True)
class Applied:
    """What a message's effects came to."""

    signed: Signed | None = None  # the signature `Sign` made, or found (never two)
    counted: Counted | None = None  # when it was new
    erased: bool = False


class Effects:
    """Carries out the core's effects."""

    def __init__(self, config: Config, counts: Counts) -> None:
        self.config = config
        self.counts = counts

    def apply(self, work: UnitOfWork, effects: Iterable[core.Effect], sender: people.Sender,
              channel: Channel, evidence: str, phone: str, now: datetime,
              content: Content) -> Applied:
        """Carry out `effects` for `sender`; `evidence` is the message's provider id."""
        signed: Signed | None = None
        counted: Counted | None = None
        erased = False
        consent_ids: dict[tuple[str, str], int] = {}
        for effect in effects:
            match effect:
                case core.GrantConsent(purpose, slug, version):
                    consent_ids[(purpose.value, slug)] = self._consent(
                        work, sender.supporter_id, self.petition_id(work, slug), purpose,
                        "granted", version, channel, evidence, now)
                case core.Sign():
                    signed, counted = self._sign(work, effect, sender, channel, now,
                                                 consent_ids.get(("sign", effect.petition)),
                                                 content.petition(effect.petition))
                case core.SaveVoice(slug, text, publish, flagged):
                    self._save_voice(work, sender.supporter_id, slug, text, publish, flagged,
                                     consent_ids.get(("publish_voice", slug)), now)
                case core.Subscribe(slug):
                    if work.run(_new_subscription(work), {
                            "p_identity_id": sender.identity_id,
                            "p_petition_id": self.petition_id(work, slug),
                            "p_consent_id": consent_ids.get(("updates", slug)),
                            "p_created_at": now}):
                        events.record(work.conn, events.SUBSCRIPTION_CHANGED,
                                      events.subscription_data(
                                          sender.supporter_id, slug, channel.value, True,
                                          "opted_in"), sender.supporter_id, now)
                case core.ForAPerson(text, flagged):  # the staff inbox
                    inbox.keep(work, sender, channel, text, flagged, now, provider_id=evidence,
                               staff_telegram_ids=self.config.staff.telegram_ids)
                case core.OptOut():
                    self._opt_out(work, sender, channel, evidence, now,
                                  content.privacy_version)
                case core.OptIn():
                    sender.opted_out_at = None
                    if sender.supporter_id is None:  # bare since an erasure: a person again
                        people.adopt(work, sender, phone, now)
                case core.Erase():
                    people.erase_supporter(work.conn, sender.supporter_id, now)
                    erased = True
        return Applied(signed, counted, erased)

    def petition_id(self, work: UnitOfWork, slug: str) -> int:
        """A configured petition's row id (sync_petitions gave each one a row). Not cached:
        remembering it measured no gain (issue #13's with/without table)."""
        pid = work.scalar(PETITION_ID, {"slug": slug})
        assert pid is not None, slug
        return int(pid)

    def _consent(self, work: UnitOfWork, supporter_id: int | None, petition_id: int | None,
                 purpose: core.Purpose, action: str, version: str, channel: Channel,
                 evidence: str, now: datetime) -> int:
        assert supporter_id is not None
        record_id: int = work.scalar(NEW_CONSENT, {
            "p_supporter_id": supporter_id, "p_petition_id": petition_id,
            "p_purpose": purpose.value, "p_action": action, "p_text_version": version,
            "p_channel": channel.value, "p_evidence": evidence[:80], "p_created_at": now})
        return record_id

    def _sign(self, work: UnitOfWork, sign: core.Sign, sender: people.Sender,
              channel: Channel, now: datetime, consent_id: int | None,
              petition: Petition) -> tuple[Signed, Counted | None]:
        assert sender.supporter_id is not None
        external = petition.external_count
        # The sender was read in this transaction, after their person was locked (or with
        # the write lock held): a signature made on another channel shows here.
        existing = next((s for s in sender.signatures if s.petition == sign.petition), None)
        if existing is not None:  # signed meanwhile on another channel: never twice
            here = self.counts.here(work.conn).get(sign.petition, 0)
            return Signed(existing.number, here + external), None
        petition_id = self.petition_id(work, sign.petition)
        number, here = work.rows(COUNT_SIGNATURE, {"p_petition": petition_id})[0]
        work.run(COUNT_CHANNEL, {"p_petition": petition_id, "p_channel": channel.value})
        made = NewSignature(
            id=0, number=number, supporter_id=sender.supporter_id, name=sign.name,
            postcode=sign.postcode or None, country=sign.country or None,
            nation=sign.nation.value, channel=channel.value, source=None,
            referral=sign.referral or None, signed_at=now)
        signature_id = work.scalar(NEW_SIGNATURE, {
            "p_petition": petition_id, "p_supporter": made.supporter_id, "p_number": number,
            "p_name": made.name, "p_postcode": made.postcode,
            "p_postcode_area": postcode_area(sign.postcode) if sign.postcode else None,
            "p_country": made.country, "p_nation": made.nation, "p_channel": made.channel,
            "p_referral": made.referral, "p_consent": consent_id, "p_now": now})
        events.record(work.conn, events.SIGNATURE_CREATED, events.signature_data(
            sign.petition, made._replace(id=int(signature_id))), made.supporter_id, now)
        milestone_drafts(work.conn, petition, here - 1 + external, here + external, now)
        return Signed(number, here + external), Counted(sign.petition, here)

    def _save_voice(self, work: UnitOfWork, supporter_id: int | None, slug: str, text: str,
                    publish: bool, flagged: bool, consent_id: int | None,
                    now: datetime) -> None:
        petition_id = self.petition_id(work, slug)
        nation = work.conn.scalar(SIGNED_NATION, {"petition": petition_id,
                                                  "supporter": supporter_id})
        work.conn.execute(insert(Voice).values(
            petition_id=petition_id, supporter_id=supporter_id, text=text, nation=nation,
            status="pending", publish_consent=publish, consent_id=consent_id,
            flagged=flagged, created_at=now))
        if flagged:
            log.warning("safeguarding: a supporter's message was flagged for staff (voice)")

    def _opt_out(self, work: UnitOfWork, sender: people.Sender, channel: Channel,
                 evidence: str, now: datetime, version: str) -> None:
        """Stop everything on this identity, even mid-broadcast; withdraw its updates."""
        sender.opted_out_at = now
        skip_pending_for(work.conn, sender.identity_id, "opted_out", now)
        ended = people.end_subscriptions(work.conn, sender.identity_id, "stop", now)
        for petition_id in ended:
            if sender.supporter_id is not None:
                self._consent(work, sender.supporter_id, petition_id, core.Purpose.UPDATES,
                              "withdrawn", version, channel, evidence, now)


def _new_subscription(work: UnitOfWork) -> Any:
    return insert_ignore_statement(
        work.conn.dialect.name, subscriptions,
        ("identity_id", "petition_id", "consent_id", "created_at"), ("identity_id", "petition_id"))


__all__ = ["Applied", "Counted", "Effects"]
