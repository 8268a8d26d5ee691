"""The data model: typed SQLAlchemy 2 models, engines and sessions, Alembic migrations."""

from models.base import Base
from models.broadcast import Announcement, Delivery, Worker
from models.content import BotText, ConsentVersion, ContentState, PetitionVersion
from models.events import Event, EventDelivery, Receiver
from models.imports import ImportBatch, Suppression
from models.inbox import FollowUp, InboxConversation, InboxMessage, SavedReply
from models.staff import (
    AuditEntry,
    RateWindow,
    StaffAddress,
    StaffInvite,
    StaffLinkCode,
    StaffSession,
    StaffUser,
    Voice,
)
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
    "BotText",
    "ChannelCount",
    "ConsentRecord",
    "ConsentVersion",
    "ContentState",
    "Conversation",
    "Delivery",
    "Event",
    "EventDelivery",
    "FollowUp",
    "Identity",
    "ImportBatch",
    "InboundMessage",
    "InboxConversation",
    "InboxMessage",
    "Petition",
    "PetitionVersion",
    "RateWindow",
    "Receiver",
    "SavedReply",
    "Signature",
    "StaffAddress",
    "StaffInvite",
    "StaffLinkCode",
    "StaffSession",
    "StaffUser",
    "Subscription",
    "Supporter",
    "Suppression",
    "Voice",
    "Worker",
]
