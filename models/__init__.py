"""The data model: typed SQLAlchemy 2 models, engines and sessions, Alembic migrations."""

from models.base import Base
from models.broadcast import Announcement, Delivery, Worker
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
    "Identity",
    "InboundMessage",
    "Petition",
    "RateWindow",
    "Signature",
    "StaffSession",
    "StaffUser",
    "Subscription",
    "Supporter",
    "Voice",
    "Worker",
]
