"""A terminal simulator: the same service, replies shown as the chosen channel shows them."""

from __future__ import annotations

import uuid
from typing import TextIO

import click

from bot.core.conversation import Channel
from bot.core.phones import normalise_phone
from bot.core.render import Rendered, render
from bot.infra.config import load_config
from bot.infra.settings import Settings
from bot.shell.service import Received, Service
from models.db import make_engine, make_sessions


def show(rendered: Rendered, channel: Channel, out: TextIO | None = None) -> None:
    """Print one reply as a chat bubble, Telegram buttons underneath."""
    width = 60
    click.echo(click.style(f"[{channel.value}] bot:", fg="cyan"), file=out)
    for line in rendered.text.splitlines() or [""]:
        click.echo("  " + line, file=out)
    rows = [rendered.buttons[i:i + 2] for i in range(0, len(rendered.buttons), 2)]
    for row in rows:  # laid out as the Telegram inline keyboard is
        click.echo("  " + " ".join(f"[ {label} ]" for label, _ in row)[:width], file=out)
    if rendered.contact_button:
        click.echo(f"  (keyboard) [ {rendered.contact_button} ]  type SHARE +447... to share",
                   file=out)


def chat(settings: Settings, channel_name: str, address: str) -> None:
    channel = Channel(channel_name)
    phone = ""
    if channel != Channel.TELEGRAM:
        normalised = normalise_phone(address)
        if normalised is None:
            raise click.ClickException(f"{address!r} is not a phone number")
        address = phone = normalised
    config = load_config(settings.config_path)
    service = Service(config, make_sessions(make_engine(settings.database_url)))
    service.sync_petitions()
    click.echo(f"Chatting as {address} over {channel.value}. Type a message; Ctrl+D ends.")
    if channel == Channel.TELEGRAM:
        click.echo("Buttons are shown as [ Label ]; type the keyword to press one.")
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        message_id = f"console-{uuid.uuid4().hex}"
        shared = normalise_phone(text[6:]) if channel == Channel.TELEGRAM and (
            text.upper().startswith("SHARE ")) else None
        if shared:  # the simulator's stand-in for Telegram's "share my phone number" button
            received = Received(channel, address, "", message_id, phone=shared, contact="own")
        else:
            received = Received(channel, address, text, message_id, phone=phone)
        handled = service.receive(received)
        if not handled.replies:
            click.echo(click.style("  (no reply)", dim=True))
        for message in handled.replies:
            show(render(message, channel), channel)
