"""Prometheus metrics for /metrics.

Counters and histograms are updated where things happen, in whichever process that is: a
web worker (inbound SMS and WhatsApp, Telegram webhooks, Twilio status callbacks),
`petitionbot worker` (sends) or `petitionbot telegram-poll` (Telegram by polling).

Several processes: set PROMETHEUS_MULTIPROC_DIR (the same directory for gunicorn and for
the worker and poller beside it, on one host) before any of them starts. Each process then
keeps its values in files there, and /metrics adds every process's values up, whichever
gunicorn worker answers the scrape. Without it, /metrics shows the answering process only.

Gauges about the database (outbox depth, signatures held) are read from it at scrape time,
so they are right whatever process answers and however many there are.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.core.outcomes import Job, Sender, SendResult
from bot.infra.pacing import Pacer
from models.broadcast import OPEN

CHANNELS = ("sms", "whatsapp", "telegram")
INBOUND_OUTCOMES = ("replied", "signed", "silent", "duplicate", "erased", "error")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

INBOUND = Counter(
    "petitionbot_inbound_messages", "Inbound messages handled, by channel and outcome "
    "(replied, signed, silent, duplicate, erased, error).", ["channel", "outcome"])
SIGNATURES = Counter(
    "petitionbot_signatures", "Signatures recorded, by channel.", ["channel"])
REPLY_SECONDS = Histogram(
    "petitionbot_reply_seconds", "Time to handle an inbound message and have its replies "
    "ready (one database transaction), by channel.", ["channel"], buckets=LATENCY_BUCKETS)
DELIVERIES = Counter(
    "petitionbot_deliveries", "Broadcast deliveries entering a status, by channel: sent, "
    "failed, skipped, unknown, retry (by the worker); delivered, failed (Twilio status "
    "callbacks).", ["channel", "status"])
SEND_SECONDS = Histogram(
    "petitionbot_send_seconds", "Provider call time of a broadcast send, by channel.",
    ["channel"], buckets=LATENCY_BUCKETS)
PROVIDER_ERRORS = Counter(
    "petitionbot_provider_errors", "Errors Twilio or Telegram answered, by channel and code.",
    ["channel", "code"])
RATE_LIMIT_WAITS = Counter(
    "petitionbot_rate_limit_waits", "Sends that waited for a rate: the channel's configured "
    "pace (pacing), or a provider's 429 / RetryAfter (provider).", ["channel", "reason"])
FIRST_REPLY_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
                       86400.0, 172800.0, 345600.0, 604800.0)
FIRST_REPLY_SECONDS = Histogram(
    "petitionbot_inbox_first_reply_seconds", "Time from a supporter's first message in an "
    "inbox conversation to the first staff reply, by channel.", ["channel"],
    buckets=FIRST_REPLY_BUCKETS)
EVENT_DELIVERIES = Counter(
    "petitionbot_event_deliveries", "Posts of events to receivers, by outcome: delivered "
    "(a 2xx answer), retry (another answer or none), failed (parked after a day of "
    "retries).", ["outcome"])
RATE_LIMIT_WAIT_SECONDS = Counter(
    "petitionbot_rate_limit_wait_seconds", "Seconds spent waiting for a rate, by channel and "
    "reason.", ["channel", "reason"])


def _channel(channel: str) -> str:
    return channel if channel in CHANNELS else "other"


def observe_inbound(channel: str, outcome: str, seconds: float, signed: bool = False) -> None:
    channel = _channel(channel)
    INBOUND.labels(channel, outcome if outcome in INBOUND_OUTCOMES else "other").inc()
    REPLY_SECONDS.labels(channel).observe(seconds)
    if signed:
        SIGNATURES.labels(channel).inc()


def observe_delivery(channel: str, status: str) -> None:
    DELIVERIES.labels(_channel(channel), status).inc()


def observe_event_delivery(outcome: str) -> None:
    EVENT_DELIVERIES.labels(outcome).inc()


def observe_provider_error(channel: str, error: str) -> None:
    """`error` as SendResult has it ("21610", "400 Bad Request: ..."): its first word."""
    code = (error.split() or ["unknown"])[0][:32]
    PROVIDER_ERRORS.labels(_channel(channel), code).inc()


def observe_first_reply(channel: str, seconds: float) -> None:
    FIRST_REPLY_SECONDS.labels(_channel(channel)).observe(max(seconds, 0.0))


def observe_wait(channel: str, reason: str, seconds: float) -> None:
    RATE_LIMIT_WAITS.labels(_channel(channel), reason).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(_channel(channel), reason).inc(max(seconds, 0.0))


class MeteredPacer:
    """A pacer that counts the waits it imposes and the pauses providers ask for."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def wait(self, channel: str) -> float:
        delay = self.pacer.wait(channel)
        if delay > 0:
            observe_wait(channel, "pacing", delay)
        return delay

    def reserve(self, channel: str) -> float | None:
        delay = self.pacer.reserve(channel)
        if delay is not None and delay > 0:
            observe_wait(channel, "pacing", delay)
        return delay

    def admit(self, channel: str) -> float:
        wait = self.pacer.admit(channel)
        if wait > 0:
            observe_wait(channel, "pacing", wait)
        return wait

    def pause(self, channel: str, seconds: float) -> None:
        observe_wait(channel, "provider", seconds)
        self.pacer.pause(channel, seconds)


