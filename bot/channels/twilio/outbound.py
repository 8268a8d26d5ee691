"""Sending SMS and WhatsApp through Twilio's REST API (the twilio client, `make_client`), one
`TwilioSender` per channel and worker thread, with Twilio's errors in our words."""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bot.core.conversation import Channel
from bot.core.outcomes import Job, Result, SendResult
from bot.infra.clock import utcnow
from bot.infra.settings import Settings
from bot.shell.broadcast import WHATSAPP_WINDOW

log = logging.getLogger("petitionbot.twilio")

TIMEOUT = 30.0  # twilio's client waits for ever unless told otherwise
OPTED_OUT = 21610
OUTSIDE_WINDOW = 63016
TOO_MANY = (429, 20429)


def make_client(settings: Settings) -> Client:
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                    http_client=TwilioHttpClient(timeout=TIMEOUT))
    if settings.twilio_api_base_url:
        client.api.base_url = settings.twilio_api_base_url
    return client


class TwilioSender:
    """One channel's sender (SMS or WhatsApp); one per worker thread."""

    def __init__(self, settings: Settings, channel: str, clock: Any = None) -> None:
        self.channel = channel
        self.client = make_client(settings)
        self.sender: dict[str, str] = {}
        if channel == Channel.WHATSAPP:
            self.sender["from_"] = settings.twilio_whatsapp_from
        elif settings.twilio_messaging_service_sid:
            self.sender["messaging_service_sid"] = settings.twilio_messaging_service_sid
        else:
            self.sender["from_"] = settings.twilio_sms_from
        self.status_callback = settings.public_base_url + "/twilio/status"
        self.clock = clock or utcnow

    def send(self, job: Job) -> SendResult:
        params: dict[str, Any] = {**self.sender,
                                  "status_callback": f"{self.status_callback}?d={job.delivery_id}"}
        if self.channel == Channel.WHATSAPP:
            params["to"] = "whatsapp:" + job.address
            outside = job.last_inbound_at is None or (
                self.clock() - job.last_inbound_at > WHATSAPP_WINDOW)
            if outside or job.use_template:
                if not job.content_sid:
                    return SendResult(Result.SKIPPED, error=str(OUTSIDE_WINDOW))
                params["content_sid"] = job.content_sid
                params["content_variables"] = json.dumps(job.variables or {})
            else:
                params["body"] = job.text
        else:
            params["to"] = job.address
            params["body"] = job.text
        try:
            message = self.client.messages.create(**params)
        except TwilioException as error:
            return self._refused(error, job)
        except requests.exceptions.ConnectionError:
            return SendResult(Result.RETRY, error="connection")  # never reached Twilio
        except requests.exceptions.RequestException as error:
            # Sent, but no answer: it may have been accepted. In doubt, never resend.
            return SendResult(Result.UNKNOWN, error=type(error).__name__)
        return SendResult(Result.SENT, provider_id=message.sid,
                          used_template="content_sid" in params)

    def _refused(self, error: TwilioException, job: Job) -> SendResult:
        status = getattr(error, "status", None)
        code = getattr(error, "code", None)
        if status in TOO_MANY or code in TOO_MANY:
            return SendResult(Result.RETRY, error=str(code or status))
        if code == OPTED_OUT:
            return SendResult(Result.OPTED_OUT, error=str(code))
        if code == OUTSIDE_WINDOW:
            if job.content_sid and not job.use_template:
                return SendResult(Result.TEMPLATE, error=str(code))
            return SendResult(Result.SKIPPED, error=str(code))
        if isinstance(status, int) and status >= 500:
            return SendResult(Result.RETRY, error=str(code or status))
        return SendResult(Result.FAILED, error=str(code or status or "error"))
