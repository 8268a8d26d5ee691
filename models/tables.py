"""The mapped classes' tables, typed as Table, for Core statements (insert, update)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from models import broadcast, content, events, imports, inbox, staff
from models import supporters as people
from models.base import Base


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)  # a Table at run time; typed as its base class


announcements = _table(broadcast.Announcement)
deliveries = _table(broadcast.Delivery)
rate_windows = _table(staff.RateWindow)
channel_counts = _table(people.ChannelCount)
consent_records = _table(people.ConsentRecord)
conversations = _table(people.Conversation)
identities = _table(people.Identity)
inbound_messages = _table(people.InboundMessage)
petitions = _table(people.Petition)
signatures = _table(people.Signature)
subscriptions = _table(people.Subscription)
supporters = _table(people.Supporter)
voices = _table(staff.Voice)
inbox_conversations = _table(inbox.InboxConversation)
inbox_messages = _table(inbox.InboxMessage)
content_state = _table(content.ContentState)
petition_versions = _table(content.PetitionVersion)
bot_texts = _table(content.BotText)
consent_versions = _table(content.ConsentVersion)
event_receivers = _table(events.Receiver)
events_table = _table(events.Event)
event_deliveries = _table(events.EventDelivery)
suppressions = _table(imports.Suppression)
import_batches = _table(imports.ImportBatch)