class MeteredSender:
    """A sender whose results carry the provider call's duration (for the send's log line)."""

    def __init__(self, sender: Sender, channel: str) -> None:
        self.sender = sender
        self.channel = channel

    def prepare(self) -> None:
        prepare = getattr(self.sender, "prepare", None)
        if prepare is not None:
            prepare()

    def send(self, job: Job) -> SendResult:
        started = time.perf_counter()
        result = self.sender.send(job)
        elapsed = time.perf_counter() - started
        SEND_SECONDS.labels(_channel(self.channel)).observe(elapsed)
        return dataclasses.replace(result, seconds=elapsed)


# Exposition --------------------------------------------------------------------------------

def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()


def prepare() -> None:
    """Make PROMETHEUS_MULTIPROC_DIR (when set) before the first value is written there."""
    folder = multiprocess_dir()
    if folder:
        os.makedirs(folder, mode=0o750, exist_ok=True)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Any]:
        return []  # no query at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from models import Announcement, ChannelCount, Delivery, InboxConversation, Petition

        up = GaugeMetricFamily("petitionbot_database_up",
                               "1 when the database answered this scrape.")
        depth = GaugeMetricFamily(
            "petitionbot_outbox_depth", "Deliveries still to send (pending, claimed, sending) "
            "of announcements that are sending or paused, by channel.", labels=["channel"])
        held = GaugeMetricFamily(
            "petitionbot_petition_signatures", "Signatures held, by petition and channel.",
            labels=["petition", "channel"])
        waiting = GaugeMetricFamily(
            "petitionbot_inbox_waiting", "Open inbox conversations waiting for a staff answer.")
        try:
            with self.engine.connect() as connection:
                open_rows = dict(connection.execute(
                    select(Delivery.channel, func.count())
                    .join(Announcement, Announcement.id == Delivery.announcement_id)
                    .where(Announcement.status.in_(("sending", "paused")),
                           Delivery.status.in_(OPEN))
                    .group_by(Delivery.channel)).all())
                counts = connection.execute(
                    select(Petition.slug, ChannelCount.channel, ChannelCount.count)
                    .join(Petition, Petition.id == ChannelCount.petition_id)).all()
                waits = connection.scalar(
                    select(func.count()).select_from(InboxConversation)
                    .where(InboxConversation.status == "open",
                           InboxConversation.waiting_since.is_not(None))) or 0
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for channel in CHANNELS:
            depth.add_metric([channel], int(open_rows.get(channel, 0)))
        for slug, channel, count in counts:
            held.add_metric([slug, channel], int(count))
        waiting.add_metric([], int(waits))
        yield up
        yield depth
        yield held
        yield waiting


class _ThisProcess(Collector):
    """The default registry's metrics, for a per-scrape registry (single-process mode)."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()


def exposition(engine: Engine, accept: str | None) -> tuple[bytes, str]:
    """The metrics page (Prometheus text, or OpenMetrics when asked for) and its type."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector(engine))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
