"""The data model: typed SQLAlchemy 2 models, engines and sessions, Alembic migrations."""

from models.base import Base
from models.broadcast import Announcement, Delivery, Worker
from models.core import (
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
    "Base",
    "ChannelCount",
    "ConsentRecord",
    "Conversation",
    "Delivery",
    "Identity",
    "InboundMessage",
    "Petition",
    "Signature",
    "Subscription",
    "Supporter",
    "Worker",
]
