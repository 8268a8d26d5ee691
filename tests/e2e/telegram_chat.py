"""Talk to POST /telegram/webhook the way Telegram does: updates built by the fake Bot API,
posted with the secret header; the bot's replies are read back from what reached the fake."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from models import Conversation, Identity, Signature
from tests.fakes.telegram_api import FakeTelegram

JSON = dict[str, Any]
SECRET = "s3cret-token"
PATH = "/telegram/webhook"
# After HTML escaping, "&" only starts an entity and "<" / ">" never appear (no markup is used).
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|quot|#\d+);)")


def post_update(client: FlaskClient, update: JSON, secret: str | None = SECRET) -> TestResponse:
    """POST one update as Telegram does; `secret=None` leaves the header out."""
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return client.post(PATH, json=update, headers=headers)


def buttons(message: JSON) -> list[tuple[str, str]]:
    """(label, callback_data) of a sent message's inline keyboard, row by row."""
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", [])
            for b in row]


def keywords(message: JSON) -> list[str]:
    return [data for _, data in buttons(message)]


def contact_button(message: JSON) -> str | None:
    """The label of a "share my phone number" keyboard button, if the message has one."""
    markup = message.get("reply_markup") or {}
    for row in markup.get("keyboard", []):
        for button in row:
            if button.get("request_contact"):
                return str(button["text"])
    return None


def is_escaped_html(text: str) -> bool:
    return "<" not in text and ">" not in text and not _BARE_AMPERSAND.search(text)


def plain(message: JSON) -> str:
    """What the supporter reads: the HTML text with its entities resolved."""
    return html.unescape(message["text"])


@dataclass
class TelegramUser:
    """A person in a private chat with the bot (chat id = user id, as Telegram has it)."""

    client: FlaskClient
    fake: FakeTelegram
    user_id: int
    first_name: str
    update_ids: list[int] = field(default_factory=list)

    def _post(self, update: JSON) -> list[JSON]:
        before = len(self.fake.messages_to(self.user_id))
        self.update_ids.append(update["update_id"])
        response = post_update(self.client, update)
        assert response.status_code == 200, (response.status_code, response.get_data())
        return self.fake.messages_to(self.user_id)[before:]

    def sends(self, text: str) -> list[JSON]:
        """Type `text`; return the messages the bot sent back."""
        return self._post(self.fake.user_sends(self.user_id, text, self.first_name,
                                               queue=False))

    def presses(self, keyword: str) -> list[JSON]:
        """Press the button `keyword` on the newest message that shows it."""
        return self._post(self.press_update(keyword))

    def press_update(self, keyword: str) -> JSON:
        message = self.message_with_button(keyword)
        return self.fake.user_presses(self.user_id, keyword, message["message_id"],
                                      queue=False)

    def message_with_button(self, keyword: str) -> JSON:
        for message in reversed(self.fake.messages_to(self.user_id)):
            if keyword in keywords(message):
                return message
        raise AssertionError(f"no message to {self.first_name} shows a {keyword} button: "
                             f"{self.fake.describe()}")

    def shares_contact(self, phone: str, contact_user_id: int | None = None) -> list[JSON]:
        return self._post(self.fake.user_shares_contact(
            self.user_id, phone, contact_user_id, queue=False))

    def says(self, text: str) -> str:
        return "\n".join(plain(m) for m in self.sends(text))

    def chooses(self, keyword: str) -> str:
        return "\n".join(plain(m) for m in self.presses(keyword))


def identity_of(sessions: sessionmaker[Session], address: int | str) -> Identity | None:
    with sessions() as session:
        return session.scalar(select(Identity).where(Identity.channel == "telegram",
                                                     Identity.address == str(address)))


def step_of(sessions: sessionmaker[Session], address: int | str) -> str | None:
    with sessions() as session:
        return session.scalar(
            select(Conversation.step).join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.channel == "telegram", Identity.address == str(address)))


def signatures(sessions: sessionmaker[Session]) -> list[Signature]:
    with sessions() as session:
        return list(session.scalars(select(Signature).order_by(Signature.number)))
