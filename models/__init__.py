"""The data model: typed SQLAlchemy 2 models, engines and sessions, Alembic migrations."""

from models.base import Base
from models.broadcast import Announcement, Delivery, Worker
from models.inbox import FollowUp, InboxConversation, InboxMessage, SavedReply
from models.staff import AuditEntry, RateWindow, StaffSession, StaffUser, Voice
from models.supporters import (
    ChannelCount,
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
)

__all__ = [
    "Announcement",
    "AuditEntry",
    "Base",
    "ChannelCount",
    "ConsentRecord",
    "Conversation",
    "Delivery",
    "FollowUp",
    "Identity",
    "InboundMessage",
    "InboxConversation",
    "InboxMessage",
    "Petition",
    "RateWindow",
    "SavedReply",
    "Signature",
    "StaffSession",
    "StaffUser",
    "Subscription",
    "Supporter",
    "Voice",
    "Worker",
]
